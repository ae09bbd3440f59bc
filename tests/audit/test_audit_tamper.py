"""The audit API flags what is wrong: store content altered or missing on disk, forged SM9
signatures, a ledger digest that is not the file's, a bad threshold signature, a left-out entry.
Each fault is planted by hand (see conftest.TAMPERED_PLANS) and must be reported exactly where it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fedledger.store import LocalStore
from tests.support.audit_scenario import Scenario


@pytest.fixture(scope="module")
def tampered_client(tampered: Scenario) -> TestClient:
    return tampered.client()


def _get(client: TestClient, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
    return response.json()


def _corrupt(store_dir: Path, cid: str) -> Path:
    """Flip one byte in the middle of the block file that holds ``cid`` (a small file: one block)."""
    path = LocalStore(store_dir).block_path(cid)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def test_update_altered_on_disk_is_flagged_on_the_next_request(happy: Scenario, store_copy: Path) -> None:
    client = happy.client(store_copy, recheck_content_after=0)
    address = happy.address(2)
    url = f"/rounds/1/updates/{address}"
    assert _get(client, url)["verdict"]["verified"] is True  # checked once, fine...

    cid = happy.rounds[1].updates[address.lower()]
    _corrupt(store_copy, cid)

    verdict = _get(client, url)["verdict"]  # ...and the same service re-reads the content
    assert verdict["verified"] is False
    assert verdict["content"]["ok"] is False
    assert "corrupt" in verdict["content"]["detail"] and cid in verdict["content"]["detail"]
    assert verdict["signature"]["ok"] is True and verdict["included"]["ok"] is True

    summary = _get(client, "/summary")
    assert summary["all_verified"] is False
    assert summary["updates"] == {"total": 11, "verified": 10, "failed": 1}
    assert summary["global_models"]["failed"] == 0
    assert [(f["kind"], f["round"], f["institution"], f["cid"], f["check"]) for f in summary["failures"]] == [
        ("update", 1, address, cid, "content")
    ]
    assert _get(client, "/rounds/1")["verdict"]["status"] == "failed"


def test_global_model_altered_or_missing_is_flagged(happy: Scenario, store_copy: Path) -> None:
    client = happy.client(store_copy, recheck_content_after=0)
    _corrupt(store_copy, happy.rounds[0].global_cid)
    LocalStore(store_copy).block_path(happy.rounds[1].global_cid).unlink()
    content0 = _get(client, "/rounds/0/global")["verdict"]["content"]
    content1 = _get(client, "/rounds/1/global")["verdict"]["content"]
    assert content0["ok"] is False and "corrupt" in content0["detail"]
    assert content1["ok"] is False and "missing" in content1["detail"]
    summary = _get(client, "/summary")
    assert summary["global_models"] == {"total": 2, "verified": 0, "failed": 2}
    assert {(f["round"], f["check"]) for f in summary["failures"]} == {(0, "content"), (1, "content")}


def test_forged_signature_left_out_is_flagged(tampered: Scenario, tampered_client: TestClient) -> None:
    address = tampered.address(3)
    body = _get(tampered_client, f"/rounds/0/updates/{address}")
    verdict = body["verdict"]
    assert verdict["content"]["ok"] is True
    assert verdict["signature"]["ok"] is False
    assert "hospital-4" in verdict["signature"]["detail"]
    assert verdict["included"]["ok"] is False
    # the aggregator was right to leave it out: the round's global model verifies
    global0 = _get(tampered_client, "/rounds/0/global")
    assert global0["verdict"]["verified"] is True
    assert "3 of the 4 submitted entries" in global0["verdict"]["updates_root"]["detail"]
    assert [a.lower() for a in global0["included"]] == tampered.rounds[0].included
    response = tampered_client.get(f"/rounds/0/updates/{address}/proof")
    assert response.status_code == 409
    assert "not included" in response.json()["message"]


def test_forged_signature_included_fails_the_global_model(tampered: Scenario, tampered_client: TestClient) -> None:
    verdict = _get(tampered_client, f"/rounds/1/updates/{tampered.address(2)}")["verdict"]
    assert verdict["signature"]["ok"] is False and verdict["included"]["ok"] is True
    global1 = _get(tampered_client, "/rounds/1/global")["verdict"]
    assert global1["included_entries"]["ok"] is False
    assert tampered.address(2) in global1["included_entries"]["detail"]
    assert global1["updates_root"]["ok"] is True and global1["threshold_signature"]["ok"] is True
    assert global1["verified"] is False


def test_ledger_digest_not_matching_the_file_is_flagged(tampered: Scenario, tampered_client: TestClient) -> None:
    content = _get(tampered_client, f"/rounds/1/updates/{tampered.address(1)}")["verdict"]["content"]
    assert content["ok"] is False
    assert "differs from the ledger's" in content["detail"]


def test_bad_threshold_signature_is_flagged(tampered: Scenario, tampered_client: TestClient) -> None:
    verdict = _get(tampered_client, "/rounds/2/global")["verdict"]
    assert verdict["threshold_signature"]["ok"] is False
    assert "consortium:" in verdict["threshold_signature"]["detail"]
    # approvals are judged by membership at posting: institution 4 approved round 2, was removed later
    assert verdict["approvals"]["ok"] is True, verdict["approvals"]
    assert verdict["content"]["ok"] is True and verdict["updates_root"]["ok"] is True


def test_summary_lists_exactly_the_planted_faults(tampered: Scenario, tampered_client: TestClient) -> None:
    summary = _get(tampered_client, "/summary")
    found = {(f["kind"], f["round"], f["institution"], f["check"]) for f in summary["failures"]}
    assert found == {
        ("update", 0, tampered.address(3), "signature"),
        ("update", 0, tampered.address(3), "included"),
        ("update", 1, tampered.address(1), "content"),
        ("update", 1, tampered.address(2), "signature"),
        ("global", 1, None, "included_entries"),
        ("global", 2, None, "threshold_signature"),
    }
    assert summary["updates"] == {"total": 9, "verified": 6, "failed": 3}
    assert summary["global_models"] == {"total": 3, "verified": 1, "failed": 2}
    assert summary["all_verified"] is False


def test_removed_institution_keeps_its_history(tampered: Scenario, tampered_client: TestClient) -> None:
    address = tampered.address(4)
    institutions = {i["address"]: i for i in _get(tampered_client, "/institutions")["items"]}
    assert institutions[address]["active"] is False
    assert institutions[tampered.address(0)]["active"] is True
    history = _get(tampered_client, f"/institutions/{address}/history")
    assert [m["event"] for m in history["membership"]] == ["InstitutionAdded", "InstitutionRemoved"]
    # its round-1 entry was signed under its identity at the time and still verifies
    assert [s["round"] for s in history["submissions"]["items"]] == [1]
    verdict = _get(tampered_client, f"/rounds/1/updates/{address}")
    assert verdict["entry"]["sm9_identity"] == "hospital-5"
    assert verdict["verdict"]["signature"]["ok"] is True
    assert _get(tampered_client, "/summary")["institutions"] == 4


def test_wrong_consortium_identity_fails_every_threshold_signature(happy: Scenario) -> None:
    from fedledger.audit.api import create_app
    from fedledger.audit.service import AuditService

    service = AuditService(
        happy.ledger, LocalStore(happy.store_dir), happy.master.public_key, consortium_identity="someone-else"
    )
    summary = _get(TestClient(create_app(service)), "/summary")
    assert summary["consortium_identity"] == "someone-else"
    assert {(f["round"], f["check"]) for f in summary["failures"]} == {
        (0, "threshold_signature"),
        (1, "threshold_signature"),
    }


def test_content_verdicts_are_computed_once_per_cid(happy: Scenario, store_copy: Path) -> None:
    service = happy.service(store_copy)
    assert service.summary().all_verified
    distinct_cids = 1 + sum(len(r.updates) + (r.global_cid is not None) for r in happy.rounds)
    assert service.content.reads == distinct_cids  # the initial model, 11 updates, 2 global models
    _corrupt(store_copy, happy.rounds[1].updates[happy.address(2).lower()])
    assert service.summary().all_verified  # served from the cache: nothing streamed again
    assert service.content.reads == distinct_cids
    rechecking = happy.service(store_copy, recheck_content_after=0)
    assert [f.check for f in rechecking.summary().failures] == ["content"]


def test_content_cache_is_bounded(happy: Scenario) -> None:
    service = happy.service(content_cache_entries=3)
    service.summary()
    first = service.content.reads
    service.summary()
    assert service.content.reads > first  # only 3 verdicts kept: most content is read again
    assert len(service.content) == 3
