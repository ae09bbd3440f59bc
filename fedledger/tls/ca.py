"""The consortium's certificate authority: one CA that issues the aggregator's server certificate
and every member's client certificate (bound to its on-chain address, see ``binding``).

Made by the KGC at setup (``fedledger kgc setup``) or brought by the consortium (its own CA's
certificate and key); the library API here is what setup, provisioning and rotation all call.
Keys are ECDSA P-256; certificates are X.509 v3 with the usual constraints (the CA may sign only
leaves, leaves may only do TLS in their own direction).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedledger.tls.binding import address_uri, bound_address, sm9_uri
from fedledger.tls.errors import TLSMaterialError
from fedledger.tls.files import load_certificate, load_private_key, write_certificate, write_private_key

CA_DAYS = 3650
LEAF_DAYS = 365
_CLOCK_SKEW = dt.timedelta(minutes=5)  # parties whose clocks lag a little still accept a fresh certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedledger consortium"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "fedledger"),
        ]
    )


def _san_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def check_key_pair(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey, what: str = "the TLS key") -> None:
    """Raise TLSMaterialError unless ``key`` is the private half of ``certificate``'s public key."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    if certificate.public_key().public_bytes(serialization.Encoding.DER, spki) != ours:
        raise TLSMaterialError(f"{what} does not belong to the certificate")


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key (in memory); ``save`` writes both, the key encrypted."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    def save(self, cert_path: str | Path, key_path: str | Path, password: str) -> None:
        write_private_key(key_path, self.private_key, password)
        write_certificate(cert_path, self.certificate)

    def __repr__(self) -> str:
        return f"IssuedCertificate(subject={self.certificate.subject.rfc4514_string()!r})"


class ConsortiumCA:
    """The CA's certificate and key; the key stays in memory and on disk only encrypted."""

    def __init__(self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey) -> None:
        check_key_pair(certificate, private_key, "the CA key")
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise TLSMaterialError("the given CA certificate is not a CA (basicConstraints CA:TRUE is missing)")
        self.certificate = certificate
        self._key = private_key

    def __repr__(self) -> str:
        return f"ConsortiumCA(subject={self.certificate.subject.rfc4514_string()!r})"

    @classmethod
    def generate(cls, name: str = "fedledger consortium CA", days: int = CA_DAYS) -> ConsortiumCA:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: str | Path, key_path: str | Path, password: str | None) -> ConsortiumCA:
        return cls(load_certificate(cert_path), load_private_key(key_path, password))

    def save(self, cert_path: str | Path, key_path: str | Path, password: str) -> None:
        IssuedCertificate(self.certificate, self._key).save(cert_path, key_path, password)

    def _issue(
        self, common_name: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier, days: int
    ) -> IssuedCertificate:
        if not sans:
            raise TLSMaterialError("a certificate needs at least one subject alternative name")
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        not_after = min(now + dt.timedelta(days=days), self.certificate.not_valid_after_utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCertificate(cert, key)

    def issue_server(
        self, hosts: Sequence[str], name: str = "fedledger aggregator", days: int = LEAF_DAYS
    ) -> IssuedCertificate:
        """The aggregator's server certificate, valid for each of ``hosts`` (DNS names or IPs)."""
        return self._issue(name, [_san_entry(h) for h in hosts], ExtendedKeyUsageOID.SERVER_AUTH, days)

    def issue_member(
        self, chain_id: int, address: str, sm9_identity: str, name: str = "", days: int = LEAF_DAYS
    ) -> IssuedCertificate:
        """A member's client certificate, bound to its address on ``chain_id`` and its SM9 identity."""
        sans: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(address_uri(chain_id, address)),
            x509.UniformResourceIdentifier(sm9_uri(sm9_identity)),
        ]
        return self._issue(name or sm9_identity, sans, ExtendedKeyUsageOID.CLIENT_AUTH, days)


def check_issued(ca_certificate: x509.Certificate, certificate: x509.Certificate) -> None:
    """Raise TLSMaterialError unless ``certificate`` was signed by the CA and is valid now."""
    try:
        certificate.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise TLSMaterialError("the certificate was not issued by the consortium CA") from None
    now = dt.datetime.now(dt.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise TLSMaterialError(
            f"the certificate is not valid now (valid until {certificate.not_valid_after_utc:%Y-%m-%d})"
        )


def check_member_certificate(
    ca_certificate: x509.Certificate, certificate: x509.Certificate, chain_id: int, address: str
) -> None:
    """A node's certificate must come from the consortium CA and be bound to the node's own address."""
    check_issued(ca_certificate, certificate)
    if bound_address(certificate, chain_id) != address.lower():
        raise TLSMaterialError(f"the TLS certificate is bound to another address than {address}")
