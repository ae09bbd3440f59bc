"""``fedledger sm9``: sign and verify with SM9 keys, and the local threshold signing ceremony.

Passwords never come from the command line: ``--password-file`` or the FEDLEDGER_KEY_PASSWORD
environment variable, else an interactive prompt. Exit codes: 0 ok/valid, 1 invalid signature,
2 bad input (clear message on stderr, no traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.bench import bench_app, emit
from fedledger.cli.common import FAILED, PasswordFileOption, err_console, fail, guarded, read_input, read_password
from fedledger.fileio import atomic_write_bytes

app = typer.Typer(no_args_is_help=True)


@app.command("sign")
def sign_command(
    key: Annotated[Path, typer.Option("--key", help="Encrypted SM9 signing key file (`fedledger kgc extract`).")],
    input_path: Annotated[Path, typer.Option("--in", help="File to sign ('-' for stdin).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the DER signature (104 bytes).")],
    password_file: PasswordFileOption = None,
) -> None:
    """Sign a file with an SM9 identity key; writes a standard DER signature."""
    from fedledger.sm9 import SignPrivateKey, sign

    message = read_input(input_path, "input")
    password = read_password(password_file, f"key {key}")
    private = guarded(lambda: SignPrivateKey.load(key, password))
    signature = sign(private, message)
    guarded(lambda: atomic_write_bytes(out, signature.to_der()))
    typer.echo(f"signed {input_path} as {private.identity.decode('utf-8', 'replace')!r} -> {out}")


@app.command("verify")
def verify_command(
    master_public_key: Annotated[Path, typer.Option("--master-public-key", help="PEM sign master public key.")],
    identity: Annotated[str, typer.Option("--id", help="Signer identity (UTF-8), e.g. inst:alpha.")],
    input_path: Annotated[Path, typer.Option("--in", help="The signed file ('-' for stdin).")],
    sig: Annotated[Path, typer.Option("--sig", help="DER signature file.")],
) -> None:
    """Verify an SM9 signature: exit 0 valid, 1 invalid, 2 bad input."""
    from fedledger.sm9 import Signature, SignMasterPublicKey, verify

    mpk = guarded(lambda: SignMasterPublicKey.load(master_public_key))
    message = read_input(input_path, "input")
    der = read_input(sig, "signature")
    signature = guarded(lambda: Signature.from_der(der))
    if verify(mpk, identity, message, signature):
        typer.echo("valid")
        return
    typer.echo("invalid", err=True)
    raise typer.Exit(FAILED)


def _share_passwords(shares: list[Path], password_file: Path | None) -> dict[Path, str]:
    """Each share's password: its KGC transport password file (``<share>.password``) when it has
    one beside it and no --password-file is given, else the one password given."""
    from fedledger.protocol.key_distribution import read_transport_password, transport_password_path

    own = {s: transport_password_path(s) for s in shares}
    if password_file is None and all(p.is_file() for p in own.values()):
        return {s: guarded(lambda p=p: read_transport_password(p)) for s, p in own.items()}  # type: ignore[misc]
    password = read_password(password_file, "the key shares")
    return dict.fromkeys(shares, password)


@app.command("threshold-sign")
def threshold_sign_command(
    shares: Annotated[list[Path], typer.Option("--share", help="Encrypted key share file; repeat for each signer.")],
    input_path: Annotated[Path, typer.Option("--in", help="File to sign ('-' for stdin).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the DER signature.")],
    public_path: Annotated[
        Path | None,
        typer.Option("--public", help="Threshold public data (default: threshold_public.json beside the first share)."),
    ] = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Run both rounds of a k-of-n signing session locally for the given shares."""
    from fedledger.sm9 import SM9CheatingSignersError, verify
    from fedledger.sm9.threshold import KeyShare, ThresholdPublic, threshold_sign_local

    public_file = public_path or shares[0].parent / "threshold_public.json"
    public = guarded(lambda: ThresholdPublic.load(public_file))
    message = read_input(input_path, "input")
    passwords = _share_passwords(shares, password_file)
    with err_console.status("decrypting shares"):
        loaded = [guarded(lambda s=s: KeyShare.load(s, passwords[s])) for s in shares]  # type: ignore[misc]
    with err_console.status(f"signing with shares {[s.index for s in loaded]} (k={public.k}, n={public.n})"):
        try:
            signature = guarded(lambda: threshold_sign_local(loaded, public, message))
        except SM9CheatingSignersError as exc:  # pragma: no cover - guarded turns it into exit 2
            fail(str(exc))
    if not verify(public.master_public_key, public.identity, message, signature):
        fail("internal error: the threshold signature does not verify", FAILED)
    guarded(lambda: atomic_write_bytes(out, signature.to_der()))
    typer.echo(f"threshold signature ({len(loaded)} of n={public.n}, k={public.k}) -> {out}")


@bench_app.command("sm9")
def bench_sm9(
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    repeat: Annotated[int, typer.Option("--repeat", min=3, help="Runs per figure (the median is reported).")] = 15,
) -> None:
    """Milliseconds for pairing, G1 multiply, sign, verify and threshold sign (k=3 of n=5)."""
    from fedledger.sm9.bench import run

    with err_console.status("measuring SM9") as status:
        result = run(repeat, progress=lambda name: status.update(f"measuring SM9: {name}"))
    emit("sm9", result, as_json)
