"""The TLS options ``node init`` and ``aggregator init`` share: the files the KGC issued to the party.

Both commands read and check the three files before writing anything, then install them in the
party's key folder (the key re-encrypted under the party's password) under the config's names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.common import fail
from fedledger.tls.party import PartyTLS, TLSFiles

TlsCaOption = Annotated[Path | None, typer.Option("--tls-ca", help="The consortium CA certificate (PEM).")]
TlsCertOption = Annotated[
    Path | None, typer.Option("--tls-cert", help="This party's TLS certificate from `kgc setup`/`kgc tls-issue`.")
]
TlsKeyOption = Annotated[
    Path | None, typer.Option("--tls-key", help="Its private key (encrypted under its transport password).")
]
InsecureHttpOption = Annotated[
    bool,
    typer.Option(
        "--insecure-http", help="Plain HTTP between node and aggregator, without TLS (local development only)."
    ),
]
NO_TLS_NOTE = (
    "note: no TLS material given (--tls-ca, --tls-cert, --tls-key): add it before `run`, "
    "or run with --insecure-http for local development only"
)


def warn_plain_http(insecure_http: bool) -> None:
    """Say on stderr, every time, that --insecure-http sends the protocol in the clear."""
    from fedledger.tls.contexts import PLAIN_HTTP_WARNING

    if insecure_http:
        typer.echo(PLAIN_HTTP_WARNING, err=True)


def open_issued_tls(ca: Path | None, cert: Path | None, key: Path | None, password: str) -> PartyTLS | None:
    """The party's TLS material as the KGC issued it, checked (CA, key pair); None when none is given."""
    given = [p for p in (ca, cert, key) if p is not None]
    if not given:
        typer.echo(NO_TLS_NOTE, err=True)
        return None
    if ca is None or cert is None or key is None:
        fail("--tls-ca, --tls-cert and --tls-key go together")
    return TLSFiles(ca, cert, key).open(password)
