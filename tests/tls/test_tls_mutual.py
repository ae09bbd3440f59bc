"""The aggregator's API over mutual TLS: who gets through the handshake, and whose payloads count."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from fedledger.protocol.session_auth import sign_payload
from fedledger.tls import ConsortiumCA
from node.http_client import aggregator_client
from tests.tls.conftest import Material

COMMIT = "/rounds/0/sessions/s1/commitments"


def _signed(account: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {"payload": payload, "auth": sign_payload(bytes(account.key), payload)}


def test_a_member_with_its_certificate_gets_through_and_its_signed_post_reaches_the_session(
    material: Material, tls_server: str
) -> None:
    with aggregator_client(material.client(material.member_files[0]), 10) as http:
        assert http.get(f"{tls_server}/health").json()["ok"] is True
        # the binding accepts member 0's own payload; the board then says there is no session yet
        response = http.post(f"{tls_server}{COMMIT}", json=_signed(material.members[0], {"index": 1}))
    assert response.status_code == 404 and "no signing session" in response.text


def test_a_member_certificate_with_another_members_payload_signature_is_403(
    material: Material, tls_server: str
) -> None:
    with aggregator_client(material.client(material.member_files[0]), 10) as http:
        response = http.post(f"{tls_server}{COMMIT}", json=_signed(material.members[1], {"index": 2}))
    assert response.status_code == 403
    assert material.members[1].address in response.text and material.members[0].address.lower() in response.text


def _probe(context: ssl.SSLContext, url: str, tls_version: ssl.TLSVersion) -> str:
    """Connect with ``context`` (at most ``tls_version``) and ask for /health: how far it got."""
    host, port = url.removeprefix("https://").split(":")
    context.maximum_version = tls_version
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        try:
            tls = context.wrap_socket(raw, server_hostname=host)
        except (ssl.SSLError, OSError):
            return "handshake refused"
        with tls:
            try:
                tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = tls.recv(4096)
            except (ssl.SSLError, OSError):
                answer = b""
    # TLS 1.3 lets the client finish first; the server then checks the certificate and hangs up
    return f"answered {answer[:12]!r}" if answer else "closed without an answer"


def _refused_everywhere(context: ssl.SSLContext, url: str) -> None:
    assert _probe(context, url, ssl.TLSVersion.TLSv1_2) == "handshake refused"
    assert _probe(context, url, ssl.TLSVersion.TLSv1_3) == "closed without an answer"
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    with aggregator_client(context, 10) as http, pytest.raises(httpx.TransportError):
        http.get(f"{url}/health")


def test_the_probe_sees_a_member_get_an_answer(material: Material, tls_server: str) -> None:
    """The probe below can tell refusal from success: a member's own certificate gets an answer."""
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        assert _probe(material.client(material.member_files[0]), tls_server, version) == "answered b'HTTP/1.1 200'"


def test_a_client_without_a_certificate_is_refused_in_the_handshake(material: Material, tls_server: str) -> None:
    trust_only = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    trust_only.load_verify_locations(material.member_files[0].ca_file)
    _refused_everywhere(trust_only, tls_server)


def test_a_certificate_from_another_ca_is_refused_in_the_handshake(material: Material, tls_server: str) -> None:
    _refused_everywhere(material.client(material.stranger_files), tls_server)


def test_plain_http_to_the_tls_port_gets_no_answer(material: Material, tls_server: str) -> None:
    plain = tls_server.replace("https://", "http://")
    with aggregator_client(None, 10) as http, pytest.raises(httpx.TransportError):
        http.get(f"{plain}/health")


def test_a_node_refuses_an_aggregator_whose_certificate_is_not_from_the_consortium_ca(
    material: Material, tls_server: str
) -> None:
    """The node trusts the consortium CA only: a server certificate from any other CA fails."""
    other = ConsortiumCA.generate("someone else")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=other.certificate.public_bytes(Encoding.PEM).decode("ascii"))
    with aggregator_client(context, 10) as http, pytest.raises(httpx.ConnectError) as refused:
        http.get(f"{tls_server}/health")
    assert "certificate verify failed" in str(refused.value)


def test_the_binding_fails_closed_when_a_request_carries_no_client_certificate(material: Material) -> None:
    """An app that requires the binding but is served without TLS (a misconfiguration) refuses posts."""
    import uvicorn

    from aggregator.client_binding import ClientBinding
    from aggregator.http_api import SessionBoard, create_app
    from aggregator.http_server import serve_in_background
    from fedledger.netutil import free_port
    from tests.tls.conftest import CHAIN_ID, wait_started

    port = free_port()
    app = create_app(SessionBoard(), ClientBinding(CHAIN_ID))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = serve_in_background(server)
    try:
        wait_started(server)
        with aggregator_client(None, 10) as http:
            response = http.post(f"http://127.0.0.1:{port}{COMMIT}", json=_signed(material.members[0], {"index": 1}))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert response.status_code == 403 and "no client certificate" in response.text
