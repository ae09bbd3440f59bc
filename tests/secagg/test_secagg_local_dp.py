"""Local DP-SGD inside secure rounds, end to end on the suite's Anvil: member 5 trains by DP-SGD (epsilon 8
planned over one round) in a round by secure aggregation. Round 0 posts with its masked input, the
co-signers recompute it, and its statement is on the ledger and in the audit's `/privacy/local`;
in round 1 its budget is spent, so it sends nothing, the round completes with the other four and it
still co-signs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aggregator.config import load_config, save_config
from demo.in_process import InProcessConsortium
from fedledger.audit.api import create_app
from fedledger.chain.localchain import LocalChain
from fedledger.dp.local import LocalDPRound
from fedledger.secagg.layout import flatten_state
from fedledger.secagg.messages import MaskedInput
from node.local_budget import LocalDPPolicy, LocalPrivacySpend
from node.participant import round_dir
from node.secagg_check import recompute_secure_round
from node.training_step import TrainedUpdate
from tests.secagg.test_secagg_round_mode import _audit, _manifest, _models, _plain_alignment, _record
from tests.support.manual_aggregator import round_updates

PHASE_SECONDS = 6.0  # how long the aggregator waits for a member missing from a phase
JOIN_DEADLINE_SECONDS = 15.0  # how long it waits for joins (the round's deadline) once it has a threshold
POLICY = LocalDPPolicy(8.0, rounds=1)  # one round spends (almost) all of it: round 1 is refused
DP_MEMBER = 5  # share index; the 1/8-width hospital


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory, anvil_chain: LocalChain) -> InProcessConsortium:
    c = InProcessConsortium.create(
        tmp_path_factory.mktemp("secure-local-dp"), anvil_chain, epochs=1, secure_aggregation=True
    )
    config, base = load_config(c.layout.aggregator_dir)
    save_config(config.model_copy(update={"secagg_phase_seconds": PHASE_SECONDS}), base)
    c.nodes[DP_MEMBER - 1].local_dp = POLICY  # what `node run --local-dp-epsilon 8 --local-dp-rounds 1` sets
    return c


def _local_privacy(c: InProcessConsortium) -> dict[str, dict]:
    answer = TestClient(create_app(_audit(c))).get("/privacy/local")
    assert answer.status_code == 200, answer.text
    return {m["institution"]: m for m in answer.json()["members"]}


def _posted_is_plain_alignment(c: InProcessConsortium, round_index: int, members: list[int]) -> None:
    """The posted model is, bit for bit, plain alignment of these members' own updates on the ring's grid."""
    _, setup = _record(c, round_index)
    _, posted = _models(c, round_index)
    plain = _plain_alignment(c, round_index, members, setup)
    assert np.array_equal(flatten_state(posted).view(np.uint32), plain.view(np.uint32))


def test_a_member_training_by_local_dp_sgd_takes_part_in_a_secure_round(consortium: InProcessConsortium) -> None:
    c = consortium
    c.run_rounds(1, timeout=180)
    manifest = _manifest(c, 0)
    record, _ = _record(c, 0)
    assert record.survivors == (1, 2, 3, 4, 5) and len(manifest.included) == 5 and manifest.excluded == ()
    _posted_is_plain_alignment(c, 0, [1, 2, 3, 4, 5])

    node = c.nodes[DP_MEMBER - 1]
    counted = LocalPrivacySpend(node.state_dir, POLICY).rounds()
    assert list(counted) == [0] and 7.9 < counted[0].epsilon() <= POLICY.epsilon
    folder = round_dir(node, 0)
    base_digest = node.ledger.rounds_opened(round=0)[0].base_digest
    trained = TrainedUpdate.load_summary(folder / "trained.json", folder / "update.safetensors", base_digest)
    assert trained is not None and trained.local_dp == counted[0]  # it trained by DP-SGD, as counted
    for other in c.nodes[: DP_MEMBER - 1]:
        summary = TrainedUpdate.load_summary(
            round_dir(other, 0) / "trained.json", round_dir(other, 0) / "update.safetensors", base_digest
        )
        assert summary is not None and summary.local_dp is None

    # every co-signer recomputes the round from the published messages (here: member 1, again)
    checker = c.nodes[0]
    updates = round_updates(checker.ledger, 0)
    recompute_secure_round(checker, 0, round_dir(checker, 0) / "base.safetensors", updates, manifest)
    posted = checker.ledger.global_models_posted(round=0)[0]
    assert len(posted.approvers) >= 3

    # the statement speaks for the masked input the member submitted, and is on the ledger before it
    address = node.account.address
    mine = checker.ledger.updates_submitted(round=0, institution=address)[0]
    MaskedInput.from_bytes(node.store.read_bytes(mine.cid))  # the entry is a masked input, not an update
    said = checker.ledger.access_records(accessor=address, cid=mine.cid)
    assert [LocalDPRound.from_statement(a.purpose) for a in said] == [counted[0]]
    assert said[0].meta.block_number <= mine.meta.block_number

    members = _local_privacy(c)
    hospital = members[address]
    expected = counted[0].epsilon()
    assert hospital["local_dp"] is True and hospital["spent_epsilon"] == expected
    assert [(r["round"], r["epsilon"], r["cumulative_epsilon"]) for r in hospital["rounds"]] == [
        (0, expected, expected)
    ]
    assert hospital["rounds"][0]["local_dp"] == counted[0].to_dict()
    others = [m for a, m in members.items() if a != address]
    assert len(others) == 4 and all(m["local_dp"] is False and m["spent_epsilon"] is None for m in others)


def test_a_member_over_its_local_budget_sends_nothing_but_the_secure_round_completes_and_it_co_signs(
    consortium: InProcessConsortium, caplog: pytest.LogCaptureFixture
) -> None:
    c = consortium
    node = c.nodes[DP_MEMBER - 1]
    # a member that sends nothing is waited for until the round's deadline, as in a plain round: keep it short
    config, base = load_config(c.layout.aggregator_dir)
    save_config(config.model_copy(update={"round_deadline_seconds": JOIN_DEADLINE_SECONDS}), base)
    with caplog.at_level(logging.ERROR, logger="node.participant"):
        c.run_rounds(2, timeout=180)
    refusals = [
        r.getMessage() for r in caplog.records if "round 1 not trained: local DP-SGD would bring" in r.getMessage()
    ]
    assert len(refusals) == 1, refusals  # said once, not at every poll

    address = node.account.address
    ledger = c.nodes[0].ledger
    assert address not in [e.institution for e in ledger.updates_submitted(round=1)]
    manifest = _manifest(c, 1)
    record, _ = _record(c, 1)
    assert DP_MEMBER not in record.joins and record.survivors == (1, 2, 3, 4)
    assert len(manifest.included) == 4 and manifest.excluded == ()
    _posted_is_plain_alignment(c, 1, [1, 2, 3, 4])
    posted = ledger.global_models_posted(round=1)[0]
    assert address.lower() in [a.lower() for a in posted.approvers]  # it checked and co-signed the round

    spend = LocalPrivacySpend(node.state_dir, POLICY)
    assert list(spend.rounds()) == [0]  # the refused round is not counted
    refusal = spend.refusal()
    assert refusal is not None and refusal.startswith("round 1 not trained")
    hospital = _local_privacy(c)[address]
    assert [r["round"] for r in hospital["rounds"]] == [0] and hospital["spent_epsilon"] == spend.spent()
