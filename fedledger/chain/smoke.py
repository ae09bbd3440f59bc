"""The interim demo: one full ledger round on a local chain, with placeholder model CIDs.

It exercises everything the ledger enforces (membership, one update per institution, k-of-n
approvals, sequential rounds, the access log) before the content store, SM9 and the training code
are wired in. CIDs and SM9 signatures here are labelled placeholders, not real content or signatures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from fedledger.chain.localchain import ChainKind, LocalChain

PLACEHOLDER_NOTE = (
    "CIDs and SM9 signatures in this run are PLACEHOLDERS: no model file is stored and nothing is "
    "SM9-signed yet; only the ledger logic is real."
)
WIDTH_RATES = (Fraction(1), Fraction(1, 2), Fraction(1, 4), Fraction(1, 8), Fraction(1, 8))


@dataclass
class SmokeReport:
    chain: str
    rpc_url: str
    chain_id: int
    contract: str
    threshold: int
    institutions: list[dict[str, Any]]
    steps: list[dict[str, Any]] = field(default_factory=list)
    round_state: dict[str, Any] = field(default_factory=dict)
    global_model: dict[str, Any] = field(default_factory=dict)
    note: str = PLACEHOLDER_NOTE

    def step(self, what: str, outcome: str, gas: int | None = None) -> None:
        self.steps.append({"step": what, "outcome": outcome, "gas": gas})


def run_smoke(kind: ChainKind = "anvil", progress: Callable[[str], None] | None = None) -> SmokeReport:
    """Start a local chain, deploy for five institutions with k = 3, run round 0, read it back."""
    from web3 import HTTPProvider, Web3

    from fedledger.chain.approvals import GlobalModelRecord
    from fedledger.chain.deploy import deploy_ledger, dev_consortium
    from fedledger.chain.devaccounts import dev_roles
    from fedledger.chain.errors import NotEnoughApprovals
    from fedledger.digests import sm3
    from fedledger.widths import width_to_ppm

    say = progress or (lambda _msg: None)
    roles = dev_roles(5)
    consortium = dev_consortium(5)
    say(f"starting a local {kind} chain")
    with LocalChain(kind) as chain:
        w3 = Web3(HTTPProvider(chain.rpc_url))
        say("compiling and deploying FederatedLedger (5 institutions, k = 3)")
        deployment = deploy_ledger(
            w3, roles.deployer, aggregator=roles.aggregator.address, institutions=consortium, threshold=3,
            rpc_url=chain.rpc_url,
        )  # fmt: skip
        ledger = deployment.client(w3)
        report = SmokeReport(
            chain=kind,
            rpc_url=chain.rpc_url,
            chain_id=deployment.chain_id,
            contract=deployment.address,
            threshold=ledger.threshold(),
            institutions=[{"address": i.address, "sm9_id": i.sm9_id} for i in consortium],
        )
        report.step("deploy FederatedLedger", f"at {deployment.address}", deployment.gas_used)

        base_cid, base_digest = "placeholder:round-0:initial-model", sm3(b"placeholder initial model")
        say("aggregator opens round 0 from the (placeholder) initial model")
        tx = ledger.open_round(roles.aggregator, 0, base_cid, base_digest)
        report.step("openRound(0)", "round 0 open", tx.gas_used)

        for i, (institution, rate) in enumerate(zip(roles.institutions, WIDTH_RATES, strict=True)):
            say(f"institution {i + 1} submits its update (width {rate})")
            tx = ledger.submit_update(
                institution, 0, f"placeholder:round-0:update-{i + 1}", sm3(b"placeholder update %d" % i),
                sm3(b"placeholder index map %d" % i), 100 * (i + 1), width_to_ppm(rate),
                b"placeholder-sm9-signature-%d" % i,
            )  # fmt: skip
            report.step(f"submitUpdate by {consortium[i].sm9_id} (width {rate})", "recorded", tx.gas_used)

        updates = ledger.updates_submitted(round=0)
        record = GlobalModelRecord(
            round=0,
            cid="placeholder:round-0:global-model",
            digest=sm3(b"placeholder global model 0"),
            updates_root=sm3(b"".join(u.digest for u in updates)),
            sm9_signature=b"placeholder-sm9-threshold-signature",
        )
        approvals = [ledger.approve_global_model(a, record) for a in roles.institutions[:3]]
        say("posting with only k - 1 = 2 approvals (must be refused)")
        try:
            ledger.post_global_model(roles.aggregator, record, approvals[:2])
            report.step("postGlobalModel with 2 approvals", "UNEXPECTEDLY ACCEPTED")
        except NotEnoughApprovals as exc:
            report.step("postGlobalModel with 2 approvals", f"refused: {exc.fields['distinct']} of 3")
        say("posting with k = 3 approvals")
        tx = ledger.post_global_model(roles.aggregator, record, approvals)
        report.step("postGlobalModel with 3 approvals", "posted; round 0 closed", tx.gas_used)

        tx = ledger.record_access(roles.institutions[1], record.cid, "local training, round 1")
        report.step(f"recordAccess by {consortium[1].sm9_id}", "logged", tx.gas_used)

        say("reading the round back from the ledger")
        posted = ledger.global_models_posted(round=0)[0]
        state = ledger.round_state()
        report.round_state = {"round": state.round, "open": state.open, "update_count": state.update_count}
        report.global_model = {
            "cid": posted.cid,
            "digest": posted.digest.hex(),
            "digest_on_chain_matches": ledger.global_digest(0) == record.digest,
            "approvers": list(posted.approvers),
            "updates_in_round": len(updates),
            "access_records": len(ledger.access_records(cid=record.cid)),
        }
    return report
