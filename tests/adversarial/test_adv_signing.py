"""Item 2 of issue #10: the aggregator takes only approvals the contract will accept, on a real Anvil.

Every refused approval gets a 4xx naming the reason and changes nothing; an approval that passed
but that the contract would refuse by post time (its signer was removed) is found by simulating the
post, named, dropped, and the round still posts with another member's approval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aggregator.approval_check import SECP256K1_N
from aggregator.driver import post_would_pass
from aggregator.http_api import SessionBoard, create_app
from aggregator.signing import SigningSession
from fedledger.chain.approvals import GlobalModelRecord, sign_global_model
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles
from tests.support.signing_session import SessionFixture, aggregator_context, make_record, session_fixture


@pytest.fixture
def fx(ledger: LedgerClient, dev_accounts: DevRoles) -> SessionFixture:
    return session_fixture(ledger, dev_accounts)


def _client(session: SigningSession) -> TestClient:
    board = SessionBoard()
    board.publish(session)
    return TestClient(create_app(board))


def _post_approval(client: TestClient, session: SigningSession, approval: bytes) -> tuple[int, str]:
    url = f"/rounds/0/sessions/{session.session_id}/approvals"
    response = client.post(url, json={"approval": "0x" + approval.hex()})
    return response.status_code, response.text


def _high_s_twin(approval: bytes) -> bytes:
    s = int.from_bytes(approval[32:64], "big")
    return approval[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - approval[64]])


def _wrong_nonce(fx: SessionFixture, session: SigningSession) -> bytes:
    assert session.signature_der is not None
    gm = GlobalModelRecord.from_round_record(session.record, session.signature_der)
    nonce = fx.ledger.nonces().global_model + 1
    return sign_global_model(fx.roles.institutions[0], fx.ledger.domain, gm, nonce)


def _other_record(fx: SessionFixture, session: SigningSession) -> bytes:
    assert session.signature_der is not None
    gm = GlobalModelRecord.from_round_record(make_record(fx.ledger, "bafkreiothermodel"), session.signature_der)
    return fx.ledger.approve_global_model(fx.roles.institutions[0], gm)


def _outsider(fx: SessionFixture, session: SigningSession) -> bytes:
    assert session.signature_der is not None
    gm = GlobalModelRecord.from_round_record(session.record, session.signature_der)
    return fx.ledger.approve_global_model(fx.roles.outsider, gm)


BAD_APPROVALS: dict[str, tuple[Callable[[SessionFixture, SigningSession], bytes], str]] = {
    "empty": (lambda fx, s: b"", "65 bytes"),
    "64 bytes": (lambda fx, s: fx.approval(s, 0)[:64], "65 bytes"),
    "zeros": (lambda fx, s: bytes(65), "out of range"),
    "high-s twin": (lambda fx, s: _high_s_twin(fx.approval(s, 0)), "high s"),
    "v of 0": (lambda fx, s: fx.approval(s, 0)[:64] + bytes([fx.approval(s, 0)[64] - 27]), "v must be 27 or 28"),
    "wrong nonce": (_wrong_nonce, "not an active institution"),
    "other record": (_other_record, "not an active institution"),
    "outsider": (_outsider, "not an active institution"),
}


@pytest.mark.parametrize("case", sorted(BAD_APPROVALS))
def test_an_approval_the_contract_would_refuse_gets_a_4xx_with_its_reason_and_changes_nothing(
    fx: SessionFixture, case: str
) -> None:
    session = fx.signed_session()
    make, reason = BAD_APPROVALS[case]
    client = _client(session)
    status, text = _post_approval(client, session, make(fx, session))
    assert status == 422, text
    assert reason in text
    assert session.approvals == {}
    assert _post_approval(client, session, fx.approval(session, 0))[0] == 200  # the good one still goes in


def test_an_approval_from_a_member_removed_on_chain_is_refused(fx: SessionFixture) -> None:
    session = fx.signed_session()
    approval = fx.approval(session, 4)
    fx.remove_on_chain(4)
    status, text = _post_approval(_client(session), session, approval)
    assert status == 422 and "not an active institution on the ledger now" in text
    assert session.approvals == {}


def test_a_repeated_approval_counts_once(fx: SessionFixture) -> None:
    session = fx.signed_session()
    client = _client(session)
    for _ in range(3):
        assert _post_approval(client, session, fx.approval(session, 0))[0] == 200
    assert len(session.approvals) == 1
    time.sleep(0.05)
    assert session.tick() == "approve"  # one signer, k = 3


def test_k_is_read_from_the_chain_not_from_the_roster_file(fx: SessionFixture, dev_accounts: DevRoles) -> None:
    session = fx.signed_session()
    for i in range(3):
        session.add_approval("0x" + fx.approval(session, i).hex())
    fx.remove_on_chain(4)  # four active; raise k to 4 on chain
    from fedledger.chain.approvals import MembershipChange

    change = MembershipChange.set_threshold(4)
    approvals = [fx.ledger.approve_membership_change(a, change) for a in dev_accounts.institutions[:3]]
    fx.ledger.set_threshold(dev_accounts.deployer, 4, approvals)
    time.sleep(0.05)
    assert session.tick() == "approve"  # three approvals, the chain now wants four
    session.add_approval("0x" + fx.approval(session, 3).hex())
    session.tick()  # quorum reached: the grace period for the fifth signer starts
    time.sleep(0.05)
    assert session.tick() == "ready"


def test_an_approval_the_contract_refuses_at_post_time_is_named_dropped_and_replaced(
    fx: SessionFixture, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session = fx.signed_session()
    for i in range(3):
        session.add_approval("0x" + fx.approval(session, i).hex())
    session.tick()
    time.sleep(0.05)
    assert session.tick() == "ready"
    fx.remove_on_chain(2)  # accepted while active; the contract now refuses it
    ctx = aggregator_context(fx, tmp_path)
    with caplog.at_level(logging.WARNING, logger="aggregator.driver"):
        assert not post_would_pass(ctx, session)
    removed = fx.roles.institutions[2].address.lower()
    assert removed in caplog.text and "ApproverNotActive" in caplog.text
    assert removed not in session.approvals and session.phase == "approve"
    session.add_approval("0x" + fx.approval(session, 3).hex())
    session.tick()
    time.sleep(0.05)
    assert session.tick() == "ready"
    assert post_would_pass(ctx, session)
    assert session.signature_der is not None
    gm = GlobalModelRecord.from_round_record(session.record, session.signature_der)
    fx.ledger.post_global_model(fx.roles.aggregator, gm, [a for _, a in session.approval_list()])
    assert not fx.ledger.round_state().open
