"""The audit REST API over a ledger where everything is in order (two posted rounds, one open).

Expected values come from what the scenario builder did (which files it stored, which entries it
signed and included, which accounts approved), never from the audit code's own output.
"""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address
from fastapi.testclient import TestClient

from fedledger.digests import sm3
from fedledger.protocol import MerkleProof, verify_proof
from fedledger.protocol.consortium import consortium_identity
from tests.support.audit_scenario import Scenario


@pytest.fixture(scope="module")
def client(happy: Scenario) -> TestClient:
    return happy.client()


def _ok(client: TestClient, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
    return response.json()


def test_summary_reports_every_entry_verified(client: TestClient, happy: Scenario) -> None:
    body = _ok(client, "/summary")
    assert body["all_verified"] is True
    assert body["failures"] == []
    assert body["updates"] == {"total": 11, "verified": 11, "failed": 0}
    assert body["global_models"] == {"total": 2, "verified": 2, "failed": 0}
    assert (body["rounds"], body["rounds_posted"], body["open_round"]) == (3, 2, 2)
    assert (body["threshold"], body["institutions"]) == (3, 5)
    assert body["access_records"] == 4
    assert body["consortium_identity"] == f"consortium:{happy.deployment.chain_id}:{happy.deployment.address.lower()}"


def test_rounds_list_and_detail(client: TestClient, happy: Scenario) -> None:
    page = _ok(client, "/rounds")
    assert page["total"] == 3
    assert [r["round"] for r in page["items"]] == [0, 1, 2]
    for item, played in zip(page["items"], happy.rounds, strict=True):
        assert item["base_cid"] == played.base_cid
        assert item["base_digest"] == "0x" + played.base_digest.hex()
        assert item["update_count"] == len(played.updates)
        assert item["posted"] is (played.global_cid is not None)
        assert item["global_cid"] == played.global_cid
        assert item["aggregator"] == happy.roles.aggregator.address

    r1 = _ok(client, "/rounds/1")
    assert r1["base_model"]["cid"] == happy.rounds[0].global_cid
    assert r1["base_model"]["origin"] == "round 0 global model"
    assert r1["global_model"]["cid"] == happy.rounds[1].global_cid
    assert r1["approvers"] == happy.rounds[1].approvers
    assert r1["included"] == [to_checksum_address(a) for a in happy.rounds[1].included]
    assert r1["verdict"] == {
        "status": "verified", "updates_verified": 5, "updates_failed": 0, "global_verified": True, "failures": []
    }  # fmt: skip

    r2 = _ok(client, "/rounds/2")
    assert r2["global_model"] is None and r2["included"] is None
    assert r2["verdict"]["status"] == "open"
    assert r2["verdict"]["updates_verified"] == 2


def test_update_entry_and_verdict(client: TestClient, happy: Scenario) -> None:
    played = happy.rounds[1]
    for i in range(5):
        address = happy.address(i)
        body = _ok(client, f"/rounds/1/updates/{address.lower()}")
        entry, verdict = body["entry"], body["verdict"]
        expected = played.entries[address.lower()]
        assert entry["institution"] == address
        assert entry["sm9_identity"] == f"hospital-{i + 1}"
        assert entry["cid"] == expected.cid
        assert entry["digest"] == "0x" + expected.digest.hex()
        assert entry["num_samples"] == expected.num_samples
        assert entry["width_rate_ppm"] == expected.width_ppm
        assert entry["sm9_signature"] == "0x" + played.signatures[address.lower()].hex()
        assert verdict["verified"] is True and verdict["final"] is True
        for name in ("content", "signature", "included"):
            assert verdict[name]["ok"] is True, verdict[name]
    open_round = _ok(client, f"/rounds/2/updates/{happy.address(0)}")["verdict"]
    assert open_round["included"] is None and open_round["final"] is False and open_round["verified"] is True


def test_updates_list_in_chain_order_with_inclusion(client: TestClient, happy: Scenario) -> None:
    page = _ok(client, "/rounds/1/updates")
    assert page["total"] == 5
    # round 1 was submitted by institutions 4, 3, 2, 1, 0 in that order
    assert [u["institution"] for u in page["items"]] == [happy.address(i) for i in (4, 3, 2, 1, 0)]
    assert all(u["included"] is True for u in page["items"])
    assert all(u["included"] is None for u in _ok(client, "/rounds/2/updates")["items"])


def test_inclusion_proofs_verify_against_the_posted_root(client: TestClient, happy: Scenario) -> None:
    for played in happy.rounds[:2]:
        for address in played.included:
            proof = _ok(client, f"/rounds/{played.round}/updates/{address}/proof")
            leaf = played.entries[address].leaf(played.signatures[address])
            assert proof["leaf"] == "0x" + leaf.hex()
            assert proof["updates_root"] == "0x" + played.updates_root.hex()
            assert proof["leaf_count"] == len(played.included)
            merkle = MerkleProof(
                index=proof["index"],
                siblings=[bytes.fromhex(s[2:]) for s in proof["siblings"]],
                left=proof["sibling_on_left"],
            )
            assert verify_proof(leaf, merkle, played.updates_root)
            assert not verify_proof(sm3(b"another leaf"), merkle, played.updates_root)


def test_global_model_verdict(client: TestClient, happy: Scenario) -> None:
    body = _ok(client, "/rounds/0/global")
    played = happy.rounds[0]
    assert body["entry"]["cid"] == played.global_cid
    assert body["entry"]["digest"] == "0x" + played.global_digest.hex()
    assert body["entry"]["approvers"] == played.approvers
    assert body["record"]["signed_as"] == consortium_identity(happy.deployment.chain_id, happy.deployment.address)
    assert body["record"]["base_digest"] == "0x" + happy.initial_digest.hex()
    assert body["included"] == [to_checksum_address(a) for a in played.included]
    verdict = body["verdict"]
    assert verdict["verified"] is True
    for name in ("content", "threshold_signature", "approvals", "updates_root", "included_entries", "base_model"):
        assert verdict[name]["ok"] is True, (name, verdict[name])
    assert "k = 3" in verdict["approvals"]["detail"]


def test_institutions_and_history(client: TestClient, happy: Scenario) -> None:
    page = _ok(client, "/institutions")
    assert page["total"] == 5
    assert [i["address"] for i in page["items"]] == [happy.address(i) for i in range(5)]
    assert [i["sm9_id"] for i in page["items"]] == [f"hospital-{i + 1}" for i in range(5)]
    assert all(i["active"] for i in page["items"])
    # institution 0: submitted in rounds 0, 1, 2; approved round 0 (approvers of round r: r, r+1, r+2)
    zero = page["items"][0]
    assert (zero["submissions"], zero["approvals"], zero["accesses"]) == (3, 1, 1)

    history = _ok(client, f"/institutions/{happy.address(0)}/history")
    assert [s["round"] for s in history["submissions"]["items"]] == [0, 1, 2]
    assert [a["round"] for a in history["approvals"]["items"]] == [0]
    assert [(a["cid"], a["purpose"]) for a in history["accesses"]["items"]] == [
        (happy.rounds[1].base_cid, "train round 1")
    ]
    assert [m["event"] for m in history["membership"]] == ["InstitutionAdded"]
    assert history["membership"][0]["args"]["sm9Id"] == "hospital-1"


def test_access_records_filtered(client: TestClient, happy: Scenario) -> None:
    everything = _ok(client, "/access")
    assert everything["total"] == 4
    assert everything["items"][0]["accessor"] == happy.roles.aggregator.address
    assert everything["items"][0]["cid"] == happy.initial_cid
    by_cid = _ok(client, f"/access?cid={happy.rounds[1].base_cid}")
    assert sorted(a["accessor"] for a in by_cid["items"]) == sorted([happy.address(0), happy.address(2)])
    mine = _ok(client, f"/access?accessor={happy.address(1).lower()}")
    assert [(a["cid"], a["purpose"]) for a in mine["items"]] == [(happy.rounds[2].base_cid, "train round 2")]
    both = _ok(client, f"/access?accessor={happy.address(1)}&cid={happy.rounds[1].base_cid}")
    assert both["total"] == 0


def test_pagination(client: TestClient, happy: Scenario) -> None:
    first = _ok(client, "/rounds?limit=2")
    assert (first["total"], first["offset"], first["limit"]) == (3, 0, 2)
    assert [r["round"] for r in first["items"]] == [0, 1]
    assert [r["round"] for r in _ok(client, "/rounds?offset=2&limit=2")["items"]] == [2]
    assert _ok(client, "/rounds?offset=50")["items"] == []
    pages = [_ok(client, f"/rounds/1/updates?offset={o}&limit=2")["items"] for o in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [u["institution"] for p in pages for u in p] == [happy.address(i) for i in (4, 3, 2, 1, 0)]
    institutions = _ok(client, "/institutions?offset=3&limit=10")
    assert [i["address"] for i in institutions["items"]] == [happy.address(3), happy.address(4)]
    history = _ok(client, f"/institutions/{happy.address(0)}/history?offset=1&limit=1")
    assert [s["round"] for s in history["submissions"]["items"]] == [1]
    assert history["submissions"]["total"] == 3


def test_lineage_back_to_round_zero(client: TestClient, happy: Scenario) -> None:
    r0, r1, r2 = happy.rounds
    lineage = _ok(client, f"/models/{r1.global_cid}/lineage")
    assert lineage["kind"] == "global" and lineage["round"] == 1 and lineage["complete"] is True
    steps = lineage["steps"]
    assert [(s["round"], s["model_cid"], s["base_cid"]) for s in steps] == [
        (1, r1.global_cid, r0.global_cid),
        (0, r0.global_cid, happy.initial_cid),
    ]
    assert all(s["link"]["ok"] for s in steps)
    assert lineage["initial_model"]["cid"] == happy.initial_cid

    update_cid = r2.updates[happy.address(1).lower()]
    from_update = _ok(client, f"/models/{update_cid}/lineage")
    assert from_update["kind"] == "update" and from_update["round"] == 2
    assert [(s["round"], s["kind"]) for s in from_update["steps"]] == [(2, "update"), (1, "global"), (0, "global")]
    assert from_update["steps"][0]["base_cid"] == r1.global_cid

    initial = _ok(client, f"/models/{happy.initial_cid}/lineage")
    assert initial["kind"] == "initial" and initial["steps"] == [] and initial["complete"] is True


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/rounds/-1", 422),
        ("/rounds/abc", 422),
        ("/rounds/18446744073709551616", 422),
        ("/rounds/99", 404),
        ("/rounds/99/updates", 404),
        ("/rounds/99/global", 404),
        ("/rounds/2/global", 404),
        ("/rounds/0/updates/0x1234", 422),
        ("/rounds/0/updates/not-an-address", 422),
        ("/rounds/0/updates/0x000000000000000000000000000000000000dEaD", 404),
        ("/rounds/0/updates/0x000000000000000000000000000000000000dEaD/proof", 404),
        ("/rounds/-3/updates/0x000000000000000000000000000000000000dEaD/proof", 422),
        ("/models/not-a-cid/lineage", 422),
        ("/models/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG/lineage", 404),
        ("/access?limit=0", 422),
        ("/access?limit=501", 422),
        ("/access?offset=-1", 422),
        ("/access?accessor=0xzz", 422),
        ("/access?cid=zzz", 422),
        ("/rounds?limit=abc", 422),
        ("/institutions/0x12/history", 422),
        ("/institutions/0x000000000000000000000000000000000000dEaD/history", 404),
        ("/no-such-endpoint", 404),
    ],
)
def test_malformed_or_unknown_parameters_give_json_4xx(client: TestClient, url: str, status: int) -> None:
    response = client.get(url)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message"}
    assert body["message"]


def test_proof_of_update_in_open_round_is_a_conflict(client: TestClient, happy: Scenario) -> None:
    response = client.get(f"/rounds/2/updates/{happy.address(0)}/proof")
    assert response.status_code == 409
    assert "no posted round record" in response.json()["message"]


def test_openapi_documents_routes_with_models(client: TestClient) -> None:
    spec = _ok(client, "/openapi.json")
    paths = spec["paths"]
    for path in (
        "/rounds", "/rounds/{round}", "/rounds/{round}/updates", "/rounds/{round}/updates/{institution}",
        "/rounds/{round}/updates/{institution}/proof", "/rounds/{round}/global", "/institutions",
        "/institutions/{address}/history", "/models/{cid}/lineage", "/access", "/summary",
    ):  # fmt: skip
        get = paths[path]["get"]
        assert "$ref" in str(get["responses"]["200"]), path
        assert get.get("summary") or get.get("description")
    assert "UpdateVerdict" in spec["components"]["schemas"]
    assert "ErrorResponse" in spec["components"]["schemas"]
