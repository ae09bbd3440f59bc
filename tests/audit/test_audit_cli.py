"""``fedledger audit summary`` and ``fedledger audit serve`` end to end, bad CLI input, and an
unreachable chain (503 from the API, exit 3 from the CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fedledger.audit.api import create_app
from fedledger.audit.setup import open_audit_service
from fedledger.chain.localchain import free_port
from fedledger.cli import app
from tests.support.audit_scenario import Scenario

runner = CliRunner()


def _deployment_file(scenario: Scenario, directory: Path, rpc_url: str | None = None) -> Path:
    deployment = scenario.deployment
    if rpc_url is not None:
        from fedledger.chain.deploy import Deployment

        deployment = Deployment.from_json({**deployment.to_json(), "rpc_url": rpc_url})
    return deployment.save(directory / "deployment.json")


def _args(scenario: Scenario, deployment: Path) -> list[str]:
    return [
        "--deployment", str(deployment),
        "--store", f"local:{scenario.store_dir}",
        "--master-public-key", str(scenario.master_public_key_path),
    ]  # fmt: skip


def test_summary_json_all_verified(happy: Scenario, tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "summary", *_args(happy, _deployment_file(happy, tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["all_verified"] is True
    assert summary["updates"]["verified"] == 11 and summary["global_models"]["verified"] == 2


def test_summary_text_lists_failures_and_exits_1(tampered: Scenario, tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "summary", *_args(tampered, _deployment_file(tampered, tmp_path))])
    assert result.exit_code == 1, result.output
    assert "6 failed check(s)" in result.stdout
    assert "threshold_signature" in result.stdout


def test_summary_with_rpc_url_and_contract(happy: Scenario) -> None:
    result = runner.invoke(
        app,
        [
            "audit", "summary", "--json",
            "--rpc-url", happy.deployment.rpc_url,
            "--contract", happy.deployment.address,
            "--from-block", str(happy.deployment.deploy_block),
            "--store", f"local:{happy.store_dir}",
            "--master-public-key", str(happy.master_public_key_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rounds"] == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--master-public-key", "/nonexistent/mpk.pem", "--deployment", "{deployment}"], "no SM9 master public key"),
        (["--master-public-key", "{deployment}", "--deployment", "{deployment}"], "not an SM9 sign master public key"),
        (["--master-public-key", "{mpk}", "--deployment", "/nonexistent/deployment.json"], "no deployment file"),
        (["--master-public-key", "{mpk}", "--rpc-url", "http://127.0.0.1:1", "--contract", "0x12"], "not a 0x"),
        (["--master-public-key", "{mpk}", "--deployment", "{deployment}", "--confirmations", "-1"], "confirmations"),
    ],
)
def test_bad_input_exits_2_with_a_message(happy: Scenario, tmp_path: Path, extra: list[str], message: str) -> None:
    deployment = _deployment_file(happy, tmp_path)
    args = [a.format(deployment=deployment, mpk=happy.master_public_key_path) for a in extra]
    result = runner.invoke(app, ["audit", "summary", "--store", f"local:{tmp_path / 's'}", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_unreachable_chain_gives_503_and_exit_3(happy: Scenario, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    deployment = _deployment_file(happy, tmp_path, rpc_url=dead)
    service = open_audit_service(
        store=f"local:{happy.store_dir}", master_public_key=happy.master_public_key_path, deployment=deployment
    )
    client = TestClient(create_app(service))
    for url in ("/summary", "/rounds", "/rounds/0/global", "/health"):
        response = client.get(url)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["error"] == "chain_unavailable"
        assert "127.0.0.1" in body["message"]
    result = runner.invoke(app, ["audit", "summary", *_args(happy, deployment)])
    assert result.exit_code == 3, result.output
    assert "cannot read" in result.output


def test_serve_answers_summary_over_http(happy: Scenario, tmp_path: Path) -> None:
    port = free_port()
    deployment = _deployment_file(happy, tmp_path)
    command = [
        sys.executable, "-m", "fedledger.cli", "audit", "serve", *_args(happy, deployment),
        "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "audit server did not come up within 60 s"
            time.sleep(0.2)
        summary = httpx.get(f"{base}/summary", timeout=60).json()
        assert summary["all_verified"] is True and summary["rounds"] == 3
        assert httpx.get(f"{base}/rounds/-1", timeout=10).status_code == 422
        assert "fedledger audit API" in httpx.get(f"{base}/docs", timeout=10).text
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
