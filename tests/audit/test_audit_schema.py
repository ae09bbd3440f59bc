"""The audit API against its own OpenAPI schema: schemathesis fuzzes every route in-process (ASGI,
no network), bounded to a few seconds; 405s say what is allowed; CID parameters carry the CID
pattern; blank or malformed CIDs, in a request or on the ledger itself, never give a 500."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    not_a_server_error,
    positive_data_acceptance,
    status_code_conformance,
    unsupported_method,
)

from fedledger.audit.api import create_app
from fedledger.audit.params import CID_PATTERN
from tests.support.audit_scenario import RoundPlan, Scenario

BLANK_CIDS = {2: " ", 3: "not-a-cid"}  # what a member can put on the ledger: the contract checks only length


@pytest.fixture(scope="module")
def odd_cids(play_on_fresh_ledger: Callable[[str, list[RoundPlan]], Scenario]) -> Scenario:
    """One posted round whose ledger holds a blank and a malformed update CID (left out), one open round."""
    plans = [
        RoundPlan(submitters=[0, 1, 2, 3], cids=BLANK_CIDS, excluded=[2, 3]),
        RoundPlan(submitters=[2], cids={2: " "}, post=False, accesses=[1]),
    ]
    return play_on_fresh_ledger("audit-odd", plans)


def test_405_carries_the_allow_header(happy: Scenario) -> None:
    response = happy.client().post("/summary")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json()["error"] == "http_error"


def test_cid_parameters_carry_the_cid_pattern(happy: Scenario) -> None:
    spec = happy.client().get("/openapi.json").json()
    lineage = spec["paths"]["/models/{cid}/lineage"]["get"]["parameters"]
    access = spec["paths"]["/access"]["get"]["parameters"]
    patterns = [str(p["schema"]) for p in lineage + access if p["name"] == "cid"]
    assert len(patterns) == 2 and all(CID_PATTERN.replace("\\", "\\\\") in p for p in patterns), patterns
    for cid in (happy.initial_cid, *(r.global_cid for r in happy.rounds if r.global_cid)):
        assert re.match(CID_PATTERN, cid)
    for text in (" ", "", "not-a-cid", "Qm" + "0" * 44):
        assert not re.match(CID_PATTERN, text)


@pytest.mark.parametrize("url", ["/models/%20/lineage", "/models/%20%20/lineage", "/access?cid=%20", "/access?cid="])
def test_a_blank_cid_in_a_request_is_a_4xx_with_a_reason(happy: Scenario, url: str) -> None:
    response = happy.client().get(url)
    assert response.status_code == 422, response.text
    assert response.json()["message"]


def test_blank_and_malformed_cids_on_the_ledger_are_that_entrys_verdict(odd_cids: Scenario) -> None:
    client = odd_cids.client()
    for url in (
        "/summary", "/rounds", "/rounds/0", "/rounds/1", "/rounds/0/updates", "/rounds/0/global", "/access",
        f"/rounds/0/updates/{odd_cids.address(2)}", f"/rounds/1/updates/{odd_cids.address(2)}",
        f"/institutions/{odd_cids.address(2)}/history", f"/models/{odd_cids.rounds[0].global_cid}/lineage",
    ):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
    summary = client.get("/summary").json()
    failed = {(f["round"], f["institution"], f["check"]) for f in summary["failures"]}
    assert failed == {
        (0, odd_cids.address(2), "content"), (0, odd_cids.address(2), "included"),
        (0, odd_cids.address(3), "content"), (0, odd_cids.address(3), "included"),
        (1, odd_cids.address(2), "content"),
    }  # fmt: skip
    details = {(f["round"], f["institution"]): f["detail"] for f in summary["failures"] if f["check"] == "content"}
    assert "blank" in details[(0, odd_cids.address(2))]
    assert "not a valid CID" in details[(0, odd_cids.address(3))]
    assert summary["global_models"] == {"total": 1, "verified": 1, "failed": 0}


def test_schemathesis_finds_nothing(odd_cids: Scenario) -> None:
    """Every route fuzzed from the schema (in-process ASGI, a few examples each): no 500, only
    documented status codes, 405s with ``Allow``. Driven through hypothesis directly: schemathesis'
    pytest plugin does not run under this pytest."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(odd_cids.service()))
    checks = [not_a_server_error, status_code_conformance, unsupported_method, positive_data_acceptance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 15  # 12 + /metrics (consortium) + /privacy + /privacy/local

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=checks)

        fuzz()
