"""Password-encrypted files for secrets (master key, user keys, threshold shares).

Format: JSON with a public header (kind and non-secret metadata such as identity and share index)
and the secret payload encrypted with AES-256-GCM under a key derived by scrypt from the password.
The header is the GCM associated data, so editing it (say, changing a share's index) makes
decryption fail. Files are created with mode 0600 and replaced atomically.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from fedledger.fileio import SECRET_MODE, atomic_write_text
from fedledger.sm9.errors import SM9EncodingError, SM9KeyError

FORMAT = "fedledger-sm9-keystore"
_SCRYPT_N = 1 << 15
_SCRYPT_R = 8
_SCRYPT_P = 1


def _password_bytes(password: str | bytes) -> bytes:
    data = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    if not data:
        raise SM9KeyError("an empty password cannot protect a secret key file")
    return data


def _derive(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password)


def _aad(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def write_secret_file(
    path: str | Path, kind: str, public: dict[str, Any], secret: dict[str, Any], password: str | bytes
) -> None:
    """Encrypt ``secret`` and write it with mode 0600 (atomic replace)."""
    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(12)
    header = {
        "format": FORMAT,
        "version": 1,
        "kind": kind,
        "public": public,
        "kdf": {
            "name": "scrypt",
            "salt": base64.b64encode(salt).decode(),
            "n": _SCRYPT_N,
            "r": _SCRYPT_R,
            "p": _SCRYPT_P,
        },
        "cipher": {"name": "AES-256-GCM", "nonce": base64.b64encode(nonce).decode()},
    }
    key = _derive(_password_bytes(password), salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    plaintext = json.dumps(secret, sort_keys=True).encode("utf-8")
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, _aad(header))
    document = dict(header, ciphertext=base64.b64encode(ciphertext).decode())
    atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n", SECRET_MODE)


def read_header(path: str | Path) -> dict[str, Any]:
    """The unencrypted header (kind and public metadata) of a secret file."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SM9EncodingError(
            f"{path}: not a readable fedledger key file ({exc.__class__.__name__})"
        ) from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != 1:
        raise SM9EncodingError(f"{path}: not a fedledger SM9 key file (format/version)")
    for field in ("kind", "public", "kdf", "cipher", "ciphertext"):
        if field not in document:
            raise SM9EncodingError(f"{path}: key file lacks '{field}'")
    return document


def read_secret_file(
    path: str | Path, kind: str, password: str | bytes
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decrypt a secret file of the expected ``kind``; returns (public header fields, secret payload)."""
    document = read_header(path)
    if document["kind"] != kind:
        raise SM9EncodingError(f"{path}: holds a '{document['kind']}', expected a '{kind}'")
    header = {k: v for k, v in document.items() if k != "ciphertext"}
    try:
        kdf, cipher = document["kdf"], document["cipher"]
        if kdf.get("name") != "scrypt" or cipher.get("name") != "AES-256-GCM":
            raise SM9EncodingError(f"{path}: unsupported kdf/cipher")
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if not (2 <= n <= 1 << 20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
            raise SM9EncodingError(f"{path}: scrypt parameters out of the accepted range")
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        ciphertext = base64.b64decode(document["ciphertext"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SM9EncodingError):
            raise
        raise SM9EncodingError(f"{path}: malformed key file fields") from exc
    key = _derive(_password_bytes(password), salt, n, r, p)
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, _aad(header))
    except InvalidTag:
        raise SM9KeyError(f"{path}: wrong password, or the key file was modified") from None
    secret = json.loads(plaintext)
    if not isinstance(secret, dict):
        raise SM9EncodingError(f"{path}: malformed secret payload")
    return document["public"], secret
