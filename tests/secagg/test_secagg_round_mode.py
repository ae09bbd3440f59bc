"""Secure aggregation as a round mode, end to end on the real Anvil: five institutions (widths 1, 1/2,
1/2, 1/4, 1/8) as threads, the aggregator with its HTTP API over mutual TLS, the real store.

Rounds run in order on one consortium: an honest round, a round with one dropout (who then submits
too late), a round with n - t dropouts, and a round whose member lies in the reveal phase.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from aggregator.config import load_config, save_config
from aggregator.driver import AggregatorContext, run_aggregator
from aggregator.http_api import SessionBoard, create_app
from aggregator.http_server import api_server, serve_in_background
from aggregator.secagg_board import SecureBoard
from demo.in_process import InProcessConsortium
from fedledger.audit.service import AuditService
from fedledger.chain.localchain import LocalChain
from fedledger.digests import sm3
from fedledger.fl import ClientUpdate, load_client_update, load_global, make_index_map
from fedledger.fl.server_momentum import ServerMomentumAlignment
from fedledger.protocol.manifest import ReasonCode, RoundManifest, read_posted_manifest
from fedledger.protocol.secagg_round import Join, SecAggRecord, SecureRoundError, compute_secure_round, publish
from fedledger.protocol.session_auth import sign_payload
from fedledger.secagg.layout import flatten_state
from fedledger.secagg.member import RoundKeys
from fedledger.secagg.messages import MaskedInput, Reveal, RoundSetup
from fedledger.secagg.ring import dequantise, encode
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import open_store
from node.http_client import aggregator_client
from node.participant import NodeContext, round_dir, submit_entry
from node.secagg_check import REVEALED_FOR, recompute_secure_round
from node.secagg_client import SecureClient, _Round
from tests.support.manual_aggregator import round_updates

PHASE_SECONDS = 6.0  # how long the aggregator waits for a member missing from a phase


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    with LocalChain("anvil") as chain:
        c = InProcessConsortium.create(tmp_path_factory.mktemp("secure"), chain, epochs=1, secure_aggregation=True)
        config, base = load_config(c.layout.aggregator_dir)
        save_config(config.model_copy(update={"secagg_phase_seconds": PHASE_SECONDS}), base)
        yield c


def _audit(c: InProcessConsortium) -> AuditService:
    ledger = c.nodes[0].ledger
    return AuditService(ledger, open_store(c.layout.store_spec), SignMasterPublicKey.load(c.layout.master_public_key))


def _manifest(c: InProcessConsortium, round_index: int) -> RoundManifest:
    post = c.nodes[0].ledger.global_models_posted(round=round_index)[0]
    return read_posted_manifest(open_store(c.layout.store_spec), post)


def _record(c: InProcessConsortium, round_index: int) -> tuple[SecAggRecord, RoundSetup]:
    record = SecAggRecord.from_dict(_manifest(c, round_index).secagg)
    return record, RoundSetup.from_bytes(record.setup.read(c.nodes[0].store))


def _models(c: InProcessConsortium, round_index: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The round's base and posted global model, opened with the first member's reader keys."""
    node, ledger = c.nodes[0], c.nodes[0].ledger
    opened = ledger.rounds_opened(round=round_index)[0]
    posted = ledger.global_models_posted(round=round_index)[0]
    folder = node.state_dir / "test-models"
    base = node.vault.get(opened.base_cid, opened.base_digest, folder / f"base-{round_index}.safetensors")
    final = node.vault.get(posted.cid, posted.digest, folder / f"global-{round_index}.safetensors")
    return load_global(base)[0], load_global(final)[0]


def _plain_alignment(c: InProcessConsortium, round_index: int, members: list[int], setup: RoundSetup) -> np.ndarray:
    """Plain alignment of the members' own (local, unmasked) updates, quantised to the round's ring,
    with the consortium's server momentum (0.5, from the model two rounds back) after round 0."""
    base, _ = _models(c, round_index)
    before = _models(c, round_index - 1)[0] if round_index > 0 else None
    updates = []
    for m in members:
        node = c.nodes[m - 1]
        update = load_client_update(round_dir(node, round_index) / "update.safetensors")
        state = {n: torch.from_numpy(dequantise(t.numpy(), setup.ring, 8.0)) for n, t in update.state.items()}
        updates.append(ClientUpdate(node.name, state, update.index_map, update.num_samples))
    return flatten_state(ServerMomentumAlignment(0.5, before).aggregate(base, updates))


Goal = Callable[[SecureClient, _Round, str], bool]


def _drive(node: NodeContext, round_index: int, until: Goal, client: SecureClient) -> None:
    """Step one member's secure client by hand until ``until(state, phase)`` (a member outside run_node)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            phase = client.step(round_index)
        except Exception:  # the aggregator not up yet, a phase refused: look again
            phase = "none"
        state = client._rounds.get(round_index)
        if state is not None and until(client, state, phase):
            return
        time.sleep(0.1)
    raise AssertionError(f"{node.name} never reached its goal in round {round_index}")


def _run_with_manual_member(
    c: InProcessConsortium,
    rounds: int,
    client_of: Callable[[NodeContext, object], SecureClient],
    until: Goal,
    manual: tuple[int, ...] = (4,),
) -> None:
    """A round with the ``manual`` members (indices; default: member 5) stepped by hand through
    ``client_of``, the others run as usual."""
    round_index = rounds - 1
    errors: list[BaseException] = []

    def member(node: NodeContext) -> None:
        with aggregator_client(node.aggregator_tls, node.http_timeout_seconds) as http:
            try:
                _drive(node, round_index, until, client_of(node, http))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=member, args=(c.nodes[i],), daemon=True) for i in manual]
    for thread in threads:
        thread.start()
    c.run_rounds(rounds, timeout=180, only=[i for i in range(len(c.nodes)) if i not in manual])
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors


def test_a_secure_round_completes_and_decodes_to_plain_alignment_bit_for_bit(consortium: InProcessConsortium) -> None:
    c = consortium
    ctx = c.run_rounds(1, timeout=180)
    manifest = _manifest(c, 0)
    assert manifest.rule["secagg"] == {"mode": "secagg", "threshold": 3, "frac_bits": 16, "value_bound": 8.0}
    assert len(manifest.included) == 5 and manifest.excluded == ()
    record, setup = _record(c, 0)
    assert record.survivors == (1, 2, 3, 4, 5) and record.cheaters == {}
    _, posted = _models(c, 0)
    plain = _plain_alignment(c, 0, [1, 2, 3, 4, 5], setup)
    assert np.array_equal(flatten_state(posted).view(np.uint32), plain.view(np.uint32))

    store = c.nodes[0].store
    for node, m in zip(c.nodes, range(1, 6), strict=True):
        entry = next(e for e in node.ledger.updates_submitted(round=0) if e.institution == node.account.address)
        masked = MaskedInput.from_bytes(store.read_bytes(entry.cid))
        own = load_client_update(round_dir(node, 0) / "update.safetensors")
        # the ledger entry binds the masked file, which is the sub-model's size in ring words
        assert entry.digest == sm3(masked.to_bytes()) and masked.values.size == setup.positions[m].size
        assert masked.values.size * 4 <= 1.1 * sum(t.numel() * 4 for t in own.state.values()) + 64
        # what the aggregator sees is uniform; the member's encoded update is not
        plain_words = encode(flatten_state(own.state), setup.weights[m], setup.ring, 8.0)
        assert _looks_uniform(masked.values) and not _looks_uniform(plain_words)
    # no member's update was ever sealed to the aggregator or stored: it only holds base and global models
    held = [p.name for p in ctx.state_dir.rglob("*") if p.is_file()]
    assert held and not [name for name in held if "update" in name], held

    # the audit verifies what it can, and says what it cannot
    audit = _audit(c)
    summary = audit.summary()
    assert summary.failures == [] and summary.updates.verified == 5 and summary.global_models.verified == 1
    secure = audit.global_model(0).verdict.secure_aggregation
    assert secure is not None and secure.ok and "unmasking of the 5 included masked inputs" in secure.detail
    assert "not checked here" in secure.detail
    address = c.nodes[1].account.address
    assert "a masked input (secure aggregation)" in audit.update(0, address).verdict.content.detail


def _looks_uniform(words: np.ndarray) -> bool:
    """Chi-square over the top 4 bits of 32-bit words (15 degrees of freedom, p > 0.0001)."""
    counts = np.bincount((words.astype(np.uint64) >> np.uint64(28)).astype(np.int64), minlength=16)
    expected = words.size / 16
    return float(((counts - expected) ** 2 / expected).sum()) < 44.3


def test_one_dropout_after_sharing_keys_is_tolerated_and_its_late_entry_excluded(
    consortium: InProcessConsortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = consortium
    landed = threading.Event()

    class Dropout(SecureClient):
        view: ClassVar[dict] = {}

        def _masked(self, round_index, state, view):  # type: ignore[no-untyped-def]
            Dropout.view = view  # sends nothing in this phase: the aggregator must go on without it

    def late(client: SecureClient, state: _Round, phase: str) -> bool:
        """Once the survivor set is out, submit the masked input anyway: too late to be summed."""
        if phase != "reveal" or not Dropout.view or state.trained is None:
            return False
        data = client.masked_input(state, Dropout.view)
        submit_entry(client.ctx, 1, state.trained, client.ctx.store.put(data), sm3(data))
        landed.set()
        return True

    honest_reveal = SecureClient._reveal

    def reveal_once_the_late_entry_landed(self, round_index, state, view):  # type: ignore[no-untyped-def]
        """The survivors reveal only after the late entry is mined, so the manifest is sure to see it
        (otherwise the round may be over first, and the entry is merely past the manifest's entries)."""
        if round_index == 1 and not isinstance(self, Dropout):
            landed.wait(timeout=60)
        return honest_reveal(self, round_index, state, view)

    monkeypatch.setattr(SecureClient, "_reveal", reveal_once_the_late_entry_landed)

    _run_with_manual_member(c, 2, lambda n, h: Dropout(n, h), late)  # type: ignore[arg-type]
    manifest = _manifest(c, 1)
    record, setup = _record(c, 1)
    assert sorted(record.shares) == [1, 2, 3, 4, 5] and record.survivors == (1, 2, 3, 4)
    late_row = [row for row in manifest.excluded if row.institution == c.nodes[4].account.address.lower()]
    assert [row.code for row in late_row] == [ReasonCode.NOT_IN_SECURE_ROUND]
    assert len(manifest.included) == 4
    _, posted = _models(c, 1)
    plain = _plain_alignment(c, 1, [1, 2, 3, 4], setup)
    assert np.array_equal(flatten_state(posted).view(np.uint32), plain.view(np.uint32))


class Silent(SecureClient):
    """Joins and shares keys, then sends nothing: a member that drops out before its masked input."""

    def _masked(self, round_index, state, view):  # type: ignore[no-untyped-def]
        return None


def test_n_minus_t_dropouts_are_tolerated(consortium: InProcessConsortium) -> None:
    c = consortium  # n = 5, t = 3: members 4 and 5 share keys and vanish
    _run_with_manual_member(c, 3, Silent, lambda _, s, p: p == "reveal", manual=(3, 4))  # type: ignore[arg-type]
    manifest = _manifest(c, 2)
    record, setup = _record(c, 2)
    assert sorted(record.shares) == [1, 2, 3, 4, 5] and record.survivors == (1, 2, 3)
    assert len(manifest.included) == 3 and manifest.excluded == ()
    _, posted = _models(c, 2)
    plain = _plain_alignment(c, 2, [1, 2, 3], setup)
    assert np.array_equal(flatten_state(posted).view(np.uint32), plain.view(np.uint32))


def test_a_member_lying_in_the_reveal_phase_is_named_and_cannot_be_hidden(consortium: InProcessConsortium) -> None:
    c = consortium

    class Liar(SecureClient):
        def _post(self, round_index, phase, data, state):  # type: ignore[no-untyped-def]
            if phase == "reveal":
                honest = Reveal.from_bytes(data)
                victim = min(honest.seed_shares)
                shares = dict(honest.seed_shares)
                shares[victim] = bytes([shares[victim][0] ^ 1]) + shares[victim][1:]
                data = Reveal(honest.round_index, honest.member, honest.survivors_digest, shares, honest.key_shares)
                data = data.to_bytes()
            super()._post(round_index, phase, data, state)

    _run_with_manual_member(c, 4, lambda n, h: Liar(n, h), lambda _, s, p: "reveal" in s.done)  # type: ignore[arg-type]
    manifest = _manifest(c, 3)
    record, setup = _record(c, 3)
    assert list(record.cheaters) == [5] and "contradict their dealers' commitments" in record.cheaters[5]
    assert len(manifest.included) == 5  # its masked input is in the sum; only its reveal was set aside
    _, posted = _models(c, 3)
    assert np.array_equal(
        flatten_state(posted).view(np.uint32), _plain_alignment(c, 3, [1, 2, 3, 4, 5], setup).view(np.uint32)
    )
    # a manifest that hid the liar would differ from every node's recomputation, which names it again
    node = c.nodes[0]
    base, _ = _models(c, 3)
    hidden = SecAggRecord(record.setup, record.joins, record.shares, record.survivors, record.reveals, {})
    recomputed, _ = compute_secure_round(
        node.store, node.master_public_key, node.consortium, 3, base, round_updates(node.ledger, 3),
        node.rule.secagg, hidden,  # type: ignore[arg-type]
    )  # fmt: skip
    assert recomputed.secagg == manifest.secagg != hidden.to_dict()

    audit = _audit(c)
    secure = audit.global_model(3).verdict.secure_aggregation
    assert secure is not None and secure.ok and "caught lying in the reveal phase: [5]" in secure.detail
    # an altered published reveal is caught by the audit
    store = open_store(c.layout.store_spec)
    block = store.block_path(record.reveals[1].cid)  # type: ignore[attr-defined]
    block.write_bytes(block.read_bytes()[:-1] + bytes([block.read_bytes()[-1] ^ 1]))
    secure = _audit(c).global_model(3).verdict.secure_aggregation
    assert secure is not None and not secure.ok and "does not check out" in secure.detail


def test_an_aggregator_restarted_mid_round_resumes_the_secure_phases(consortium: InProcessConsortium) -> None:
    c = consortium
    rounds, round_index = 5, 4
    config, base = load_config(c.layout.aggregator_dir)
    password = (c.layout.aggregator_dir / "password").read_text(encoding="utf-8").strip()
    stop_nodes = threading.Event()
    nodes = c.start_nodes(rounds, stop_nodes)

    def aggregator(stop: threading.Event) -> tuple[AggregatorContext, threading.Thread, Callable[[], None]]:
        """An aggregator (API and driver) in threads, and how to take its API down."""
        ctx = c.aggregator_context()
        ctx.poll_interval = c.aggregator_poll
        server = api_server(ctx.board, config, base, password, ctx.consortium.chain_id, insecure_http=False)
        http = serve_in_background(server)
        driver = threading.Thread(target=run_aggregator, args=(ctx, rounds, stop), daemon=True)
        driver.start()

        def shut() -> None:
            server.should_exit = True
            http.join(timeout=10)

        return ctx, driver, shut

    try:
        first_stop = threading.Event()
        first, driver, shut = aggregator(first_stop)
        deadline = time.monotonic() + 120
        while not (first.board.secure and first.board.secure.round(round_index).phase == "masked"):
            assert time.monotonic() < deadline, "the round never reached its masked phase"
            time.sleep(0.05)
        first_stop.set()  # the aggregator goes away once the members hold each other's shares
        driver.join(timeout=30)
        shut()
        assert not c.nodes[0].ledger.global_models_posted(round=round_index)
        second_stop = threading.Event()
        _, driver, shut = aggregator(second_stop)
        driver.join(timeout=150)
        second_stop.set()
        shut()
    finally:
        stop_nodes.set()
        for t in nodes:
            t.join(timeout=30)
    record, _ = _record(c, round_index)
    manifest = _manifest(c, round_index)
    assert record.survivors == (1, 2, 3, 4, 5) and len(manifest.included) == 5
    assert not c.errors

    # a member checks the record's survivor set against the one it was shown when it revealed
    node = c.nodes[0]
    folder = round_dir(node, round_index)
    updates = round_updates(node.ledger, round_index)
    recompute_secure_round(node, round_index, folder / "base.safetensors", updates, manifest)
    (folder / REVEALED_FOR).write_text(json.dumps([1, 2, 3]), encoding="utf-8")
    with pytest.raises(SecureRoundError, match=r"revealed for the survivor set \[1, 2, 3\]"):
        recompute_secure_round(node, round_index, folder / "base.safetensors", updates, manifest)


def test_the_secure_board_refuses_forged_misrouted_and_out_of_phase_messages(consortium: InProcessConsortium) -> None:
    c = consortium
    one, two = c.nodes[0], c.nodes[1]
    store = open_store(c.layout.store_spec)
    board = SessionBoard()
    board.secure = SecureBoard(store, one.master_public_key, one.consortium, lambda address: True)
    board.secure.round(7)
    client = TestClient(create_app(board))

    def join_of(node: NodeContext, member: int, signer: NodeContext) -> bytes:
        index_map = load_client_update(round_dir(node, 0) / "update.safetensors").index_map.to_dict()
        keys = RoundKeys().advert(7, member)
        return Join(7, member, node.account.address.lower(), keys, index_map, 10).signed(signer.sm9_key).to_bytes()

    def post(node: NodeContext, phase: str, data: bytes, member: int | None = None, digest: bytes | None = None) -> int:
        payload: dict[str, object] = {"round": 7}
        payload["member"] = member or node.consortium.by_address(node.account.address).share_index
        payload |= {"cid": store.put(data), "digest": "0x" + (digest or sm3(data)).hex()}
        body = {"payload": payload, "auth": sign_payload(node.account.key, payload)}
        return client.post(f"/rounds/7/secagg/{phase}", json=body).status_code

    assert post(one, "join", join_of(two, 2, two), member=2) == 422  # posted under another member's id
    assert post(two, "join", join_of(two, 2, one)) == 422  # signed with another member's SM9 key
    assert post(two, "join", join_of(two, 2, two), digest=bytes(32)) == 422  # bytes not the posted digest
    assert post(two, "share", join_of(two, 2, two)) == 422  # not a share message
    assert post(two, "join", join_of(two, 2, two)) == 200
    assert board.secure.find(7).view()["phase"] == "join" and list(board.secure.find(7).view()["joins"]) == ["2"]
    assert post(two, "join", join_of(two, 2, two)) == 409  # a second, different join
    assert client.get("/rounds/8/secagg").status_code == 404
    # a board held to the consortium's selection refuses a join whose window is not the round's
    spec = c.aggregator_context().spec
    board.secure = SecureBoard(store, one.master_public_key, one.consortium, lambda a: True, window=(spec, two.rule))
    board.secure.round(7)
    assert post(two, "join", join_of(two, 2, two)) == 422  # round 0's rolling window, not round 7's
    rolling = make_index_map(spec, two.width_rate, "rolling", 7).to_dict()
    right = Join(7, 2, two.account.address.lower(), RoundKeys().advert(7, 2), rolling, 10).signed(two.sm9_key)
    assert post(two, "join", right.to_bytes()) == 200


def test_a_node_refuses_a_setup_that_is_not_what_the_signed_joins_give(consortium: InProcessConsortium) -> None:
    c = consortium
    record, setup = _record(c, 0)
    node = c.nodes[0]
    forged = RoundSetup(setup.round_index, setup.threshold, setup.ring, setup.global_length,
                        {**setup.weights, 2: setup.weights[2] * 100}, setup.positions)  # fmt: skip
    view = {"joins": {str(m): r.to_dict() for m, r in record.joins.items()}}
    client = SecureClient(node, None)  # type: ignore[arg-type]
    assert client._setup(0, {**view, "setup": record.setup.to_dict()})[0].digest() == setup.digest()
    forged_ref = publish(node.store, forged.to_bytes())
    with pytest.raises(SecureRoundError, match="not the one the members' joins give"):
        client._setup(0, {**view, "setup": forged_ref.to_dict()})
