"""``chain deploy --plan``: deploy the ledger the kits already name, with the plan's members and k.

On a local dev chain (Anvil, Hardhat) every account the kits hold is funded first. On any other
chain nothing is sent until every account holds what it needs: the command lists each account's
need in gas and ether and refuses with one line. A ledger already at the kits' address is checked
and reused, so running the command twice is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from fedledger.chain.deploy import Deployment, InstitutionSpec, constructor_args, deploy_ledger
from fedledger.chain.keyfile import load_eth_key
from fedledger.consortium import kits as k
from fedledger.consortium.plan import Plan
from fedledger.errors import FedLedgerError
from fedledger.protocol.consortium import Consortium

# Upper bounds per call (the ledger's measured gas is below them; see `fedledger bench chain`).
GAS_PER_ROUND = {"aggregator": 150_000 + 450_000, "institution": 120_000 + 90_000}
GAS_PER_MEMBERSHIP_CHANGE = 250_000
DEV_BALANCE_WEI = 100 * 10**18


class DeployRefused(FedLedgerError):
    """The plan's ledger cannot be deployed as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Need:
    party: str
    address: str
    gas: int
    wei: int
    balance: int


def address_of_keystore(path: Path) -> str:
    try:
        return to_checksum_address("0x" + json.loads(path.read_text(encoding="utf-8"))["address"].removeprefix("0x"))
    except (OSError, ValueError, KeyError) as exc:
        raise DeployRefused(f"cannot read the address in {path}: {exc}") from None


def party_addresses(kits: Path) -> dict[str, str]:
    """Every account the kits hold, by party (public addresses only, no password needed)."""
    roster = Consortium.load(kits / k.ROSTER_FILE)
    out: dict[str, str] = {m.name: str(to_checksum_address(m.address)) for m in roster.members}
    for role in ("aggregator", "deployer"):
        out[role] = address_of_keystore(kits / role / k.ETH_KEY)
    return out


def dev_chain_prefix(w3: Any) -> str | None:
    """'anvil_' or 'hardhat_' if the node accepts its balance-setting method, else None."""
    probe = "0x0000000000000000000000000000000000000001"
    for prefix in ("anvil_", "hardhat_"):
        try:
            response = w3.provider.make_request(f"{prefix}setBalance", [probe, hex(0)])
        except Exception:  # noqa: S112 - a refused method is the answer, not a failure
            continue
        if "error" not in response:
            return prefix
    return None


def needs(w3: Any, plan: Plan, addresses: dict[str, str], deploy_gas: int, rounds: int) -> list[Need]:
    price = int(w3.eth.gas_price)
    out = []
    for party, address in addresses.items():
        if party == "deployer":
            gas = deploy_gas
        elif party == "aggregator":
            gas = GAS_PER_ROUND["aggregator"] * rounds
        else:
            gas = GAS_PER_ROUND["institution"] * rounds + GAS_PER_MEMBERSHIP_CHANGE
        out.append(Need(party, address, gas, gas * price, int(w3.eth.get_balance(address))))
    return out


def deploy_plan(
    plan: Plan, kits: Path, password: str, rounds: int = 10, fund: bool = True
) -> tuple[Deployment, list[Need], bool]:
    """Deploy (or find) the plan's ledger; returns it, each account's need, and whether it was funded here.

    ``fund``: on a dev chain, top every account up first (off: check funds as on a real chain).
    """
    from web3 import HTTPProvider, Web3

    from fedledger.chain.compiler import compile_ledger

    kit = k.load_kit(kits / "deployer").require("deployer")
    w3: Any = Web3(HTTPProvider(plan.chain.rpc_url, request_kwargs={"timeout": 60}))
    try:
        chain_id = int(w3.eth.chain_id)
    except Exception as exc:
        raise DeployRefused(f"cannot reach {plan.chain.rpc_url} ({type(exc).__name__}): is the chain up?") from None
    if chain_id != plan.chain.chain_id or chain_id != kit.chain_id:
        raise DeployRefused(
            f"{plan.chain.rpc_url} is chain {chain_id}, the plan says {plan.chain.chain_id}: fix [chain] or the URL"
        )
    roster = Consortium.load(kits / k.ROSTER_FILE)
    addresses = party_addresses(kits)
    compiled = compile_ledger()
    specs = [InstitutionSpec(m.address, m.sm9_identity) for m in roster.members]
    if w3.eth.get_code(kit.contract):
        return _existing(w3, plan, kits, kit, roster, compiled.abi), [], False
    deployer = load_eth_key(kits / "deployer" / k.ETH_KEY, password)
    if w3.eth.get_transaction_count(deployer.address) != 0:
        raise DeployRefused(
            f"the deployer {deployer.address} has sent transactions already, so it cannot create the ledger at "
            f"{kit.contract}: provision new kits"
        )
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    aggregator = addresses["aggregator"]
    deploy_gas = int(
        factory.constructor(*constructor_args(aggregator, specs, plan.k)).estimate_gas(
            {"from": deployer.address, "gasPrice": 0}
        )
        * 6
        // 5
    )
    dev = dev_chain_prefix(w3) if fund else None
    funded = False
    if dev:
        for address in addresses.values():
            if int(w3.eth.get_balance(address)) < DEV_BALANCE_WEI // 10:
                w3.provider.make_request(f"{dev}setBalance", [address, hex(DEV_BALANCE_WEI)])
                funded = True
    plan_needs = needs(w3, plan, addresses, deploy_gas, rounds)
    short = [n for n in plan_needs if n.balance < n.wei]
    if short:
        listing = ", ".join(f"{n.party} {n.address} needs {n.wei / 1e18:.6f} ETH ({n.gas:,} gas)" for n in short)
        raise DeployRefused(f"unfunded accounts on chain {chain_id}: {listing}; fund them and run this again")
    deployment = deploy_ledger(
        w3,
        deployer,
        aggregator=aggregator,
        institutions=specs,
        threshold=plan.k,
        compiled=compiled,
        rpc_url=plan.chain.rpc_url,
    )
    if deployment.address.lower() != kit.contract.lower():
        raise DeployRefused(f"the ledger landed at {deployment.address}, not at the kits' {kit.contract}")
    write_deployment(kits, deployment)
    return deployment, plan_needs, funded


def _existing(w3: Any, plan: Plan, kits: Path, kit: k.Kit, roster: Consortium, abi: list[dict[str, Any]]) -> Deployment:
    """The ledger already at the kits' address, checked to be this consortium's."""
    from fedledger.chain.client import LedgerClient

    ledger = LedgerClient(w3, kit.contract, abi)
    try:
        members = {i.address.lower() for i in ledger.active_institutions()}
        aggregator = ledger.aggregator()
    except Exception as exc:
        raise DeployRefused(f"{kit.contract} holds a contract that is not a FederatedLedger ({exc})") from None
    if not {m.address.lower() for m in roster.members} <= members:
        raise DeployRefused(f"the ledger at {kit.contract} has other members than the kits' roster")
    path = kits / k.DEPLOYMENT_FILE
    if path.is_file():
        return Deployment.load(path)
    deployment = Deployment(
        plan.chain.rpc_url,
        int(w3.eth.chain_id),
        kit.contract,
        0,
        "",
        0,
        aggregator,
        ledger.threshold(),
        [InstitutionSpec(i.address, i.sm9_id) for i in ledger.active_institutions()],
        "",
        abi,
    )
    write_deployment(kits, deployment)
    return deployment


def write_deployment(kits: Path, deployment: Deployment) -> None:
    """The deployment file, at the kits' top and in every kit (auditors and roles read it)."""
    deployment.save(kits / k.DEPLOYMENT_FILE)
    for child in kits.iterdir():
        if (child / k.KIT_FILE).is_file():
            deployment.save(child / k.DEPLOYMENT_FILE)
