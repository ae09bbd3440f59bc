"""A party's TLS files as one unit: the consortium CA certificate, its own certificate and key.

``open`` reads and checks them together (the certificate comes from the CA, the key is the
certificate's); ``save`` writes them to the party's own folder, the key re-encrypted under the
party's password. ``node init`` and ``aggregator init`` install what the KGC issued this way, and a
provisioning kit can carry the same three files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fedledger.tls.ca import check_issued, check_key_pair
from fedledger.tls.files import load_certificate, load_private_key, write_certificate, write_private_key


@dataclass(frozen=True)
class TLSFiles:
    """Where a party's TLS material lives."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def open(self, password: str | None) -> PartyTLS:
        """Load and check the three files; TLSMaterialError names what is wrong."""
        ca = load_certificate(self.ca_file)
        certificate = load_certificate(self.cert_file)
        check_issued(ca, certificate)
        key = load_private_key(self.key_file, password)
        check_key_pair(certificate, key)
        return PartyTLS(ca, certificate, key)


@dataclass(frozen=True)
class PartyTLS:
    """A party's opened TLS material (the key in memory only)."""

    ca: x509.Certificate
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def save(self, to: TLSFiles, password: str) -> None:
        to.key_file.parent.mkdir(parents=True, exist_ok=True)
        write_private_key(to.key_file, self.key, password)
        write_certificate(to.cert_file, self.certificate)
        write_certificate(to.ca_file, self.ca)

    def __repr__(self) -> str:
        return f"PartyTLS(subject={self.certificate.subject.rfc4514_string()!r})"
