"""A misbehaving member against the whole federation: the round completes, the bad entry is
rejected with its reason, honest entries are kept, and the audit reports exactly that.

One consortium on a real Anvil (see ``conftest.federation``); hospital-5 misbehaves, hospitals 1-4
run as honest nodes with the real aggregator, each test one round. Behaviours the rounds, signing
and keys suites cover are not repeated here (docs/adversarial.md lists them all).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from demo.adversary import blank_cid, nan_weights
from demo.in_process import InProcessConsortium
from fedledger.chain.errors import AlreadySubmitted, InvalidCid, RoundNotOpen, UnexpectedRound, ZeroSamples
from fedledger.digests import sm3
from fedledger.fl import load_update, save_update
from fedledger.store import LocalStore, open_store
from tests.adversarial.scenario import (
    Misbehaving,
    RoundReport,
    honest_addresses,
    ledger_of,
    open_round,
    play_round,
)
from tests.adversarial.test_adv_store_dag import _amplifying_dag, _stored_bytes


def cheater_of(c: InProcessConsortium) -> str:
    return c.nodes[4].account.address.lower()


def assert_rejected(c: InProcessConsortium, outcome: RoundReport, reason: str) -> None:
    outcome.assert_rejected(cheater_of(c), reason, honest_addresses(c))


def test_a_blank_cid_on_chain_is_rejected_and_the_round_completes(federation: InProcessConsortium) -> None:
    """Finding 1: ``CID.parse(" ")`` raised IndexError and killed the aggregator for good."""
    outcome = play_round(federation, blank_cid)
    assert_rejected(federation, outcome, r"unavailable")


def test_nan_and_inf_weights_are_rejected(federation: InProcessConsortium) -> None:
    """What ``fedledger demo --adversary nan`` does each round."""
    outcome = play_round(federation, nan_weights)
    assert_rejected(federation, outcome, r"nan|inf|finite")


def test_an_entry_signed_with_another_members_key_is_rejected(federation: InProcessConsortium) -> None:
    stolen = federation.nodes[0].sm9_key  # hospital-1's identity key, leaked to hospital-5
    outcome = play_round(federation, lambda m, r: m.submit(r, m.trained(r), sign_with=stolen))
    assert_rejected(federation, outcome, r"SM9 signature")


def test_an_entry_whose_digest_is_not_its_files_is_rejected(federation: InProcessConsortium) -> None:
    outcome = play_round(federation, lambda m, r: m.submit(r, m.trained(r), digest=sm3(b"another file")))
    assert_rejected(federation, outcome, r"digest")


def test_an_entry_for_content_nobody_stored_is_rejected(federation: InProcessConsortium) -> None:
    outcome = play_round(federation, lambda m, r: m.submit(r, None))
    assert_rejected(federation, outcome, r"unavailable")


def test_bytes_that_are_not_a_model_file_are_rejected(federation: InProcessConsortium) -> None:
    outcome = play_round(federation, lambda m, r: m.submit(r, b"\x00" * 8 + b"not a safetensors header" * 40))
    assert_rejected(federation, outcome, r"malformed|safetensors|header|model file")


def test_an_update_replayed_from_an_earlier_round_is_rejected(federation: InProcessConsortium) -> None:
    """Its own round-0 update, resubmitted verbatim: trained from a base this round did not open with."""

    def replay(m: Misbehaving, r: int) -> None:
        old = ledger_of(federation).updates_submitted(round=0, institution=m.node.account.address)[0]
        path = m.node.state_dir / "replayed.safetensors"
        m.node.vault.get(old.cid, old.digest, path)  # sealed: opened with the member's own reader keys
        m.submit(r, path)

    outcome = play_round(federation, replay)
    assert_rejected(federation, outcome, r"base")


def test_full_width_weights_announced_at_width_one_eighth_are_rejected(federation: InProcessConsortium) -> None:
    """Oversized weights: hospital-1's full-width update, rewritten under hospital-5's name and
    announced at hospital-5's width."""

    def oversized(m: Misbehaving, r: int) -> None:
        state, meta = load_update(Misbehaving(federation.nodes[0]).trained(r))
        path = m.trained(r).with_name("oversized.safetensors")
        save_update(path, state, dataclasses.replace(meta, institution=m.address))
        m.submit(r, path, width_ppm=125_000)

    outcome = play_round(federation, oversized)
    assert_rejected(federation, outcome, r"width|shape")


def test_float64_weights_are_rejected(federation: InProcessConsortium) -> None:
    def doubled(m: Misbehaving, r: int) -> None:
        trained = m.trained(r)
        state, meta = load_update(trained)
        out = trained.with_name("float64.safetensors")
        save_update(out, {n: t.to(torch.float64) for n, t in state.items()}, meta)
        m.submit(r, out)

    outcome = play_round(federation, doubled)
    assert_rejected(federation, outcome, r"dtype|float64|float32")


def test_a_dag_announcing_a_terabyte_is_rejected_without_filling_the_disk(federation: InProcessConsortium) -> None:
    """Finding 6 at the federation: the aggregator must not stream 1 TB to disk before the digest check."""
    store = open_store(federation.layout.store_spec)
    assert isinstance(store, LocalStore)
    before = _stored_bytes(federation.layout.aggregator_dir)

    def bomb(m: Misbehaving, r: int) -> None:
        root, _ = _amplifying_dag(store)
        m.submit(r, None, cid=str(root), digest=sm3(b"whatever it would have been"))

    outcome = play_round(federation, bomb)
    assert_rejected(federation, outcome, r"unavailable|limit|exceed|too large")
    assert _stored_bytes(federation.layout.aggregator_dir) - before < 50 * 1024 * 1024


def test_a_second_update_in_a_round_is_refused_and_the_first_is_kept(federation: InProcessConsortium) -> None:
    first: list[str] = []

    def twice(m: Misbehaving, r: int) -> None:
        trained = m.trained(r)
        first.append(m.submit(r, trained).cid)
        state, meta = load_update(trained)
        other = trained.with_name("second.safetensors")
        save_update(other, {n: t * 2 for n, t in state.items()}, meta)
        with pytest.raises(AlreadySubmitted):
            m.submit(r, other)

    outcome = play_round(federation, twice)
    assert outcome.posted and outcome.global_verified, outcome.failures
    events = ledger_of(federation).updates_submitted(
        round=outcome.round, institution=federation.nodes[4].account.address
    )
    assert [e.cid for e in events] == first
    assert cheater_of(federation) in outcome.included and all(outcome.verified.values()), outcome


def test_entries_the_contract_refuses_change_nothing(federation: InProcessConsortium) -> None:
    """Malformed or misdirected entries revert with their named error; the round goes on untouched."""

    def refused(m: Misbehaving, r: int) -> None:
        with pytest.raises(ZeroSamples):
            m.submit(r, b"zero samples", num_samples=0)
        with pytest.raises(InvalidCid):
            m.submit(r, None, cid="")
        with pytest.raises((UnexpectedRound, RoundNotOpen)):
            m.submit(r + 1, b"for a round not open yet")
        with pytest.raises((UnexpectedRound, RoundNotOpen)):
            m.submit(r - 1, b"for a round already posted")
        assert not ledger_of(federation).has_submitted(r, m.node.account.address)
        m.submit(r, m.trained(r))  # then its honest update: the refusals left nothing in its way

    outcome = play_round(federation, refused)
    assert outcome.posted and outcome.global_verified, outcome.failures
    assert set(outcome.included) == {n.account.address.lower() for n in federation.nodes}
    assert all(outcome.verified.values()), outcome


def test_a_copy_of_another_members_update_is_not_counted_twice(federation: InProcessConsortium) -> None:
    """A member re-seals another member's trained file and submits it as its own: the file names its
    writer, so the copy is left out and the victim's own entry still counts."""

    def copy(m: Misbehaving, r: int) -> None:
        victim = federation.nodes[1]
        path = Misbehaving(victim).trained(r)  # the victim's own file, as the store will serve it
        m.submit(r, path)

    outcome = play_round(federation, copy)
    assert_rejected(federation, outcome, r"duplicate|copy|same")


def test_an_update_sealed_to_the_aggregator_alone_is_left_out_and_the_round_completes(
    federation: InProcessConsortium,
) -> None:
    """A member seals its update to the aggregator (and itself) only: the aggregator could open it, the
    other nodes could not, and they would refuse every record that includes it. Every party reads the
    file's public header instead, so all leave it out for the same reason and the round goes on."""
    from fedledger.protocol.readers import reader_card

    def aggregator_only(m: Misbehaving, r: int) -> None:
        consortium = m.node.consortium
        assert consortium.aggregator is not None
        readers = [reader_card(consortium, consortium.aggregator.sm9_identity), m.node.vault.keys.public]
        cid, digest = m.node.vault.put(m.trained(r), readers)
        m.submit(r, m.trained(r), cid=cid, digest=digest)

    outcome = play_round(federation, aggregator_only)
    assert_rejected(federation, outcome, r"not sealed to every reader.*hospital-")


def test_nodes_refuse_an_earlier_rounds_record_replayed_by_the_aggregator(
    federation: InProcessConsortium, tmp_path: Path
) -> None:
    """A malicious aggregator re-serves a posted round's record for the open round: no node signs it."""
    from node.participant import RecordRefused, check_record

    r = open_round(federation)
    ledger = ledger_of(federation)
    previous = ledger.global_models_posted(round=r - 1)[0]
    opened = ledger.rounds_opened(round=r - 1)[0]
    view = {
        "record": {
            "chain_id": ledger.chain_id, "contract": ledger.address, "round": r - 1,
            "base_digest": opened.base_digest.hex(), "global_cid": previous.cid,
            "global_digest": previous.digest.hex(), "updates_root": previous.updates_root.hex(),
        },
        "included": sorted(e.institution.lower() for e in ledger.updates_submitted(round=r - 1)),
    }  # fmt: skip
    for node in federation.nodes[:4]:
        with pytest.raises((RecordRefused, ValueError)):
            check_record(node, view)
    moved = dict(view, record={**view["record"], "round": r})  # type: ignore[dict-item]
    for node in federation.nodes[:4]:
        with pytest.raises((RecordRefused, ValueError)):
            check_record(node, moved)
    assert ledger.round_state().open and ledger.round_state().round == r


def test_a_reused_update_records_its_access_again_after_a_chain_rollback(federation: InProcessConsortium) -> None:
    """Finding 11: a chain that lost its recent state (SIGKILL before a save) also lost the node's
    access record; the node reuses its trained update but must log the retrieval again."""
    from node.participant import train_and_submit, train_for_round

    r = open_round(federation)
    node = federation.nodes[0]
    ledger = ledger_of(federation)
    base_cid = ledger.rounds_opened(round=r)[0].base_cid
    snapshot = ledger.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    train_for_round(node, r)  # trains, caches the update and records the access
    assert ledger.access_records(accessor=node.account.address, cid=base_cid)
    ledger.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    assert not ledger.access_records(accessor=node.account.address, cid=base_cid)

    assert train_and_submit(node, r)  # reuses the cached update
    purposes = [a.purpose for a in ledger.access_records(accessor=node.account.address, cid=base_cid)]
    assert purposes == [f"train round {r}"]
