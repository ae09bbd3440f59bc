"""Consortium rounds run the recommended method (rolling windows + server momentum 0.5) on a real
Anvil, every co-signer recomputes it bit for bit, and a record made any other way is refused.

One consortium with default configs runs three rounds; round 3 is then played by hand: four members
submit honestly, one trains another window than the rolling one, and forged records are put before
a co-signer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from demo.in_process import InProcessConsortium as Consortium
from fedledger.audit.service import AuditService
from fedledger.chain.devaccounts import dev_roles
from fedledger.chain.errors import RoundStillOpen
from fedledger.chain.localchain import LocalChain
from fedledger.fl import AlignmentAggregation, ClientUpdate, global_digest, load_client_update, make_index_map
from fedledger.fl.server_momentum import ServerMomentumAlignment
from fedledger.protocol.manifest import ReasonCode, read_posted_manifest
from fedledger.protocol.momentum_history import before_previous_model
from fedledger.protocol.round_check import AggregationRule, compute_round
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import open_store
from node.participant import NodeContext, RecordRefused, check_record, train_and_submit
from tests.support.manual_aggregator import honest_view, open_next_round, publish, round_base, round_updates

ROUNDS = 3


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    with LocalChain("anvil") as chain:
        consortium = Consortium.create(tmp_path_factory.mktemp("momentum"), chain)
        consortium.run_rounds(ROUNDS)
        yield consortium


def mpk_of(c: Consortium) -> SignMasterPublicKey:
    return SignMasterPublicKey.load(c.layout.master_public_key)


def updates_of(node: NodeContext, round_index: int, workdir: Path) -> list[ClientUpdate]:
    """The round's updates as the ledger names them, opened with a member's keys."""
    out = []
    for event in node.ledger.updates_submitted(round=round_index):
        path = node.vault.get(event.cid, event.digest, workdir / f"u-{round_index}-{event.institution}.safetensors")
        out.append(load_client_update(path))
    return out


def test_default_rounds_name_rolling_windows_and_momentum_and_every_entry_verifies(c: Consortium) -> None:
    node = c.nodes[0]
    ledger = node.ledger
    store = open_store(c.layout.store_spec)
    posted = ledger.global_models_posted()
    assert [p.round for p in posted] == list(range(ROUNDS))
    spec = c.aggregator_context().spec
    for post in posted:
        manifest = read_posted_manifest(store, post)
        assert manifest.rule["selection"] == "rolling" and manifest.rule["server_momentum"] == 0.5
        assert len(manifest.included) == 5 and manifest.excluded == ()
        assert len(set(post.approvers)) >= 3  # co-signers that recomputed the round and got the same bits
        for event in ledger.updates_submitted(round=post.round):
            width = event.width_rate_ppm / 1_000_000
            assert event.mapping_digest == make_index_map(spec, width, "rolling", post.round).digest()
    summary = AuditService(ledger, store, mpk_of(c)).summary()
    assert summary.failures == []
    assert summary.updates.verified == 5 * ROUNDS and summary.global_models.verified == ROUNDS


def test_each_posted_model_is_server_momentum_alignment_of_its_updates(c: Consortium, tmp_path: Path) -> None:
    node = c.nodes[2]
    ledger = node.ledger
    bases = {}
    for r in range(ROUNDS):
        bases[r], spec, _ = round_base(node, ledger, r, tmp_path)
    for r in range(ROUNDS):
        history = bases[r - 1] if r > 0 else None
        expected = ServerMomentumAlignment(0.5, history).aggregate(bases[r], updates_of(node, r, tmp_path))
        assert global_digest(expected, spec, r + 1) == ledger.global_models_posted(round=r)[0].digest
        plain = AlignmentAggregation().aggregate(bases[r], updates_of(node, r, tmp_path))
        same = all(torch.equal(plain[n], expected[n]) for n in plain)
        assert same == (r == 0)  # round 0 has no history: plain alignment; after it momentum moves the model


def test_the_history_is_the_base_of_the_previous_round_and_rounds_cannot_be_skipped(c: Consortium) -> None:
    node = c.nodes[3]
    ledger = node.ledger
    workdir = c.layout.root / "history"
    genesis, _, _ = round_base(node, ledger, 0, workdir)
    first = before_previous_model(ledger, node.vault, 1, workdir)
    assert first is not None and all(torch.equal(first[n], genesis[n]) for n in genesis)  # genesis counts as one
    two_back = before_previous_model(ledger, node.vault, 3, workdir)
    posted_one, _, _ = round_base(node, ledger, 2, workdir)  # round 2 opened from round 1's post
    assert two_back is not None and all(torch.equal(two_back[n], posted_one[n]) for n in posted_one)
    assert before_previous_model(ledger, node.vault, 2, workdir, AggregationRule()) is None  # no momentum: no fetch


@pytest.fixture(scope="module")
def round_three(c: Consortium) -> int:
    """Round 3 open, four honest updates in and one trained on a static window instead of the rolling one."""
    ledger = c.nodes[0].ledger
    r = open_next_round(ledger, dev_roles(5).aggregator)
    assert r == ROUNDS
    for node in c.nodes[:4]:
        train_and_submit(node, r)
    deviant = c.nodes[4]  # width 1/8: its static prefix is not the rolling window of round 3
    deviant.selection = "static"
    try:
        train_and_submit(deviant, r)
    finally:
        deviant.selection = "rolling"
    with pytest.raises(RoundStillOpen):  # a failed or unfinished round is retried, never skipped
        ledger.open_round(dev_roles(5).aggregator, r + 1, ledger.global_models_posted(round=r - 1)[0].cid, b"\x01" * 32)
    return r


def test_a_member_training_another_window_is_left_out_and_a_record_including_it_refused(
    c: Consortium, round_three: int, tmp_path: Path
) -> None:
    checker = c.nodes[0]
    ledger = checker.ledger
    view, manifest = honest_view(checker, mpk_of(c), ledger, round_three, tmp_path / "honest")
    assert [e.code for e in manifest.excluded] == [ReasonCode.WRONG_WINDOW]
    assert "not the rolling window of width" in manifest.excluded[0].reason
    check_record(checker, view)  # the honest record passes
    # An aggregator that does not check windows includes it; honest co-signers refuse.
    state, spec, base_digest = round_base(checker, ledger, round_three, tmp_path)
    lax = dataclasses.replace(checker.rule, selection=None)
    history = before_previous_model(ledger, checker.vault, round_three, tmp_path)
    updates = round_updates(ledger, round_three)
    everyone = compute_round(
        checker.vault, mpk_of(c), spec, state, base_digest, updates, lax, tmp_path / "lax", before_previous=history
    )
    assert len(everyone.included) == 5
    bad_view, _ = publish(
        checker, ledger, round_three, base_digest, spec, everyone.state, everyone.included, [], tmp_path / "lax-pub"
    )
    with pytest.raises(RecordRefused, match=r"is included, this node finds it excluded \(wrong_window\)"):
        check_record(checker, bad_view)


def test_a_record_without_momentum_or_with_another_beta_is_refused(
    c: Consortium, round_three: int, tmp_path: Path
) -> None:
    checker = c.nodes[1]
    ledger = checker.ledger
    mpk = mpk_of(c)
    state, spec, base_digest = round_base(checker, ledger, round_three, tmp_path)
    updates = round_updates(ledger, round_three)
    history = before_previous_model(ledger, checker.vault, round_three, tmp_path)

    def computed(rule: AggregationRule, folder: str):  # type: ignore[no-untyped-def]
        return compute_round(
            checker.vault, mpk, spec, state, base_digest, updates, rule, tmp_path / folder, before_previous=history
        )

    honest = computed(checker.rule, "honest")
    # 1. the model aggregated without momentum, under a manifest that names the consortium's beta
    plain = computed(dataclasses.replace(checker.rule, server_momentum=0.0), "plain")
    assert any(not torch.equal(plain.state[n], honest.state[n]) for n in honest.state)
    view, _ = publish(
        checker, ledger, round_three, base_digest, spec, plain.state, honest.included, honest.excluded, tmp_path / "a"
    )
    with pytest.raises(RecordRefused, match="not the aggregation of the included updates"):
        check_record(checker, view)
    # 2. the model and the manifest both without momentum, or both with another beta
    for beta in (0.0, 0.9):
        other = dataclasses.replace(checker.rule, server_momentum=beta)
        forged = computed(other, f"beta-{beta}")
        view, _ = publish(
            checker, ledger, round_three, base_digest, spec, forged.state, forged.included, forged.excluded,
            tmp_path / f"b-{beta}", other,
        )  # fmt: skip
        with pytest.raises(RecordRefused, match="is not the consortium's"):
            check_record(checker, view)
    # 3. the honest result passes
    view, _ = publish(
        checker, ledger, round_three, base_digest, spec, honest.state, honest.included, honest.excluded, tmp_path / "c"
    )
    check_record(checker, view)


def test_a_consortium_without_momentum_still_checks_records_the_old_way(
    c: Consortium, round_three: int, tmp_path: Path
) -> None:
    """Old configs and ledgers: no selection, no momentum, manifests without the new keys."""
    old = dataclasses.replace(c.nodes[2], rule=AggregationRule())
    view, manifest = honest_view(old, mpk_of(c), old.ledger, round_three, tmp_path)
    assert set(manifest.rule) == {"name", "max_norm", "norm_policy"} and len(manifest.included) == 5
    check_record(old, view)
    with pytest.raises(RecordRefused, match="is not the consortium's"):  # a member of the new terms refuses it
        check_record(c.nodes[3], view)
