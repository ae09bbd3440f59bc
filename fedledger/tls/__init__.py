"""Mutual TLS between the parties: the consortium CA, member certificates bound to on-chain
addresses, and the TLS settings nodes (httpx) and the aggregator (uvicorn) use."""

from fedledger.tls.binding import address_uri, bound_address, bound_sm9_identity
from fedledger.tls.ca import (
    ConsortiumCA,
    IssuedCertificate,
    check_issued,
    check_key_pair,
    check_member_certificate,
)
from fedledger.tls.errors import TLSMaterialError
from fedledger.tls.files import load_certificate, load_private_key, write_certificate, write_private_key
from fedledger.tls.party import PartyTLS, TLSFiles

__all__ = [
    "ConsortiumCA",
    "IssuedCertificate",
    "PartyTLS",
    "TLSFiles",
    "TLSMaterialError",
    "address_uri",
    "bound_address",
    "bound_sm9_identity",
    "check_issued",
    "check_key_pair",
    "check_member_certificate",
    "load_certificate",
    "load_private_key",
    "write_certificate",
    "write_private_key",
]
