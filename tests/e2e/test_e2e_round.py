"""The whole round protocol end to end, then tampering, cheating, crashing and outsiders.

Tests run in order on one consortium: two honest rounds first, then a round with a cheating
signer, then a round whose aggregator is killed with SIGKILL and restarted, then tampering.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.in_process import InProcessConsortium as Consortium
from fedledger.audit.service import AuditService
from fedledger.chain.approvals import GlobalModelRecord
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import dev_roles
from fedledger.chain.errors import NotActiveInstitution, NotEnoughApprovals
from fedledger.chain.localchain import LocalChain
from fedledger.digests import sm3
from fedledger.fl import load_global
from fedledger.protocol import RoundRecord, UpdateEntry, merkle_root
from fedledger.protocol.manifest import ReasonCode
from fedledger.protocol.round_check import AggregationRule, LedgerUpdate, compute_round
from fedledger.sm9 import Signature, SignMasterPublicKey, sign, verify
from fedledger.sm9.curve import P1, g1_add
from fedledger.sm9.threshold import PartialSignature, Signer
from fedledger.store import open_store
from node.participant import RecordRefused, check_record, entry_of, train_and_submit
from tests.support.manual_aggregator import honest_view, open_next_round, publish, round_base, round_updates
from tests.support.sigkill import sigkill_once


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    with LocalChain("anvil") as chain:
        c = Consortium.create(tmp_path_factory.mktemp("consortium"), chain)
        c.run_rounds(2)
        yield c


def ledger_of(c: Consortium) -> LedgerClient:
    return c.nodes[0].ledger


def audit_of(c: Consortium) -> AuditService:
    return AuditService(
        ledger_of(c), open_store(c.layout.store_spec), SignMasterPublicKey.load(c.layout.master_public_key)
    )


def test_two_rounds_are_posted_with_every_update_and_a_standard_sm9_threshold_signature(c: Consortium) -> None:
    ledger = ledger_of(c)
    posted = ledger.global_models_posted()
    assert [p.round for p in posted] == [0, 1]
    opened = {o.round: o for o in ledger.rounds_opened()}
    mpk = SignMasterPublicKey.load(c.layout.master_public_key)
    for post in posted:
        assert post.update_count == 5
        assert len(set(post.approvers)) >= 3
        events = sorted(ledger.updates_submitted(round=post.round), key=lambda e: e.institution.lower())
        assert merkle_root([entry_of(ledger, e).leaf(e.sm9_signature) for e in events]) == post.updates_root
        record = RoundRecord.from_posted(ledger.chain_id, ledger.address, opened[post.round].base_digest, post)
        signature = Signature.from_der(post.sm9_threshold_signature)
        assert verify(mpk, c.layout.consortium.consortium_identity, record.message(), signature)
    # round 1 starts from round 0's global model
    assert opened[1].base_cid == posted[0].cid and opened[1].base_digest == posted[0].digest
    summary = audit_of(c).summary()
    assert summary.failures == []
    assert summary.updates.verified == 10 and summary.global_models.verified == 2
    # every institution reached the aggregator's API over mutual TLS (its default)
    assert c.layout.aggregator_url.startswith("https://") and all(n.aggregator_tls is not None for n in c.nodes)


@pytest.fixture
def c(consortium: Consortium) -> Consortium:
    return consortium


class CheatingSigner(Signer):
    """Sends a partial signature that is off by P1: the public check must catch it."""

    def sign(self, session_id: str, message: bytes, commitments: list) -> PartialSignature:  # type: ignore[override]
        honest = super().sign(session_id, message, commitments)
        return PartialSignature(honest.index, honest.session_id, g1_add(honest.S, P1))


def test_cheating_signer_is_named_and_the_round_completes_with_the_honest_signers(
    c: Consortium, caplog: pytest.LogCaptureFixture
) -> None:
    cheat = c.nodes[4]
    honest_signer = cheat.signer
    cheat.signer = CheatingSigner(honest_signer.share, honest_signer.public)
    try:
        with caplog.at_level(logging.WARNING, logger="aggregator.driver"):
            c.run_rounds(3)
    finally:
        cheat.signer = honest_signer
    assert "hospital-5" in caplog.text and "failed the check" in caplog.text
    posted = ledger_of(c).global_models_posted(round=2)
    assert len(posted) == 1 and posted[0].update_count == 5


def test_killed_aggregator_resumes_from_the_ledger_and_loses_nothing(c: Consortium) -> None:
    agg = c.layout.aggregator_dir
    command = [
        sys.executable,
        "-m",
        "fedledger.cli",
        "aggregator",
        "run",
        "-c",
        str(agg),
        "--rounds",
        "4",
        "--password-file",
        str(agg / "password"),
    ]
    log_path = agg / "restart-test.log"
    stop = threading.Event()
    nodes = c.start_nodes(4, stop)
    ledger = ledger_of(c)
    with open(log_path, "wb") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        # mid-round: some updates in, none posted
        sigkill_once(first, lambda: len(ledger.updates_submitted(round=3)) >= 3, "round 3 under way", log_path)
        assert not ledger.global_models_posted(round=3)
        second = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=240)
    if second.returncode != 0:
        stop.set()
    for t in nodes:
        t.join(timeout=60)
    stop.set()
    assert second.returncode == 0, log_path.read_text()
    posted = ledger.global_models_posted(round=3)
    assert len(posted) == 1 and posted[0].update_count == 5
    assert not c.errors


def test_an_update_altered_on_disk_is_flagged_by_the_audit(c: Consortium) -> None:
    store = open_store(c.layout.store_spec)
    victim = ledger_of(c).updates_submitted(round=0)[1]
    block = store.block_path(victim.cid)  # type: ignore[attr-defined]
    original = block.read_bytes()
    block.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    try:
        summary = audit_of(c).summary()
        flagged = [f for f in summary.failures if f.kind == "update" and f.cid == victim.cid]
        assert flagged and flagged[0].check == "content", summary.failures
    finally:
        block.write_bytes(original)
    assert audit_of(c).summary().failures == []


@pytest.fixture
def open_round_four(c: Consortium) -> int:
    return open_next_round(ledger_of(c), dev_roles(5).aggregator)


def test_a_bad_sm9_signature_is_flagged_by_the_audit_and_rejected_by_the_aggregator(
    c: Consortium, open_round_four: int, tmp_path: Path
) -> None:
    node = c.nodes[0]
    ledger = node.ledger
    store = open_store(c.layout.store_spec)
    cid = store.put(b"an update whose entry is signed for another round")
    digest = sm3(b"an update whose entry is signed for another round")
    entry = UpdateEntry(
        ledger.chain_id, ledger.address, open_round_four, node.account.address, cid, digest, 10, 1_000_000, b"\x01" * 32
    )
    wrong = UpdateEntry(**{**entry.__dict__, "round": open_round_four + 100})
    bad_signature = sign(node.sm9_key, wrong.message()).to_der()
    ledger.submit_update(node.account, open_round_four, cid, digest, b"\x01" * 32, 10, 1_000_000, bad_signature)
    summary = audit_of(c).summary()
    flagged = [f for f in summary.failures if f.round == open_round_four and f.check == "signature"]
    assert flagged, summary.failures
    event = ledger.updates_submitted(round=open_round_four, institution=node.account.address)[0]
    mpk = SignMasterPublicKey.load(c.layout.master_public_key)
    state, spec, base_digest = round_base(node, ledger, open_round_four, tmp_path)
    bad = LedgerUpdate(entry_of(ledger, event), bad_signature, node.sm9_identity)
    outcome = compute_round(node.vault, mpk, spec, state, base_digest, [bad], AggregationRule(), tmp_path)
    assert outcome.included == [] and [e.code for e in outcome.excluded] == [ReasonCode.SIGNATURE_INVALID]


def test_a_non_member_cannot_submit_and_k_minus_1_approvals_cannot_post(c: Consortium, open_round_four: int) -> None:
    ledger = ledger_of(c)
    roles = dev_roles(5)
    with pytest.raises(NotActiveInstitution):
        ledger.submit_update(
            roles.outsider,
            open_round_four,
            "QmTz3oc4gdpRMKP2sdGUPZTAGRngqjsi99BPoztyP53JMM",
            b"\x02" * 32,
            b"\x03" * 32,
            5,
            1_000_000,
            b"\x04" * 104,
        )
    cid = "QmTz3oc4gdpRMKP2sdGUPZTAGRngqjsi99BPoztyP53JMM"
    count = ledger.round_state().update_count
    record = GlobalModelRecord(
        open_round_four, cid, b"\x05" * 32, b"\x06" * 32, cid, b"\x08" * 32, count, b"\x07" * 104
    )
    approvals = [ledger.approve_global_model(n.account, record) for n in c.nodes[:2]]
    with pytest.raises(NotEnoughApprovals):
        ledger.post_global_model(roles.aggregator, record, approvals)
    assert ledger.round_state().open


def test_nodes_refuse_a_global_model_that_is_not_the_alignment_of_the_included_updates(
    c: Consortium, open_round_four: int
) -> None:
    honest, checker = c.nodes[1], c.nodes[2]
    ledger = honest.ledger
    train_and_submit(honest, open_round_four)
    mpk = SignMasterPublicKey.load(c.layout.master_public_key)
    workdir = c.layout.root / "tamper-global"
    # The honest aggregation (node 0's entry of the earlier test left out: bad signature) passes every check.
    view, manifest = honest_view(checker, mpk, ledger, open_round_four, workdir)
    assert [r.institution for r in manifest.included] == [honest.account.address.lower()]
    check_record(checker, view)
    # The same decisions with a model of other weights are refused.
    _, spec, base_digest = round_base(checker, ledger, open_round_four, workdir)
    honest_path = workdir / "honest.safetensors"
    global_state, _ = load_global(checker.vault.get(manifest.global_cid, manifest.global_digest, honest_path))
    tampered = {name: t + 0.01 for name, t in global_state.items()}
    updates = {u.address: u for u in round_updates(ledger, open_round_four)}
    included = [updates[r.institution] for r in manifest.included]
    bad_view, _ = publish(
        checker, ledger, open_round_four, base_digest, spec, tampered, included, list(manifest.excluded), workdir
    )
    with pytest.raises(RecordRefused, match="not the aggregation"):
        check_record(checker, bad_view)
