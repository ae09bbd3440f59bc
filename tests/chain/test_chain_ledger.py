"""The ledger contract through the Python client, on a real chain: once on Anvil, once on Hardhat's
node (the ``any_ledger`` fixture is parametrised over both)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount

from fedledger.chain import errors
from fedledger.chain.approvals import GlobalModelRecord, MembershipChange
from fedledger.chain.client import LedgerClient, TxResult
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.localchain import LocalChain
from fedledger.digests import sm3
from fedledger.protocol import RoundRecord
from fedledger.widths import width_to_ppm

CID0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
SIG = bytes(range(1, 105))  # 104 bytes, the size of a DER SM9 signature


def _submit(ledger: LedgerClient, account: LocalAccount, round_: int, i: int, rate_ppm: int = 500_000) -> TxResult:
    return ledger.submit_update(
        account, round_, f"QmUpdate{round_}x{i}", sm3(b"update %d/%d" % (round_, i)),
        sm3(b"map %d" % i), 10 + i, rate_ppm, SIG,
    )  # fmt: skip


def _record(round_: int, entries: int = 0) -> GlobalModelRecord:
    """A record of round ``round_`` whose manifest accounts for ``entries`` submissions."""
    return GlobalModelRecord(
        round_, f"QmGlobal{round_}", sm3(b"global %d" % round_), sm3(b"root %d" % round_),
        f"QmManifest{round_}", sm3(b"manifest %d" % round_), entries, SIG,
    )  # fmt: skip


def _post(ledger: LedgerClient, roles: DevRoles, record: GlobalModelRecord, approvers: list[int]) -> None:
    approvals = [ledger.approve_global_model(roles.institutions[i], record) for i in approvers]
    ledger.post_global_model(roles.aggregator, record, approvals)


def test_full_round_is_recorded_and_read_back(any_ledger: LedgerClient, dev_accounts: DevRoles) -> None:
    roles, ledger = dev_accounts, any_ledger
    base = sm3(b"initial model")
    ledger.open_round(roles.aggregator, 0, CID0, base)
    rates = [1_000_000, 500_000, 250_000, 125_000, 125_000]
    for i, inst in enumerate(roles.institutions):
        _submit(ledger, inst, 0, i, rates[i])
    assert ledger.round_state().update_count == 5
    record = _record(0, 5)
    _post(ledger, roles, record, [4, 0, 2])

    state = ledger.round_state()
    assert (state.started, state.round, state.open, state.next_round) == (True, 0, False, 1)
    assert ledger.global_digest(0) == record.digest
    assert ledger.global_digest(1) is None

    opened = ledger.rounds_opened()
    assert [(o.round, o.base_cid, o.base_digest, o.aggregator) for o in opened] == [
        (0, CID0, base, roles.aggregator.address)
    ]
    updates = ledger.updates_submitted(round=0)
    assert [u.institution for u in updates] == [a.address for a in roles.institutions]
    assert [u.width_rate_ppm for u in updates] == rates
    assert updates[3].width_rate == width_to_ppm(0.125) / 1_000_000
    assert updates[2].digest == sm3(b"update 0/2") and updates[2].mapping_digest == sm3(b"map 2")
    assert updates[2].num_samples == 12 and updates[2].sm9_signature == SIG
    mine = ledger.updates_submitted(institution=roles.institutions[1].address)
    assert [u.cid for u in mine] == ["QmUpdate0x1"]

    (posted,) = ledger.global_models_posted(round=0)
    base_digest = ledger.rounds_opened(round=0)[0].base_digest
    as_posted = RoundRecord.from_posted(ledger.chain_id, ledger.address, base_digest, posted)
    assert GlobalModelRecord.from_round_record(as_posted, posted.sm9_threshold_signature) == record
    assert posted.update_count == 5 and posted.nonce == 0
    assert set(posted.approvers) == {roles.institutions[i].address for i in (4, 0, 2)}


def test_next_round_must_start_from_posted_global(any_ledger: LedgerClient, dev_accounts: DevRoles) -> None:
    roles, ledger = dev_accounts, any_ledger
    ledger.open_round(roles.aggregator, 0, CID0, sm3(b"initial"))
    _submit(ledger, roles.institutions[0], 0, 0)
    record = _record(0, 1)
    _post(ledger, roles, record, [0, 1, 2])
    with pytest.raises(errors.BaseModelMismatch) as caught:
        ledger.open_round(roles.aggregator, 1, CID0, sm3(b"initial"))
    assert caught.value.fields["expected"] == record.digest
    assert "round 1" in str(caught.value)
    with pytest.raises(errors.UnexpectedRound, match="next one is 1"):
        ledger.open_round(roles.aggregator, 2, record.cid, record.digest)
    ledger.open_round(roles.aggregator, 1, record.cid, record.digest)
    _submit(ledger, roles.institutions[0], 1, 0)  # a new round: the same institution may submit again
    assert ledger.has_submitted(1, roles.institutions[0].address)
    assert not ledger.has_submitted(1, roles.institutions[1].address)


def test_contract_errors_become_python_exceptions(any_ledger: LedgerClient, dev_accounts: DevRoles) -> None:
    roles, ledger = dev_accounts, any_ledger
    with pytest.raises(errors.NotAggregator) as caught:
        ledger.open_round(roles.institutions[0], 0, CID0, sm3(b"x"))
    assert roles.institutions[0].address in str(caught.value) and "openRound" in str(caught.value)
    ledger.open_round(roles.aggregator, 0, CID0, sm3(b"x"))
    with pytest.raises(errors.NotActiveInstitution, match=roles.outsider.address):
        _submit(ledger, roles.outsider, 0, 9)
    with pytest.raises(errors.InvalidWidthRate, match="1000001"):
        _submit(ledger, roles.institutions[0], 0, 0, rate_ppm=1_000_001)
    _submit(ledger, roles.institutions[0], 0, 0)
    with pytest.raises(errors.AlreadySubmitted, match="never replaced"):
        _submit(ledger, roles.institutions[0], 0, 0)
    with pytest.raises(errors.RoundNotOpen):
        _submit(ledger, roles.institutions[1], 1, 1)
    record = _record(0, 1)
    with pytest.raises(errors.NotEnoughApprovals) as not_enough:
        _post(ledger, roles, record, [1, 3])
    assert (not_enough.value.fields["distinct"], not_enough.value.fields["required"]) == (2, 3)
    with pytest.raises(errors.NotEnoughApprovals, match="2 distinct"):
        _post(ledger, roles, record, [1, 3, 1])  # a duplicated approver counts once
    # Refused calls changed nothing.
    state = ledger.round_state()
    assert (state.round, state.open, state.update_count) == (0, True, 1)
    assert ledger.global_models_posted() == []


def test_approvals_do_not_carry_over_to_another_ledger(
    any_ledger: LedgerClient,
    any_chain: LocalChain,
    ledger_factory: Callable[..., Deployment],
    dev_accounts: DevRoles,
) -> None:
    roles = dev_accounts
    twin = ledger_factory(any_chain).client(any_ledger.w3)
    for ledger in (any_ledger, twin):
        ledger.open_round(roles.aggregator, 0, CID0, sm3(b"x"))
    record = _record(0)
    approvals = [any_ledger.approve_global_model(a, record) for a in roles.institutions[:3]]
    with pytest.raises(errors.ApproverNotActive, match="approval #0 recovers to"):
        twin.post_global_model(roles.aggregator, record, approvals)
    any_ledger.post_global_model(roles.aggregator, record, approvals)
    # ...nor to a later round of the same ledger.
    any_ledger.open_round(roles.aggregator, 1, record.cid, record.digest)
    later = dataclasses.replace(record, round=1)
    with pytest.raises(errors.ApproverNotActive):
        any_ledger.post_global_model(roles.aggregator, later, approvals)


def test_membership_changes_need_k_approvals(any_ledger: LedgerClient, dev_accounts: DevRoles) -> None:
    from fedledger.chain.devaccounts import dev_account

    roles, ledger = dev_accounts, any_ledger
    newcomer = dev_account(8)
    add = MembershipChange.add(newcomer.address, "hospital-new", 4)
    two = [ledger.approve_membership_change(a, add) for a in roles.institutions[:2]]
    with pytest.raises(errors.NotEnoughApprovals):
        ledger.apply_membership_change(roles.deployer, add, two)
    three = [ledger.approve_membership_change(a, add) for a in roles.institutions[:3]]
    ledger.apply_membership_change(roles.deployer, add, three)
    assert ledger.threshold() == 4 and ledger.active_institution_count() == 6
    assert ledger.institution(newcomer.address).sm9_id == "hospital-new"
    assert ledger.sm9_id_owner("hospital-new") == newcomer.address
    with pytest.raises(errors.ApproverNotActive):  # the nonce moved on: the same approvals replay nothing
        ledger.apply_membership_change(roles.deployer, add, three)

    remove = MembershipChange.remove(roles.institutions[4].address, 3)
    signers = [*roles.institutions[:3], newcomer]
    ledger.apply_membership_change(
        roles.deployer, remove, [ledger.approve_membership_change(a, remove) for a in signers]
    )
    assert not ledger.institution(roles.institutions[4].address).active
    assert [i.sm9_id for i in ledger.active_institutions()] == [
        "hospital-1", "hospital-2", "hospital-3", "hospital-4", "hospital-new",
    ]  # fmt: skip
    ledger.open_round(roles.aggregator, 0, CID0, sm3(b"x"))
    with pytest.raises(errors.NotActiveInstitution):
        _submit(ledger, roles.institutions[4], 0, 4)
    _submit(ledger, newcomer, 0, 8)
    history = [e.name for e in ledger.membership_events()]
    assert history.count("MembershipChangeApproved") == 2
    assert "InstitutionRemoved" in history and history.count("InstitutionAdded") == 6


def test_set_threshold_and_aggregator(ledger: LedgerClient, dev_accounts: DevRoles) -> None:
    roles = dev_accounts
    too_high = MembershipChange.set_threshold(6)
    approvals = [ledger.approve_membership_change(a, too_high) for a in roles.institutions[:3]]
    with pytest.raises(errors.InvalidThreshold, match="k=6"):
        ledger.apply_membership_change(roles.deployer, too_high, approvals)
    handover = MembershipChange.set_aggregator(roles.outsider.address, ledger.threshold())
    approvals = [ledger.approve_membership_change(a, handover) for a in roles.institutions[2:]]
    ledger.apply_membership_change(roles.deployer, handover, approvals)
    assert ledger.aggregator() == roles.outsider.address
    ledger.open_round(roles.outsider, 0, CID0, sm3(b"x"))


def test_access_log(any_ledger: LedgerClient, dev_accounts: DevRoles) -> None:
    roles, ledger = dev_accounts, any_ledger
    ledger.record_access(roles.institutions[0], CID0, "local training, round 1")
    ledger.record_access(roles.aggregator, "QmOther", "aggregation, round 0")
    ledger.record_access(roles.institutions[2], CID0, "audit")
    with pytest.raises(errors.NotMember):
        ledger.record_access(roles.outsider, CID0, "curiosity")
    with pytest.raises(errors.InvalidPurpose):
        ledger.record_access(roles.institutions[0], CID0, "")
    assert [(r.accessor, r.purpose) for r in ledger.access_records(cid=CID0)] == [
        (roles.institutions[0].address, "local training, round 1"),
        (roles.institutions[2].address, "audit"),
    ]
    assert [r.cid for r in ledger.access_records(accessor=roles.aggregator.address)] == ["QmOther"]


def test_event_reading_pages_through_block_ranges(ledger: LedgerClient, dev_accounts: DevRoles) -> None:
    roles = dev_accounts
    ledger.open_round(roles.aggregator, 0, CID0, sm3(b"x"))
    for i, inst in enumerate(roles.institutions):
        _submit(ledger, inst, 0, i)  # one block each on an automining chain
    whole = ledger.updates_submitted()
    for page_size in (1, 2, 3):
        assert ledger.updates_submitted(page_size=page_size) == whole
    first, last = whole[0].meta.block_number, whole[-1].meta.block_number
    assert last - first == 4
    assert ledger.updates_submitted(from_block=first + 1, to_block=last - 1, page_size=1) == whole[1:4]
    with pytest.raises(ValueError, match="page_size"):
        ledger.updates_submitted(page_size=0)


def test_client_rejects_malformed_digests_before_sending(ledger: LedgerClient, dev_accounts: DevRoles) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ledger.open_round(dev_accounts.aggregator, 0, CID0, b"short")
    with pytest.raises(ValueError, match="updates root"):
        GlobalModelRecord(0, CID0, sm3(b"x"), b"\x00" * 31, "QmManifest", sm3(b"m"), 0, SIG)
    assert not ledger.round_state().started
