"""``fedledger store ...``: add, get, stat, pin and CAR export/import against any store backend.

``--store`` takes ``local:DIR`` or ``kubo:MULTIADDR``; without it, $FEDLEDGER_STORE or the
embedded store under $FEDLEDGER_HOME/store (default ~/.fedledger/store) is used.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from fedledger.cli.bench import bench_app, emit
from fedledger.cli.common import BAD_INPUT, FAILED, OldOutputOption, err_console, errors_reported, fail, output_path
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


@app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="File to add ('-' reads standard input).")],
    cid_version: Annotated[
        int,
        typer.Option("--cid-version", min=0, max=1, help="0: Kubo's default CIDv0; 1: CIDv1 with raw leaves."),
    ] = 0,
    pin: Annotated[bool, typer.Option("--pin/--no-pin", help="Pin the file (protects it from cleanup).")] = True,
    store: StoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Add a file; prints its CID (the same CID `ipfs add` prints)."""
    target = _open(store, timeout)
    with _store_errors(), target:
        if str(file) == "-":
            with _progress("adding", None) as progress:
                cid = target.put(sys.stdin.buffer, cid_version=cid_version, pin=pin, progress=progress)
        else:
            source = _input_file(file)
            with _progress("adding", source.stat().st_size) as progress:
                cid = target.put(source, cid_version=cid_version, pin=pin, progress=progress)
    typer.echo(cid)


@app.command("get")
def get(
    cid: Annotated[str, typer.Argument(help="CID of the file to fetch.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write the file (written atomically).")
    ] = None,
    store: StoreOption = None,
    timeout: TimeoutOption = 60.0,
    old_output: OldOutputOption = None,
) -> None:
    """Fetch a file, verifying every block; on any mismatch no output file is left behind.

    Missing folders on the output path are created.
    """
    output = output_path(out, old_output)
    source = _open(store, timeout)
    with _store_errors(), source:
        size = source.stat(cid).size
        with _progress("fetching", size) as progress:
            written = source.get_to_path(cid, output, progress=progress)
    err_console.print(f"wrote {written} bytes to {output}", highlight=False)


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
