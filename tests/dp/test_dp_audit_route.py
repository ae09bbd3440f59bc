"""GET /privacy on the real audit API: the on-chain budget, and every posted round accounted from
its manifest's rule. The scenario's rounds carry no DP, so under a budget each is flagged; a round
whose manifest cannot be read is named and the account is not within budget."""

from __future__ import annotations

from pathlib import Path

from fedledger.chain.client import LedgerClient
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from tests.support.audit_scenario import RoundPlan, play_rounds


def test_privacy_route_shows_the_budget_and_each_posted_round(
    budget_ledger: tuple[Deployment, LedgerClient], dev_accounts: DevRoles, tmp_path: Path
) -> None:
    deployment, client = budget_ledger
    scenario = play_rounds(deployment, client, dev_accounts, tmp_path, [RoundPlan(submitters=[0, 1, 2])])
    api = scenario.client()
    body = api.get("/privacy").json()
    assert body["budget"]["epsilon"] == 8.0 and body["budget"]["delta"] == 1e-5
    assert body["budget"]["set_at"]["block"] == deployment.deploy_block
    assert [(r["round"], r["dp"]) for r in body["rounds"]] == [(0, None)]
    assert body["rounds"][0]["detail"] == "no DP, although the ledger's privacy budget requires it"
    assert body["spent_epsilon"] == 0.0 and body["remaining_epsilon"] == 8.0 and not body["within_budget"]
    assert "/privacy" in api.get("/openapi.json").json()["paths"]

    (tmp_path / "empty-store").mkdir()
    unread = scenario.client(tmp_path / "empty-store").get("/privacy").json()
    assert "manifest" in unread["rounds"][0]["detail"] and "missing" in unread["rounds"][0]["detail"]
    assert not unread["within_budget"]
