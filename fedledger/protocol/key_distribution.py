"""Key distribution: every SM9 key and threshold share the KGC issues is encrypted for its recipient alone.

Under one shared password, whoever collected k share files could sign as the consortium. So the
KGC's master password protects the master key and nothing else: each issued file is encrypted
under a fresh random transport password (256 bits), which reaches the recipient by another
channel than the file (printed once, or a 0600 file beside it). The recipient opens the file with
it once, at ``node init``, and keeps the secret re-encrypted under its own password.

The same calls serve ``fedledger kgc`` and provisioning code: ``issue_sign_key``,
``issue_key_shares`` and, for any other kind of secret, ``issue_secret`` write the encrypted files
and return the passwords (never logged, hidden in ``repr``); ``save_transport_password`` and
``read_transport_password`` move a password through a file.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fedledger.errors import FedLedgerError
from fedledger.fileio import SECRET_MODE, atomic_write_text

if TYPE_CHECKING:  # the SM9 arithmetic loads when a key is issued, not when a CLI imports this module
    from fedledger.sm9 import SignMasterKey, ThresholdPublic

TRANSPORT_PASSWORD_SUFFIX = ".password"  # noqa: S105 - a file name suffix, not a password
TRANSPORT_PASSWORD_BYTES = 32


class KeyDistributionError(FedLedgerError):
    """An issued file or its transport password is missing or unreadable (never shows a secret)."""


@dataclass(frozen=True)
class IssuedSecret:
    """One encrypted file the KGC issued, who it is for, and the password that alone opens it."""

    path: Path
    recipient: str
    password: str = field(repr=False)

    def save_password(self, path: Path | None = None) -> Path:
        """Write the transport password to ``path`` (default: beside the file), mode 0600."""
        return save_transport_password(path or transport_password_path(self.path), self.password)


def new_transport_password() -> str:
    """A fresh random password for one recipient's file (URL-safe text, 256 bits)."""
    return secrets.token_urlsafe(TRANSPORT_PASSWORD_BYTES)


def transport_password_path(secret_file: Path) -> Path:
    """Where the KGC writes an issued file's transport password by default: ``<file>.password``."""
    return secret_file.with_name(secret_file.name + TRANSPORT_PASSWORD_SUFFIX)


def save_transport_password(path: Path, password: str) -> Path:
    return atomic_write_text(path, password + "\n", SECRET_MODE)


def read_transport_password(path: Path) -> str:
    """The first line of a transport password file; a missing or empty file names itself only."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise KeyDistributionError(f"no transport password file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyDistributionError(f"cannot read transport password file {path} ({type(exc).__name__})") from None
    if not lines or not lines[0]:
        raise KeyDistributionError(f"transport password file {path} is empty")
    return lines[0]


def _passwords(count: int, given: Sequence[str] | None) -> list[str]:
    chosen = list(given) if given is not None else [new_transport_password() for _ in range(count)]
    if len(chosen) != count:
        raise KeyDistributionError(f"{len(chosen)} transport passwords for {count} recipients")
    if len(set(chosen)) != count or not all(chosen):
        raise KeyDistributionError("every recipient needs its own non-empty transport password")
    return chosen


def issue_secret(
    save: Callable[[Path, str], object], out: Path, recipient: str, password: str | None = None
) -> IssuedSecret:
    """Any issued secret (an SM9 key, a TLS key, ...): ``save(out, password)`` writes it encrypted under
    a fresh transport password (or ``password``, the recipient's own one chosen by the caller)."""
    (chosen,) = _passwords(1, None if password is None else [password])
    save(out, chosen)
    return IssuedSecret(out, recipient, chosen)


def issue_sign_key(master: SignMasterKey, identity: str, out: Path, password: str | None = None) -> IssuedSecret:
    """Extract ``identity``'s SM9 signing key into ``out``, for ``identity`` alone (see ``issue_secret``)."""
    from fedledger.sm9 import extract_sign_key

    return issue_secret(extract_sign_key(master, identity).save, out, identity, password)


def issue_key_shares(
    master: SignMasterKey,
    identity: str,
    k: int,
    paths: Sequence[Path],
    passwords: Sequence[str] | None = None,
) -> tuple[list[IssuedSecret], ThresholdPublic]:
    """Split ``identity``'s key k-of-len(paths); share j goes to ``paths[j-1]`` under its own password.

    ``passwords`` (one per share, all different) lets a caller reuse each recipient's transport
    password; by default each share gets a fresh one.
    """
    from fedledger.sm9 import split_key

    chosen = _passwords(len(paths), passwords)
    shares, public = split_key(master, identity, k, len(paths))
    issued = []
    for share, path, password in zip(shares, paths, chosen, strict=True):
        share.save(path, password)
        issued.append(IssuedSecret(path, f"share {share.index} of {identity}", password))
    return issued, public
