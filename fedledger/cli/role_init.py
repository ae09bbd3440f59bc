"""What ``node init`` and ``aggregator init`` share: where passwords came from, a writable home, the
KGC's transport passwords, and which Ethereum key the role keeps.

Re-initialising never swaps the role's Ethereum key behind its back: an existing key is kept
unless a new one is asked for by name (``--new-eth-key``), since a new key is not registered on
the ledger and the role would wait forever.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from fedledger.cli.common import BAD_INPUT, PASSWORD_ENV, errors_reported, fail, read_password
from fedledger.errors import FedLedgerError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from fedledger.protocol.consortium import PublicMaterial
    from fedledger.tls.party import PartyTLS

ETH_KEY_FILE = "keys/eth-key.json"  # where both roles keep their Ethereum key (the configs' default)

EthKeyPasswordFileOption = Annotated[
    Path | None,
    typer.Option(help="Password file of --eth-key (default: the role's own password)."),
]
NewEthKeyOption = Annotated[
    bool,
    typer.Option(
        "--new-eth-key", help="Make a new Ethereum key even if one exists (it must then be registered on the ledger)."
    ),
]

SelectionOption = Annotated[
    Literal["rolling", "static", "random"],
    typer.Option(help="Which units each width trains (config: selection); every party must say the same."),
]
ServerMomentumOption = Annotated[
    float | None,
    typer.Option(
        "--server-momentum",
        min=0.0,
        max=0.999,
        help="Beta of the server momentum step on each round's result (config: server_momentum; default 0.5 "
        "with alignment, 0 = off); every party must say the same.",
    ),
]


def consortium_terms(selection: str, server_momentum: float | None) -> dict[str, Any]:
    """The --selection and --server-momentum options as config fields; a beta no round can use
    (not a fraction p/q with q <= 1000) ends the command with one line."""
    from fedledger.fl.rules import DEFAULT_RULE, server_momentum_for

    with errors_reported(BAD_INPUT, (ValueError,)):
        server_momentum_for(DEFAULT_RULE, server_momentum)
    return {"selection": selection, "server_momentum": server_momentum}


def password_source(password_file: Path | None) -> str:
    """Where ``read_password`` took a password from, to name it when it opens nothing."""
    if password_file is not None:
        return f"--password-file {password_file}"
    if os.environ.get(PASSWORD_ENV):
        return f"${PASSWORD_ENV}"
    return "the password typed at the prompt"


def require_writable_home(home: Path) -> None:
    """Refuse a --home that cannot be created or written, before anything is read or written."""
    existing = home
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        fail(f"cannot use --home {home}: {existing} is not a folder; choose another --home")
    if not os.access(existing, os.W_OK | os.X_OK) or os.statvfs(existing).f_flag & os.ST_RDONLY:
        fail(f"cannot write to --home {home}: {existing} is not writable by this user; choose another --home")


def transport_password(issued: Path, option: str, password_file: Path | None, shared_file: Path | None = None) -> str:
    """The KGC's transport password for one issued file: ``password_file`` if given, else
    ``<file>.password`` beside it, else ``shared_file`` (one password a kit uses for all its files)."""
    from fedledger.protocol.key_distribution import (
        KeyDistributionError,
        read_transport_password,
        transport_password_path,
    )

    beside = transport_password_path(issued)
    chosen = password_file or (beside if beside.is_file() else shared_file)
    if chosen is None:
        fail(
            f"no transport password for {option} {issued}: the KGC issues it as {beside.name}; "
            f"put it there or pass {option}-password-file"
        )
    try:
        return read_transport_password(chosen)
    except KeyDistributionError as exc:  # names the file, never its content
        fail(str(exc))


@dataclass(frozen=True)
class ChosenAccount:
    account: LocalAccount
    origin: Literal["given", "kept", "new"]


def choose_eth_account(
    home: Path,
    eth_key: Path | None,
    eth_key_password_file: Path | None,
    password_file: Path | None,
    role_password: str,
    new_key: bool,
) -> ChosenAccount:
    """--eth-key if given (opened with --eth-key-password-file, else the role's password); else the
    key already in the home (re-init keeps it); else a new one."""
    from eth_account import Account

    from fedledger.chain.keyfile import KeyFileError, load_eth_key

    if eth_key is not None and new_key:
        fail("give --eth-key or --new-eth-key, not both")
    if eth_key is not None:
        given = read_password(eth_key_password_file, f"--eth-key {eth_key}") if eth_key_password_file else None
        tried = password_source(eth_key_password_file or password_file)
        try:
            return ChosenAccount(load_eth_key(eth_key, given or role_password), "given")
        except KeyFileError as exc:
            fail(f"{exc} (tried the password from {tried}): pass --eth-key-password-file")
    home_key = home / ETH_KEY_FILE
    if home_key.exists() and not new_key:
        try:
            return ChosenAccount(load_eth_key(home_key, role_password), "kept")
        except KeyFileError:
            fail(
                f"{home_key} holds this role's Ethereum key but does not open with {password_source(password_file)}: "
                "re-init with the password it was made with, pass --eth-key, or --new-eth-key to replace it"
            )
    return ChosenAccount(Account.from_key(secrets.token_bytes(32)), "new")


def write_home(
    home: Path,
    password: str,
    chosen: ChosenAccount,
    material: PublicMaterial,
    *,
    config: Any,
    save_config: Callable[[Any, Path], Path],
    tls: PartyTLS | None,
    label: str,
    warning: str = "",
    save_secrets: Callable[[Path], None] | None = None,
) -> None:
    """Write the role's home once every check passed: its Ethereum key, the public files, its other
    secrets (``save_secrets(keys)``), its TLS files and its config, all under the role's password.
    A file system that refuses is one line; then say what was written (and the warning, if any)."""
    from fedledger.chain.keyfile import save_eth_key

    keys = home / "keys"
    with errors_reported(BAD_INPUT, (FedLedgerError, OSError)):  # e.g. a --home on a read-only file system
        keys.mkdir(parents=True, exist_ok=True)
        save_eth_key(home / ETH_KEY_FILE, chosen.account, password)
        material.install(keys)
        if save_secrets is not None:
            save_secrets(keys)
        if tls is not None:
            tls.save(config.tls_files(home), password)
        path = save_config(config, home)
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"{label}: config {path}, Ethereum address {chosen.account.address} ({chosen.origin} key)")
