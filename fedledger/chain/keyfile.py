"""Ethereum account keys at rest: standard encrypted keystore files (the format wallets read), 0600.

Nodes and the aggregator open their key at every start, so scrypt runs with n = 2**15 (about
0.3 s here) instead of eth-account's 2**18 default (about 2 s); the file is owner-readable only.
"""

from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedledger.errors import FedLedgerError
from fedledger.fileio import SECRET_MODE, atomic_write_text


class KeyFileError(FedLedgerError):
    """A key file is missing, unreadable, or the password does not open it (never shows the key)."""


def save_eth_key(path: str | Path, account: LocalAccount, password: str) -> None:
    """Write ``account``'s key encrypted under ``password``, atomically, readable by the owner only."""
    path = Path(path)
    keystore = Account.encrypt(account.key, password, kdf="scrypt", iterations=2**15)
    atomic_write_text(path, json.dumps(keystore), SECRET_MODE)


def load_eth_key(path: str | Path, password: str) -> LocalAccount:
    """Open a keystore file; wrong password or corrupt file gives KeyFileError naming the file."""
    path = Path(path)
    try:
        keystore = json.loads(path.read_text(encoding="utf-8"))
        return Account.from_key(Account.decrypt(keystore, password))
    except FileNotFoundError:
        raise KeyFileError(f"no Ethereum key file at {path}") from None
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        raise KeyFileError(f"cannot open Ethereum key file {path}: wrong password or corrupt file") from None
