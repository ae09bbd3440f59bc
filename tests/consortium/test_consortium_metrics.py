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


@pytest.fixture
def served():
    """Serve a FastAPI app on a free loopback port in a thread (a real HTTP server)."""
    import socket
    import threading
    import time

    import uvicorn

    servers = []

    def serve(app) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield serve
    for server in servers:
        server.should_exit = True


def test_the_audit_api_shows_metrics_it_verified_against_the_ledger(ledger_deployment, dev_accounts, served, tmp_path):
    from fastapi import FastAPI

    from fedledger.audit.api import create_app as audit_app
    from fedledger.audit.setup import open_audit_service
    from fedledger.sm9 import SignMasterKey

    deployment_file = ledger_deployment.save(tmp_path / "deployment.json")
    SignMasterKey.generate().public_key.save(tmp_path / "mpk.pem")
    service = open_audit_service(
        store=f"local:{tmp_path / 'store'}", master_public_key=tmp_path / "mpk.pem", deployment=deployment_file
    )
    member, other = dev_accounts.institutions[0], dev_accounts.institutions[1]

    def body(account, value: float) -> dict:
        return signed(
            bytes(account.key), make_report(31337, ledger_deployment.address, 0, account.address, "accuracy", value, 50)
        )

    honest = body(member, 0.7)
    altered = body(other, 0.2)
    altered["payload"]["value"] = 0.99  # what a lying aggregator might serve
    lying_aggregator = FastAPI()
    lying_aggregator.get("/metrics")(lambda: {"reports": [honest, altered]})
    client = TestClient(audit_app(service, served(lying_aggregator)))
    shown = client.get("/metrics").json()
    assert shown["unverified_reports"] == 1
    assert shown["rounds"] == [
        {"round": 0, "metric": "accuracy", "federated": 0.7, "samples": 50, "sites": {"hospital-1": 0.7}}
    ]
    assert TestClient(audit_app(service)).get("/metrics").status_code == 404
