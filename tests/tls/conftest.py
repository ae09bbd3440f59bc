"""Real TLS material (a consortium CA, a stranger CA, server and member certificates) and a real
uvicorn serving the aggregator's API on loopback, with mutual TLS as `aggregator run` serves it."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from eth_account.signers.local import LocalAccount

from aggregator.config import AggregatorConfig
from aggregator.http_api import SessionBoard
from aggregator.http_server import api_server, serve_in_background
from fedledger.chain.devaccounts import DevRoles
from fedledger.netutil import free_port
from fedledger.tls import ConsortiumCA
from fedledger.tls.contexts import client_context
from fedledger.tls.party import PartyTLS, TLSFiles

CHAIN_ID = 31337
PASSWORD = "tls test password"


@dataclass(frozen=True)
class Material:
    root: Path
    ca: ConsortiumCA
    members: list[LocalAccount]
    member_files: list[TLSFiles]  # member i's certificate from the consortium CA
    stranger_files: TLSFiles  # member 0's address, certificate from another CA
    aggregator: AggregatorConfig

    def client(self, files: TLSFiles) -> ssl.SSLContext:
        return client_context(files, PASSWORD)


def _install(ca: ConsortiumCA, issued, folder: Path, trust: ConsortiumCA | None = None) -> TLSFiles:  # type: ignore[no-untyped-def]
    files = TLSFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    PartyTLS((trust or ca).certificate, issued.certificate, issued.private_key).save(files, PASSWORD)
    return files


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory, dev_accounts: DevRoles) -> Material:
    root = tmp_path_factory.mktemp("tls")
    ca = ConsortiumCA.generate()
    members = list(dev_accounts.institutions[:2])
    member_files = [
        _install(ca, ca.issue_member(CHAIN_ID, m.address, f"inst:hospital-{i + 1}"), root / f"member-{i}")
        for i, m in enumerate(members)
    ]
    stranger = ConsortiumCA.generate("another CA")
    # signed by the stranger CA, but trusting the consortium CA, so only the client certificate is wrong
    stranger_files = _install(
        stranger, stranger.issue_member(CHAIN_ID, members[0].address, "inst:hospital-1"), root / "stranger", ca
    )
    agg = root / "aggregator"
    _install(ca, ca.issue_server(["127.0.0.1", "localhost"]), agg / "keys")
    config = AggregatorConfig(
        rpc_url="http://127.0.0.1:9",
        contract="0x" + "ab" * 20,
        store=f"local:{root / 'store'}",
        model={},
        port=free_port(),
        tls_ca_file="keys/ca.pem",
        tls_cert_file="keys/cert.pem",
        tls_key_file="keys/key.pem",
    )
    return Material(root, ca, members, member_files, stranger_files, config)


def wait_started(server: uvicorn.Server) -> None:
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def tls_server(material: Material) -> Iterator[str]:
    """The aggregator's API over mutual TLS on loopback; yields its https base URL."""
    server = api_server(SessionBoard(), material.aggregator, material.root / "aggregator", PASSWORD, CHAIN_ID, False)
    thread = serve_in_background(server)
    wait_started(server)
    yield f"https://127.0.0.1:{material.aggregator.port}"
    server.should_exit = True
    thread.join(timeout=10)
