"""Reading and writing TLS certificates (PEM, public) and their private keys (encrypted PEM, 0600).

Private keys are PKCS#8 PEM encrypted under the owner's password, the form OpenSSL, Python's
``ssl`` (hence uvicorn's ``ssl_keyfile_password`` and httpx's SSL context) read directly, so no
decrypted key ever touches the disk. Errors name the file, never the password or the key.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedledger.fileio import PUBLIC_MODE, SECRET_MODE, atomic_write_bytes
from fedledger.tls.errors import TLSMaterialError


def write_certificate(path: str | Path, certificate: x509.Certificate) -> Path:
    return atomic_write_bytes(path, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)


def write_private_key(path: str | Path, key: ec.EllipticCurvePrivateKey, password: str) -> Path:
    """Write ``key`` encrypted under ``password`` (PKCS#8 PEM), mode 0600, atomically."""
    if not password:
        raise TLSMaterialError("an empty password cannot protect a TLS private key")
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode("utf-8")),
    )
    return atomic_write_bytes(path, data, SECRET_MODE)


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise TLSMaterialError(f"no {what} at {path}") from None
    except OSError as exc:
        raise TLSMaterialError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_certificate(path: str | Path) -> x509.Certificate:
    data = _read(path, "TLS certificate")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TLSMaterialError(f"{path} is not a PEM certificate") from None


def load_private_key(path: str | Path, password: str | None) -> ec.EllipticCurvePrivateKey:
    """Open an (encrypted or, for a CA brought from elsewhere, plain) PEM EC private key."""
    data = _read(path, "TLS private key")
    secret = password.encode("utf-8") if password else None
    try:
        key = serialization.load_pem_private_key(data, None if b"ENCRYPTED" not in data else secret)
    except (ValueError, TypeError):
        raise TLSMaterialError(f"cannot open TLS private key {path}: wrong password or not a PEM key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TLSMaterialError(f"{path} is not an EC private key (the consortium uses ECDSA P-256)")
    return key
