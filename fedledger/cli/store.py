"""``fedledger store ...``: add, get, stat, pin and CAR export/import against any store backend.

``--store`` takes ``local:DIR`` or ``kubo:MULTIADDR``; without it, $FEDLEDGER_STORE or the
embedded store under $FEDLEDGER_HOME/store (default ~/.fedledger/store) is used.
``add --encrypt-to ID...`` seals the file first to those readers (SM9 identities or member names,
resolved through the roster); ``get`` opens a sealed file with ``--key-file`` (a reader-keys.json),
and without one says for whom it is sealed.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from fedledger.cli.bench import bench_app, emit
from fedledger.cli.common import (
    BAD_INPUT,
    FAILED,
    OldOutputOption,
    PasswordFileOption,
    err_console,
    errors_reported,
    fail,
    output_path,
    read_password,
)
from fedledger.errors import FedLedgerError
from fedledger.store import (
    ContentStore,
    InvalidCarError,
    InvalidCIDError,
    StoreError,
    compute_cid,
    export_car,
    import_car,
    open_store,
)

app = typer.Typer(no_args_is_help=True)
_PROGRESS_THRESHOLD = 8 << 20  # bars only for transfers long enough to watch

STORE_HELP = (
    "Store to use: local:DIR (embedded) or kubo:MULTIADDR (e.g. kubo:/ip4/127.0.0.1/tcp/5001). "
    "Default: $FEDLEDGER_STORE, else local:$FEDLEDGER_HOME/store (~/.fedledger/store)."
)
StoreOption = Annotated[str | None, typer.Option("--store", "-s", help=STORE_HELP, envvar="FEDLEDGER_STORE")]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait for each Kubo RPC call.")]
CidVersionOption = Annotated[
    int,
    typer.Option("--cid-version", min=0, max=1, help="0: Kubo's default CIDv0; 1: CIDv1 with raw leaves."),
]


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Store errors end the command: exit 2 for a malformed CID or CAR, 1 for everything else."""
    with errors_reported(FAILED, (StoreError,)), errors_reported(BAD_INPUT, (InvalidCIDError, InvalidCarError)):
        yield


def _open(spec: str | None, timeout: float) -> ContentStore:
    with errors_reported(BAD_INPUT, (StoreError,)):  # a bad --store spec (or a directory that cannot be made)
        return open_store(spec, timeout=timeout)


@contextlib.contextmanager
def _progress(label: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A byte progress bar on stderr for long transfers; None (no bar) for small ones."""
    if total is not None and total < _PROGRESS_THRESHOLD:
        yield None
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _input_file(path: Path) -> Path:
    if not path.is_file():
        fail(f"{path}: no such file")
    return path


EncryptToOption = Annotated[
    list[str] | None,
    typer.Option("--encrypt-to", help="Seal to this reader (SM9 identity or member name in the roster); repeatable."),
]
RosterOption = Annotated[
    Path,
    typer.Option("--roster", envvar="FEDLEDGER_ROSTER", help="Consortium roster naming the readers' keys."),
]


@app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="File to add ('-' reads standard input).")],
    cid_version: Annotated[
        int,
        typer.Option("--cid-version", min=0, max=1, help="0: Kubo's default CIDv0; 1: CIDv1 with raw leaves."),
    ] = 0,
    pin: Annotated[bool, typer.Option("--pin/--no-pin", help="Pin the file (protects it from cleanup).")] = True,
    encrypt_to: EncryptToOption = None,
    roster: RosterOption = Path("consortium.json"),
    store: StoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Add a file (sealed first with --encrypt-to); prints its CID (plain: the CID `ipfs add` prints)."""
    sealing = _sealing_for(encrypt_to, roster) if encrypt_to else None
    target = _open(store, timeout)
    with _store_errors(), target:
        if str(file) == "-":
            with _progress("adding", None) as progress:
                cid = target.put(
                    _sealed(sys.stdin.buffer, sealing), cid_version=cid_version, pin=pin, progress=progress
                )
        else:
            source = _input_file(file)
            with _progress("adding", source.stat().st_size) as progress, open(source, "rb") as fh:
                cid = target.put(_sealed(fh, sealing), cid_version=cid_version, pin=pin, progress=progress)
    typer.echo(cid)


def _sealing_for(identities: list[str], roster_path: Path):  # type: ignore[no-untyped-def]
    """(reader cards, encryption master public key) for ``--encrypt-to``, from the roster."""
    from fedledger.protocol.consortium import Consortium
    from fedledger.protocol.readers import reader_card, sealing_master_key

    with errors_reported(BAD_INPUT, (FedLedgerError, OSError, ValueError)):
        consortium = Consortium.load(roster_path)
        by_name = {m.name: m.sm9_identity for m in consortium.members}
        cards = [reader_card(consortium, by_name.get(i, i)) for i in dict.fromkeys(identities)]
        return cards, sealing_master_key(consortium)


def _sealed(source: BinaryIO, sealing) -> BinaryIO:  # type: ignore[no-untyped-def]
    """``source`` as is, or sealed as it is read when ``sealing`` is (readers, master public key)."""
    if sealing is None:
        return source
    from fedledger.envelope import seal_pieces, sealed_reader

    readers, master_public = sealing
    return sealed_reader(seal_pieces(source, readers, master_public))


@app.command("get")
def get(
    cid: Annotated[str, typer.Argument(help="CID of the file to fetch.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write the file (written atomically).")
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Your reader-keys.json: opens a sealed file.")
    ] = None,
    password_file: PasswordFileOption = None,
    raw: Annotated[bool, typer.Option("--raw", help="Write a sealed file as stored (ciphertext).")] = False,
    store: StoreOption = None,
    timeout: TimeoutOption = 60.0,
    old_output: OldOutputOption = None,
) -> None:
    """Fetch a file, verifying every block (and opening it if sealed); on any failure no output file is left.

    Missing folders on the output path are created.
    """
    output = output_path(out, old_output)
    keys = _reader_keys(key_file, password_file) if key_file else None
    source = _open(store, timeout)
    with _store_errors(), source:
        readers = None if raw else _sealed_for(source, cid)
        if readers is not None:
            written = _open_sealed(source, cid, output, keys, readers)
        else:
            with _progress("fetching", source.stat(cid).size) as progress:
                written = source.get_to_path(cid, output, progress=progress)
    err_console.print(f"wrote {written} bytes to {output}", highlight=False)


def _reader_keys(path: Path, password_file: Path | None):  # type: ignore[no-untyped-def]
    from fedledger.envelope import RecipientKeys

    password = read_password(password_file, f"reader keys {path}")
    with errors_reported(BAD_INPUT):
        return RecipientKeys.load(path, password)


def _sealed_for(source: ContentStore, cid: str) -> list[str] | None:
    """The readers ("identity (key id)") a stored file is sealed to, or None when it is not sealed."""
    from fedledger.envelope.header import MAGIC, read_header

    with source.open(cid) as fh:
        if fh.peek(len(MAGIC))[: len(MAGIC)] != MAGIC:  # type: ignore[attr-defined]
            return None
        with errors_reported(FAILED):
            entries = read_header(fh).entries
    return [f"{e.identity.decode('utf-8', 'replace')} (key id {e.key_id.hex()})" for e in entries]


def _open_sealed(source: ContentStore, cid: str, output: Path, keys, readers: list[str]) -> int:  # type: ignore[no-untyped-def]
    """Open a sealed file into ``output`` (0600, written only once every chunk authenticated)."""
    from fedledger.envelope import EnvelopeAccessError, open_stream
    from fedledger.fileio import SECRET_MODE, atomic_writer

    if keys is None:
        fail(f"{cid} is encrypted for {', '.join(readers)}: pass --key-file (or --raw for the ciphertext)", FAILED)
    try:
        with source.open(cid) as fh, atomic_writer(output, SECRET_MODE) as out:
            return open_stream(fh, out, keys)
    except EnvelopeAccessError:
        fail(f"{cid} is encrypted for {', '.join(readers)}, not for {keys.identity.decode('utf-8', 'replace')}", FAILED)


@app.command("cid")
def cid_of(
    file: Annotated[Path, typer.Argument(help="File to hash.")],
    cid_version: Annotated[int, typer.Option("--cid-version", min=0, max=1, help="0 (default) or 1 (raw leaves).")] = 0,
) -> None:
    """Print a file's CID without storing anything (like `ipfs add --only-hash`)."""
    source = _input_file(file)
    with _store_errors():
        typer.echo(compute_cid(source, cid_version=cid_version))


@app.command("stat")
def stat(
    cid: Annotated[str, typer.Argument(help="CID to describe.")],
    store: StoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Print size, cumulative size and pin state as JSON."""
    source = _open(store, timeout)
    with _store_errors(), source:
        info = source.stat(cid)
    typer.echo(
        json.dumps(
            {
                "cid": info.cid,
                "size": info.size,
                "cumulative_size": info.cumulative_size,
                "pinned": info.pinned,
            }
        )
    )


@app.command("pin")
def pin(
    cid: Annotated[str, typer.Argument(help="CID to pin.")],
    store: StoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Pin a stored file."""
    target = _open(store, timeout)
    with _store_errors(), target:
        target.pin(cid)


@app.command("unpin")
def unpin(
    cid: Annotated[str, typer.Argument(help="CID to unpin.")],
    store: StoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Remove a pin (does nothing if the CID is not pinned)."""
    target = _open(store, timeout)
    with _store_errors(), target:
        target.unpin(cid)


@app.command("export-car")
def export_car_command(
    cid: Annotated[str, typer.Argument(help="Root CID to export.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="CAR file to write (CARv1).")] = None,
    store: StoreOption = None,
    timeout: TimeoutOption = 60.0,
    old_output: OldOutputOption = None,
) -> None:
    """Export a file's whole DAG as a CARv1 archive (`ipfs dag import` loads it)."""
    output = output_path(out, old_output)
    source = _open(store, timeout)
    with _store_errors(), source:
        size = source.stat(cid).cumulative_size
        with _progress("exporting", size) as progress:
            blocks = export_car(source, cid, output, progress=progress)
    err_console.print(f"wrote {blocks} blocks to {output}", highlight=False)


@app.command("import-car")
def import_car_command(
    car: Annotated[Path, typer.Argument(help="CAR file (v1 or v2) to import.")],
    pin: Annotated[bool, typer.Option("--pin/--no-pin", help="Pin the CAR's roots.")] = True,
    store: StoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Import every block of a CAR file (each verified); prints the root CIDs."""
    source = _input_file(car)
    target = _open(store, timeout)
    with _store_errors(), target, _progress("importing", source.stat().st_size) as progress:
        roots = import_car(target, source, pin=pin, progress=progress)
    for root in roots:
        typer.echo(root)


@bench_app.command("store")
def bench_store(
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    size_mib: Annotated[int, typer.Option("--size-mib", min=1, help="Size of the test file in MiB.")] = 1024,
    work_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="Directory for the test file and store (default: the system temp dir)."),
    ] = None,
    durable: Annotated[
        bool,
        typer.Option("--durable/--no-fsync", help="fsync blocks before put returns (the store's default)."),
    ] = True,
) -> None:
    """Embedded store put/get MB/s next to hashlib.sha256 MB/s on the same bytes (goal: ratio >= 0.5)."""
    from fedledger.store.bench import run_store_bench

    if work_dir is not None and not work_dir.is_dir():
        fail(f"{work_dir}: not a directory")
    with err_console.status(f"benchmarking the store on {size_mib} MiB ..."):
        result = run_store_bench(size_mib, work_dir, durable=durable)
    emit("store", result, as_json)
