"""Membership changes as one flow: k approvals on chain, then the KGC's re-issue of keys and kits.

The on-chain half is the ledger's k-of-n membership change (the same EIP-712 approvals as ``chain
approve-change``/``apply-change``). Approvals come from ``--approval`` values members sent in, and
from the members' kits that sit in the kits folder with their password files. The off-chain half
is the KGC's: a new key (and reader keys) for a new member, a new split of the consortium key for
the new n and k, the new roster (a removed member's reader card left out, so no file written after
its removal is sealed to it), and updated kits, which running nodes and the aggregator pick up at their next round.
Every step is skipped when already done, so a flow cut short is finished by running it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedledger.chain.approvals import MembershipAction, MembershipChange
from fedledger.chain.deploy import Deployment
from fedledger.chain.keyfile import load_eth_key
from fedledger.consortium import kits as k
from fedledger.consortium.deployment import DEV_BALANCE_WEI, address_of_keystore, dev_chain_prefix
from fedledger.consortium.issue import CA_KEY_FILE, Issuer, aggregator_readme, deployer_readme, new_account
from fedledger.consortium.plan import InstitutionPlan, Plan, PlanError, load_plan
from fedledger.errors import FedLedgerError
from fedledger.protocol.consortium import Consortium
from fedledger.sm9 import SignMasterKey
from fedledger.sm9.encryption_keys import EncryptMasterKey
from fedledger.tls import ConsortiumCA
from fedledger.tls.settings import TLS_CA_FILE

log = logging.getLogger(__name__)
_ACTION_WORDS = {MembershipAction.ADD_INSTITUTION: "add", MembershipAction.REMOVE_INSTITUTION: "remove"}


class MembershipRefused(FedLedgerError):
    """The change cannot be made as asked; the message says what is missing."""


@dataclass(frozen=True)
class ChangeOutcome:
    name: str
    address: str
    applied_on_chain: bool
    members: tuple[str, ...]


def _ledger(kits: Path) -> Any:
    try:
        return Deployment.load(kits / k.DEPLOYMENT_FILE).client()
    except FileNotFoundError:
        raise MembershipRefused(
            f"no {kits / k.DEPLOYMENT_FILE}: deploy first (`fedledger chain deploy --plan`)"
        ) from None


def _password(kits: Path, party: str) -> str | None:
    path = k.password_file(kits, party)
    return path.read_text(encoding="utf-8").splitlines()[0] if path.is_file() else None


def _collect_approvals(
    ledger: Any, kits: Path, roster: Consortium, change: MembershipChange, given: list[str]
) -> list[bytes]:
    """The approvals given, then from members' kits at hand, until k distinct members approve."""
    approvals = [bytes.fromhex(a.removeprefix("0x")) for a in given]
    needed = ledger.threshold()
    active = {i.address.lower() for i in ledger.active_institutions()}
    for member in roster.members:
        if len(approvals) >= needed:
            break
        password = _password(kits, member.name)
        key_file = kits / member.name / k.ETH_KEY
        if password is None or not key_file.is_file() or member.address.lower() not in active:
            continue
        approvals.append(ledger.approve_membership_change(load_eth_key(key_file, password), change))
        log.info("%s approved the change", member.name)
    if len(approvals) < needed:
        raise MembershipRefused(
            f"{len(approvals)} approval(s), the ledger needs {needed}: members run `fedledger chain approve-change "
            f"--action {_ACTION_WORDS[change.action]} --account {change.account} ...` and you pass each with --approval"
        )
    return approvals


def _sender(kits: Path) -> Any:
    password = _password(kits, "deployer")
    if password is None:
        raise MembershipRefused(f"no {k.password_file(kits, 'deployer')}: the deployer's account sends the change")
    return load_eth_key(kits / "deployer" / k.ETH_KEY, password)


def _issuer(kits: Path, plan_path: Path, plan: Plan, contract: str, chain_id: int) -> Issuer:
    password = _password(kits, "kgc")
    if password is None:
        raise MembershipRefused(f"no {k.password_file(kits, 'kgc')}: the KGC's kit re-issues the keys")
    master = SignMasterKey.load(kits / "kgc" / k.MASTER_KEY, password)
    ca = ConsortiumCA.load(kits / "kgc" / TLS_CA_FILE, kits / "kgc" / CA_KEY_FILE, password)
    enc_path = kits / "kgc" / k.ENC_MASTER_KEY
    # kits provisioned before sealing have none: this re-issue makes one, and the consortium seals from now on
    enc_master = EncryptMasterKey.load(enc_path, password) if enc_path.is_file() else EncryptMasterKey.generate()
    return Issuer(kits, plan, plan_path.read_text(encoding="utf-8"), master, chain_id, contract, ca, enc_master)


def reissue(issuer: Issuer, members: list[tuple[InstitutionPlan, str]]) -> None:
    """New split, roster and kits for ``members`` (each keeps the Ethereum key its kit holds)."""
    shares, material, _roster = issuer.split(members)
    issuer.kgc_kit()
    for (inst, address), share in zip(members, shares, strict=True):
        issuer.node_kit(inst, address, share, material, None)
    issuer.public_kit("aggregator", material, None, aggregator_readme(issuer.plan, issuer.contract))
    issuer.public_kit("deployer", material, None, deployer_readme(issuer.plan, issuer.contract))


def _plan_entry(plan: Plan, name: str, roster: Consortium) -> InstitutionPlan:
    try:
        return plan.institution(name)
    except PlanError:
        # a member the plan no longer lists keeps its roster identity until it is removed
        member = next(m for m in roster.members if m.name == name)
        return InstitutionPlan.model_validate(
            {"name": name, "sm9_identity": member.sm9_identity, "width_rate": 1.0, "data": {"kind": "builtin"}}
        )


def add_member(plan_path: Path, kits: Path, name: str, given: list[str]) -> ChangeOutcome:
    plan = load_plan(plan_path)
    inst = plan.institution(name)
    roster = Consortium.load(kits / k.ROSTER_FILE)
    ledger = _ledger(kits)
    issuer = _issuer(kits, plan_path, plan, ledger.address, ledger.chain_id)
    key_file = kits / name / k.ETH_KEY
    account = None
    if key_file.is_file():  # a flow cut short: the new member's account exists already
        address = address_of_keystore(key_file)
    else:
        account = new_account()
        address = account.address
    applied = False
    if not ledger.institution(address).active:
        owner = ledger.sm9_id_owner(inst.identity)
        if owner and owner.lower() != address.lower():
            raise MembershipRefused(f"SM9 identity {inst.identity!r} belongs to {owner} on the ledger already")
        if account is not None:  # keep the key before anything is sent, so a retry reuses it
            issuer.member_account(name, account)
        change = MembershipChange.add(address, inst.identity, plan.k)
        approvals = _collect_approvals(ledger, kits, roster, change, given)
        _fund_on_dev_chain(ledger, address)
        ledger.apply_membership_change(_sender(kits), change, approvals)
        applied = True
    members = [(_plan_entry(plan, m.name, roster), m.address) for m in roster.members if m.name != name]
    members.append((inst, address))
    reissue(issuer, members)
    return ChangeOutcome(name, address, applied, tuple(i.name for i, _ in members))


def remove_member(plan_path: Path, kits: Path, name: str, given: list[str]) -> ChangeOutcome:
    plan = load_plan(plan_path)
    roster = Consortium.load(kits / k.ROSTER_FILE)
    member = next((m for m in roster.members if m.name == name), None)
    if member is None:
        raise MembershipRefused(f"{name!r} is not in the roster {kits / k.ROSTER_FILE}")
    remaining = [m for m in roster.members if m.name != name]
    if plan.k > len(remaining):
        raise MembershipRefused(f"k = {plan.k} exceeds the {len(remaining)} members left: lower k in the plan")
    ledger = _ledger(kits)
    issuer = _issuer(kits, plan_path, plan, ledger.address, ledger.chain_id)
    applied = False
    if ledger.institution(member.address).active:
        change = MembershipChange.remove(member.address, plan.k)
        approvals = _collect_approvals(ledger, kits, roster, change, given)
        ledger.apply_membership_change(_sender(kits), change, approvals)
        applied = True
    reissue(issuer, [(_plan_entry(plan, m.name, roster), m.address) for m in remaining])
    return ChangeOutcome(name, member.address, applied, tuple(m.name for m in remaining))


def _fund_on_dev_chain(ledger: Any, address: str) -> None:
    prefix = dev_chain_prefix(ledger.w3)
    if prefix and int(ledger.w3.eth.get_balance(address)) < DEV_BALANCE_WEI // 10:
        ledger.w3.provider.make_request(f"{prefix}setBalance", [address, hex(DEV_BALANCE_WEI)])
