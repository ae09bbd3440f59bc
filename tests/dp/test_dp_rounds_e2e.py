"""Central DP end to end on the real Anvil: a ledger whose privacy budget allows two DP rounds, real
nodes (threads, over the aggregator's HTTP API) that recompute each noised model bit for bit before
they sign, the audit's epsilon from the ledger alone; then the aggregator refuses a third round, and
a node refuses to sign a third round that a malicious aggregator opened and noised anyway."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest

from aggregator.driver import RoundFailed, open_next_round
from aggregator.noise_secret import publish_secret
from aggregator.privacy_gate import planned_privacy
from demo.in_process import InProcessConsortium as Consortium
from fedledger.audit.service import AuditService
from fedledger.chain.localchain import LocalChain
from fedledger.dp.accountant import epsilon
from fedledger.protocol.manifest import read_posted_manifest
from fedledger.protocol.readers import readers_now
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import open_store
from node.participant import RecordRefused, check_record, train_and_submit
from tests.support import manual_aggregator

BUDGET = 4.0
ROUNDS = 2  # the aggregator's target spends the whole budget over these rounds


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    with LocalChain("anvil") as chain:
        c = Consortium.create(tmp_path_factory.mktemp("dp-consortium"), chain, dp_epsilon=BUDGET)
        c.run_rounds(ROUNDS)
        yield c


def test_dp_rounds_post_and_the_audit_recomputes_their_epsilon_next_to_the_budget(consortium: Consortium) -> None:
    ledger = consortium.nodes[0].ledger
    assert [p.round for p in ledger.global_models_posted()] == [0, 1]
    store = open_store(consortium.layout.store_spec)
    audit = AuditService(ledger, store, SignMasterPublicKey.load(consortium.layout.master_public_key))
    account = audit.privacy()
    assert account.budget is not None and account.budget.epsilon == BUDGET
    assert [r.round for r in account.rounds] == [0, 1]
    first = account.rounds[0]
    assert first.dp is not None and first.dp["participants"] == 5 and first.dp["mechanism"] == "gaussian"
    assert first.epsilon is not None and 0 < first.epsilon < BUDGET
    assert account.rounds[1].cumulative_epsilon == pytest.approx(account.spent_epsilon)
    assert BUDGET - 0.05 < account.spent_epsilon <= BUDGET and account.within_budget
    summary = audit.summary()
    assert summary.status == "verified", summary


def test_the_noise_commitment_was_kept_by_the_nodes_and_the_secret_never_published_in_clear(
    consortium: Consortium,
) -> None:
    node = consortium.nodes[0]
    kept = json.loads((node.state_dir / "round-1" / "noise-commitment.json").read_text())
    store = open_store(consortium.layout.store_spec)
    manifest = read_posted_manifest(store, node.ledger.global_models_posted(round=1)[0])
    assert manifest.rule["noise"]["commitment"] == kept["commitment"]
    secret = (consortium.layout.aggregator_dir / "state" / "round-1" / "noise-secret").read_bytes()
    assert secret not in store.read_bytes(manifest.rule["noise"]["secret_cid"])  # sealed to the readers


def test_the_aggregator_refuses_to_open_a_round_over_the_budget(consortium: Consortium) -> None:
    ctx = consortium.aggregator_context()
    ctx.privacy = planned_privacy(ctx.dp_epsilon, ctx.dp_delta, ctx.dp_clip, ROUNDS, 5)
    refusal = r"round 2 not opened: round would bring epsilon to [\d.]+, over the budget 4"
    with pytest.raises(RoundFailed, match=refusal):
        open_next_round(ctx, 1)
    assert not ctx.ledger.round_state().open


def test_a_node_refuses_to_sign_an_over_budget_round_forged_by_the_aggregator(consortium: Consortium) -> None:
    node = consortium.nodes[1]
    ledger = node.ledger
    aggregator = consortium.aggregator_context()
    round_index = manual_aggregator.open_next_round(ledger, aggregator.account)  # past the aggregator's own gate
    assert round_index == ROUNDS
    train_and_submit(node, round_index)
    privacy = planned_privacy(BUDGET, 1e-5, 1.0, ROUNDS, 5)
    assert privacy is not None
    workdir = consortium.layout.root / "forged-dp"
    noise, secret = publish_secret(
        node.vault, readers_now(ledger, node.consortium), workdir, ledger.chain_id, ledger.address, round_index
    )
    rule = dataclasses.replace(node.rule, privacy=privacy, noise=noise)
    mpk = SignMasterPublicKey.load(consortium.layout.master_public_key)
    view, manifest = manual_aggregator.honest_view(node, mpk, ledger, round_index, workdir, rule, secret)
    assert manifest.rule["dp"]["participants"] == 1  # an honestly noised round, only over the budget
    with pytest.raises(RecordRefused, match="breaks the consortium's privacy budget: round would bring epsilon"):
        check_record(node, view)
    spent = epsilon([privacy] * (ROUNDS + 1), 1e-5)
    assert spent > BUDGET
