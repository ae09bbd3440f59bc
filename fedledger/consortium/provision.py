"""``consortium provision``: every key the plan needs, the roster, and one kit per party.

The ledger's address is known before it exists: the kits carry a fresh deployer key whose first
transaction creates the contract, so its CREATE address (sender, nonce 0) fixes the consortium's
SM9 identity now and every kit can name it. Everything is written to a staging folder renamed into
place at the end, so a failure leaves nothing behind.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from fedledger.consortium.issue import Issuer, aggregator_readme, create_address, deployer_readme, new_account
from fedledger.consortium.kits import KitError
from fedledger.consortium.plan import load_plan
from fedledger.sm9 import SignMasterKey
from fedledger.sm9.encryption_keys import EncryptMasterKey
from fedledger.tls import ConsortiumCA


@dataclass(frozen=True)
class Provisioned:
    kits: Path
    contract: str
    consortium_identity: str
    parties: tuple[str, ...]
    addresses: dict[str, str]


def provision(plan_path: Path, out: Path) -> Provisioned:
    """Make the kits for ``plan_path`` in ``out`` (which must not exist yet, or be empty)."""
    plan = load_plan(plan_path)
    plan_text = plan_path.read_text(encoding="utf-8")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise KitError(f"{out} exists and is not empty: choose a new --out (kits are made once per consortium)")
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        deployer = new_account()
        contract = create_address(deployer.address, 0)
        ca = ConsortiumCA.generate(f"{plan.name} consortium CA")
        issuer = Issuer(
            staging,
            plan,
            plan_text,
            SignMasterKey.generate(),
            plan.chain.chain_id,
            contract,
            ca,
            EncryptMasterKey.generate(),
        )
        accounts = {inst.name: new_account() for inst in plan.institutions}
        aggregator = new_account()
        shares, material, _roster = issuer.split([(i, accounts[i.name].address) for i in plan.institutions])
        issuer.kgc_kit()
        for inst, share in zip(plan.institutions, shares, strict=True):
            issuer.node_kit(inst, accounts[inst.name].address, share, material, accounts[inst.name])
        issuer.public_kit("aggregator", material, aggregator, aggregator_readme(plan, contract))
        issuer.public_kit("deployer", material, deployer, deployer_readme(plan, contract))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    addresses: dict[str, str] = {name: str(a.address) for name, a in accounts.items()}
    addresses.update(aggregator=aggregator.address, deployer=deployer.address)
    return Provisioned(
        out,
        contract,
        issuer.identity,
        (*accounts, "aggregator", "kgc", "deployer"),
        addresses,
    )
