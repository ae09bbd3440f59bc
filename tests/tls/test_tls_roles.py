"""`aggregator run` and `node run` as processes: mutual TLS by default, plain HTTP only when asked."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from demo.consortium_setup import ConsortiumLayout, setup_consortium
from demo.in_process import password_of
from fedledger.chain.localchain import LocalChain
from fedledger.cli import app
from fedledger.netutil import free_port
from fedledger.tls import TLSMaterialError, load_private_key, write_private_key
from fedledger.tls.contexts import PLAIN_HTTP_WARNING
from node.config import load_config, save_config
from node.context import build_context
from node.http_client import aggregator_client

runner = CliRunner()


@pytest.fixture(scope="module")
def layout(anvil_chain: LocalChain, tmp_path_factory: pytest.TempPathFactory) -> ConsortiumLayout:
    return setup_consortium(tmp_path_factory.mktemp("roles"), anvil_chain.rpc_url, aggregator_port=free_port())


def _start_aggregator(layout: ConsortiumLayout, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    agg = layout.aggregator_dir
    command = [sys.executable, "-m", "fedledger.cli", "aggregator", "run", "-c", str(agg), "--rounds", "1",
               "--password-file", str(agg / "password"), *flags]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


@pytest.fixture
def stop_later() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
        proc.wait(timeout=20)


def _wait_health(http: httpx.Client, url: str, proc: subprocess.Popen[bytes]) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the aggregator exited"
        try:
            return http.get(f"{url}/health").json()  # type: ignore[no-any-return]
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"no answer from {url}")


def _node(layout: ConsortiumLayout, insecure_http: bool):  # type: ignore[no-untyped-def]
    home = layout.node_dirs[0]
    config, base = load_config(home)
    return build_context(config, base, password_of(home), insecure_http=insecure_http)


def test_aggregator_run_serves_mutual_tls_by_default(
    layout: ConsortiumLayout, tmp_path: Path, stop_later: list[subprocess.Popen[bytes]]
) -> None:
    proc = _start_aggregator(layout, tmp_path / "agg.log")
    stop_later.append(proc)
    node = _node(layout, insecure_http=False)
    assert node.aggregator_url.startswith("https://")
    with aggregator_client(node.aggregator_tls, 10) as http:
        assert _wait_health(http, node.aggregator_url, proc)["ok"] is True
    with aggregator_client(None, 10) as plain, pytest.raises(httpx.TransportError):
        plain.get(node.aggregator_url.replace("https://", "http://") + "/health")
    assert PLAIN_HTTP_WARNING not in (tmp_path / "agg.log").read_text()


def test_insecure_http_serves_plain_http_and_says_so(
    layout: ConsortiumLayout, tmp_path: Path, stop_later: list[subprocess.Popen[bytes]]
) -> None:
    proc = _start_aggregator(layout, tmp_path / "agg.log", "--insecure-http")
    stop_later.append(proc)
    node = _node(layout, insecure_http=True)
    assert node.aggregator_url.startswith("http://") and node.aggregator_tls is None
    with aggregator_client(None, 10) as http:
        assert _wait_health(http, node.aggregator_url, proc)["ok"] is True
    assert PLAIN_HTTP_WARNING in (tmp_path / "agg.log").read_text()
    with (
        aggregator_client(_node(layout, insecure_http=False).aggregator_tls, 10) as tls,
        pytest.raises(httpx.TransportError),
    ):
        tls.get(node.aggregator_url.replace("http://", "https://") + "/health")


def test_node_run_refuses_a_plain_http_aggregator_url_unless_told(layout: ConsortiumLayout) -> None:
    home = layout.node_dirs[0]
    config, _ = load_config(home)
    plain = config.model_copy(update={"aggregator_url": config.aggregator_url.replace("https://", "http://")})
    path = save_config(plain, home / "node-plain.toml")
    args = ["node", "run", "-c", str(path), "--password-file", str(home / "password"), "--rounds", "1"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--insecure-http" in refused.stderr and "Traceback" not in refused.output
    assert refused.stderr.count("\n") == 1
    warned = runner.invoke(app, ["node", "sign", *args[2:-2], "--timeout", "0.1", "--insecure-http"])
    assert PLAIN_HTTP_WARNING in warned.stderr


def test_missing_tls_files_are_one_line_naming_the_file_and_the_way_out(
    layout: ConsortiumLayout, tmp_path: Path
) -> None:
    agg = layout.aggregator_dir
    moved = tmp_path / "tls-key.pem"
    key = agg / "keys" / "tls-key.pem"
    key.rename(moved)
    try:
        result = runner.invoke(app, ["aggregator", "run", "-c", str(agg), "--password-file", str(agg / "password")])
    finally:
        moved.rename(key)
    assert result.exit_code == 2 and "tls-key.pem" in result.stderr and "--insecure-http" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_a_node_holding_another_members_certificate_is_stopped_at_start(
    layout: ConsortiumLayout, tmp_path: Path
) -> None:
    mine, theirs = layout.node_dirs[0] / "keys", layout.node_dirs[1] / "keys"
    saved = {name: (mine / name).read_bytes() for name in ("tls-cert.pem", "tls-key.pem")}
    # the other member's pair, its key re-encrypted under this node's password: a valid TLS pair
    key = load_private_key(theirs / "tls-key.pem", password_of(layout.node_dirs[1]))
    write_private_key(mine / "tls-key.pem", key, password_of(layout.node_dirs[0]))
    (mine / "tls-cert.pem").write_bytes((theirs / "tls-cert.pem").read_bytes())
    try:
        with pytest.raises(TLSMaterialError, match="bound to another address"):
            _node(layout, insecure_http=False)
        _node(layout, insecure_http=True)  # plain HTTP does not use the certificate at all
    finally:
        for name, data in saved.items():
            (mine / name).write_bytes(data)
