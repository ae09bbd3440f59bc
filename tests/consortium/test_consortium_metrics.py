"""Per-round metrics: only a member's own signed report counts; an altered number, a report signed
by someone else or for another ledger is refused; the federated value weighs sites by samples; the
aggregator's API keeps and serves what it verified, across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from aggregator.http_api import SessionBoard, create_app
from fedledger.consortium.metrics import MetricBoard, MetricRejected, make_report, per_round, plot, signed, verify
from fedledger.protocol.consortium import Consortium, Member

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
A, B, OUTSIDER = (Account.create() for _ in range(3))
ROSTER = Consortium(
    31337,
    CONTRACT,
    f"consortium:31337:{CONTRACT.lower()}",
    2,
    (Member("hospital-1", A.address, "inst:hospital-1", 1), Member("hospital-2", B.address, "inst:hospital-2", 2)),
)


def report(account, round_index: int = 0, value: float = 0.5, samples: int = 10, contract: str = CONTRACT) -> dict:
    return signed(
        bytes(account.key), make_report(31337, contract, round_index, account.address, "accuracy", value, samples)
    )


def test_a_members_report_verifies_and_names_it() -> None:
    assert verify(report(A), ROSTER)["name"] == "hospital-1"


def test_an_altered_value_is_refused() -> None:
    body = report(A, value=0.4)
    body["payload"]["value"] = 0.99
    with pytest.raises(MetricRejected):
        verify(body, ROSTER)


def test_a_report_for_a_member_signed_by_another_key_is_refused() -> None:
    body = report(OUTSIDER)
    body["payload"]["institution"] = A.address.lower()
    with pytest.raises(MetricRejected):
        verify(body, ROSTER)
    with pytest.raises(MetricRejected):
        verify(report(OUTSIDER), ROSTER)


def test_a_report_for_another_ledger_is_refused() -> None:
    with pytest.raises(MetricRejected):
        verify(report(A, contract="0x" + "11" * 20), ROSTER)


def test_the_federated_value_weighs_sites_by_their_samples(tmp_path: Path) -> None:
    rounds = per_round([verify(report(A, 0, 1.0, 30), ROSTER), verify(report(B, 0, 0.0, 10), ROSTER)])
    assert rounds[0]["federated"] == pytest.approx(0.75)
    assert rounds[0]["sites"] == {"hospital-1": 1.0, "hospital-2": 0.0}
    plot(rounds, tmp_path / "m.png", "t")
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_aggregator_api_keeps_verified_reports_across_a_restart(tmp_path: Path) -> None:
    board = SessionBoard()
    board.metrics = MetricBoard(ROSTER, tmp_path / "metrics.json")
    client = TestClient(create_app(board))
    assert client.post("/rounds/0/metrics", json=report(A, 0, 0.8, 20)).status_code == 200
    forged = report(OUTSIDER)
    assert client.post("/rounds/0/metrics", json=forged).status_code == 422
    assert client.post("/rounds/3/metrics", json=report(B, 0)).status_code == 422  # names another round
    restarted = SessionBoard()
    restarted.metrics = MetricBoard(ROSTER, tmp_path / "metrics.json")
    served = TestClient(create_app(restarted)).get("/metrics").json()
    assert len(served["reports"]) == 1 and served["rounds"][0]["sites"] == {"hospital-1": 0.8}
