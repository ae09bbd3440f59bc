"""The TLS part of a role's config file: where the party's CA certificate, certificate and key are.

Node and aggregator configs both extend :class:`TLSSettings`, so the three fields have one name and
one default in every ``*.toml``; paths are relative to the config file's folder.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from fedledger.tls.party import TLSFiles

TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE = "keys/tls-ca.pem", "keys/tls-cert.pem", "keys/tls-key.pem"


class TLSSettings(BaseModel):
    """The party's mutual-TLS material (used unless a command runs with --insecure-http)."""

    tls_ca_file: str = Field(TLS_CA_FILE, description="the consortium CA certificate (PEM): the only CA trusted")
    tls_cert_file: str = Field(TLS_CERT_FILE, description="this party's certificate (PEM), issued by that CA")
    tls_key_file: str = Field(TLS_KEY_FILE, description="its private key, encrypted under the party's password")

    def tls_files(self, base: Path) -> TLSFiles:
        return TLSFiles(base / self.tls_ca_file, base / self.tls_cert_file, base / self.tls_key_file)
