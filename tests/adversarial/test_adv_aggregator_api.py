"""Item 9 of issue #10: the aggregator's API limits what any client can make it do.

Bodies over 64 KiB get 413 and a client over its rate 429 (against a real uvicorn on loopback); a
session payload is authenticated against members active on chain before it is decoded; payloads
replayed from another session, from non-members or under another member's share are refused with
a 4xx and change nothing; /docs and /redoc work offline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from aggregator.http_api import SessionBoard, create_app
from aggregator.request_limits import RequestLimits
from aggregator.signing import SigningSession
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles
from fedledger.protocol.session_auth import sign_payload
from fedledger.sm9.threshold import Commitment
from tests.audit.test_audit_docs import _assert_offline
from tests.support.loopback_server import served
from tests.support.signing_session import SessionFixture, session_fixture


def test_a_body_over_64_kib_gets_413_whether_announced_or_streamed() -> None:
    with served(create_app(SessionBoard())) as url, httpx.Client(base_url=url) as http:
        path = "/rounds/0/sessions/abc/commitments"
        huge = {"payload": {"pad": "x" * (100 * 1024)}, "auth": "0x00"}
        announced = http.post(path, json=huge)
        assert announced.status_code == 413 and "65536 bytes" in announced.text

        def chunks() -> Iterator[bytes]:
            for _ in range(100):
                yield b"x" * 1024

        streamed = http.post(path, content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert http.post(path, json={"payload": {}, "auth": "0x00"}).status_code == 404  # small: handled


def test_a_client_over_its_rate_gets_429_then_service_again() -> None:
    limits = RequestLimits(rate_per_second=2.0, rate_burst=5)
    with served(create_app(SessionBoard(), limits=limits)) as url, httpx.Client(base_url=url) as http:
        codes = [http.get("/health").status_code for _ in range(12)]
        assert codes[:5] == [200] * 5 and codes.count(429) >= 6, codes
        refused = http.get("/health")
        assert refused.status_code == 429 and refused.headers["retry-after"]
        time.sleep(1.1)
        assert http.get("/health").status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_aggregator_api_docs_need_no_network(page: str) -> None:
    client = TestClient(create_app(SessionBoard()))
    _assert_offline(client, page)
    assert "fedledger aggregator" in client.get(page).text


# ---------------------------------------------------------------- session payloads on a real Anvil


@pytest.fixture
def fx(ledger: LedgerClient, dev_accounts: DevRoles) -> SessionFixture:
    return session_fixture(ledger, dev_accounts)


def _client(*sessions: SigningSession) -> TestClient:
    board = SessionBoard()
    for session in sessions:
        board.publish(session)
    return TestClient(create_app(board))


def _post(client: TestClient, session: SigningSession, kind: str, payload: dict, auth: str) -> httpx.Response:
    return client.post(f"/rounds/0/sessions/{session.session_id}/{kind}", json={"payload": payload, "auth": auth})


def test_commitments_from_outsiders_and_removed_members_are_refused(fx: SessionFixture) -> None:
    session = fx.new_session()
    client = _client(session)
    payload, _ = fx.commitment(session, 0)
    outsider = _post(client, session, "commitments", payload, sign_payload(bytes(fx.roles.outsider.key), payload))
    assert outsider.status_code == 403 and "not a member" in outsider.text
    fx.remove_on_chain(4)
    removed, auth = fx.commitment(session, 4)
    response = _post(client, session, "commitments", removed, auth)
    assert response.status_code == 403 and "not an active institution" in response.text
    assert session.describe()["phase"] == "commit" and not session._committed


def test_a_garbage_payload_is_refused_before_it_is_decoded(fx: SessionFixture) -> None:
    session = fx.new_session()
    client = _client(session)
    garbage = {"index": 1, "session_id": session.session_id, "D": "zz", "E": "00" * 500}
    unauthenticated = _post(client, session, "commitments", garbage, "0x" + "11" * 65)
    assert unauthenticated.status_code == 403  # refused on its signature, not on its points
    auth = sign_payload(bytes(fx.roles.institutions[0].key), garbage)
    authenticated = _post(client, session, "commitments", garbage, auth)
    assert authenticated.status_code == 422 and "commitment" in authenticated.text
    assert not session._committed


def test_a_commitment_under_another_members_share_is_refused(fx: SessionFixture) -> None:
    session = fx.new_session()
    payload, _ = fx.commitment(session, 1)  # share 2's commitment...
    auth = sign_payload(bytes(fx.roles.institutions[0].key), payload)  # ...sent by share 1's member
    response = _post(_client(session), session, "commitments", payload, auth)
    assert response.status_code == 422 and "holds share 1, not share 2" in response.text


def test_a_commitment_replayed_from_an_earlier_session_is_refused(fx: SessionFixture) -> None:
    earlier, later = fx.new_session(), fx.new_session()
    client = _client(later)
    payload, auth = fx.commitment(earlier, 0)
    assert earlier.add_commitment(payload, auth) is None
    replayed = _post(client, later, "commitments", payload, auth)
    assert replayed.status_code == 422 and "another session" in replayed.text
    assert not later._committed


def test_a_repeated_commitment_counts_once_and_a_different_one_is_refused(fx: SessionFixture) -> None:
    session = fx.new_session()
    client = _client(session)
    payload, auth = fx.commitment(session, 0)
    assert _post(client, session, "commitments", payload, auth).status_code == 200
    assert _post(client, session, "commitments", payload, auth).status_code == 200  # a resend after a timeout
    other = Commitment.from_dict(payload)
    swapped = Commitment(other.index, other.session_id, other.E, other.D).to_dict()
    second = _post(client, session, "commitments", swapped, sign_payload(bytes(fx.roles.institutions[0].key), swapped))
    assert second.status_code == 409 and "already committed" in second.text
    assert session._committed == {1: other}


def _in_sign_phase(fx: SessionFixture) -> SigningSession:
    session = fx.new_session()
    for i in range(3):
        session.add_commitment(*fx.commitment(session, i))
    session.tick()
    time.sleep(0.05)
    assert session.tick() == "sign"
    return session


def test_a_partial_for_another_session_is_refused(fx: SessionFixture) -> None:
    first, second = _in_sign_phase(fx), _in_sign_phase(fx)
    client = _client(second)

    def partial_for(session: SigningSession) -> dict:
        commitments = [Commitment.from_dict(c) for c in session.describe()["commitments"]]
        return fx.signers[0].sign(session.session_id, session.record.message(), commitments).to_dict()

    stray = partial_for(first)
    response = _post(client, second, "partials", stray, sign_payload(bytes(fx.roles.institutions[0].key), stray))
    assert response.status_code == 422 and "another session" in response.text
    assert second._partials == {}
    own = partial_for(second)
    auth = sign_payload(bytes(fx.roles.institutions[0].key), own)
    assert _post(client, second, "partials", own, auth).status_code == 200
