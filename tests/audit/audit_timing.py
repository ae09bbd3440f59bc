"""How long the audit summary takes: 10 rounds x 5 updates of SIZE-byte files on a fresh Anvil.

Not a test (no test_ prefix). Usage, from the repository root:
    PATH=node_modules/.bin:$PATH .venv/bin/python -m tests.audit.audit_timing SIZE
Prints the first summary (cold: SM9 checks computed) and the second (warm: SM9 results cached,
content verdicts cached per CID, as in a running server).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from web3 import HTTPProvider, Web3

from fedledger.chain.deploy import deploy_ledger, dev_consortium
from fedledger.chain.devaccounts import dev_roles
from fedledger.chain.localchain import LocalChain
from tests.support import audit_scenario


def main(size: int) -> None:
    put_random = audit_scenario._put_random
    audit_scenario._put_random = lambda store, _n: put_random(store, size)
    with LocalChain("anvil") as chain:
        roles = dev_roles(5)
        deployment = deploy_ledger(
            Web3(HTTPProvider(chain.rpc_url)),
            roles.deployer,
            aggregator=roles.aggregator.address,
            institutions=dev_consortium(5),
            threshold=3,
            rpc_url=chain.rpc_url,
        )
        plans = [audit_scenario.RoundPlan([0, 1, 2, 3, 4]) for _ in range(10)]
        workdir = Path(tempfile.mkdtemp())
        scenario = audit_scenario.play_rounds(deployment, deployment.client(), roles, workdir, plans)
        service = scenario.service()
        timings = []
        for _ in range(2):
            start = time.perf_counter()
            summary = service.summary()
            timings.append(time.perf_counter() - start)
        print(
            f"{size}-byte files, 10 rounds x 5 updates: cold summary {timings[0]:.2f} s, "
            f"warm {timings[1]:.2f} s, all verified: {summary.all_verified}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]))
