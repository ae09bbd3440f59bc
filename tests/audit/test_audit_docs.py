"""The API docs work offline: /docs and /redoc reference no external host, and every asset they
load is served by the app itself (the audit API, and any app built with ``offline_docs_app``)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fedledger.httpdocs import offline_docs_app
from tests.support.audit_scenario import Scenario

REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|(?:url|openapi_url)\s*:\s*["']([^"']+)["']""")
EXTERNAL = re.compile(r"(?:https?:)?//[\w.-]+", re.IGNORECASE)


def _references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(html)]


def _assert_offline(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200, response.text
    html = response.text
    assert not EXTERNAL.findall(html), f"{page} references an external host: {EXTERNAL.findall(html)}"
    references = _references(html)
    assert any(r.endswith(".js") for r in references), references
    for reference in references:
        assert client.get(reference).status_code == 200, reference


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_audit_api_docs_need_no_network(happy: Scenario, page: str) -> None:
    client = happy.client()
    _assert_offline(client, page)
    assert "fedledger audit API" in client.get(page).text


def test_offline_docs_app_is_reusable_for_any_api() -> None:
    app: FastAPI = offline_docs_app(title="another API")

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    client = TestClient(app)
    _assert_offline(client, "/docs")
    assert '"validatorUrl": null' in client.get("/docs").text
    assert "/ping" in client.get("/openapi.json").json()["paths"]


def test_the_external_host_check_can_fail() -> None:
    stock = TestClient(FastAPI(title="stock"))
    assert EXTERNAL.findall(stock.get("/docs").text)  # FastAPI's own page loads from a CDN
