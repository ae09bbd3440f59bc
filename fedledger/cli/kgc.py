"""``fedledger kgc``: the SM9 key generation centre (master key, user keys, threshold shares).

The master secret and every private key or share are written password-encrypted with mode 0600;
public files (master public key PEM, threshold public data JSON) are written in the clear.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli import kgc_tls
from fedledger.cli.common import PasswordFileOption, fail, guarded, read_password, spinner

app = typer.Typer(no_args_is_help=True)
MASTER_KEY_FILE = "sign_master.key"
MASTER_PUBLIC_FILE = "sign_master_public.pem"
THRESHOLD_PUBLIC_FILE = "threshold_public.json"

DEFAULT_MASTER = Path("kgc") / MASTER_KEY_FILE
MasterOption = Annotated[Path, typer.Option("--master", help="Encrypted master key file (from `fedledger kgc setup`).")]


def _safe_name(identity: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", identity).strip("_") or "identity"


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        fail(f"refusing to overwrite {', '.join(existing)} (use --force)")


@app.command("setup")
def setup(
    out: Annotated[Path, typer.Option("--out", help="Directory for the master key and its public PEM.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing master key.")] = False,
    password_file: PasswordFileOption = None,
    tls_ca: kgc_tls.TlsCaOption = None,
    tls_ca_key: kgc_tls.TlsCaKeyOption = None,
    aggregator_host: kgc_tls.AggregatorHostOption = None,
    consortium: kgc_tls.RosterOption = None,
) -> None:
    """Generate the SM9 signing master key pair and the consortium's TLS CA (see `kgc tls-issue`)."""
    from fedledger.sm9 import SignMasterKey

    key_path, pem_path = out / MASTER_KEY_FILE, out / MASTER_PUBLIC_FILE
    _refuse_overwrite([key_path, pem_path], force)
    password = read_password(password_file, "the new master key", confirm=True)
    tls = kgc_tls.prepare_setup(out, password, tls_ca, tls_ca_key, aggregator_host, consortium, force)
    guarded(lambda: out.mkdir(parents=True, exist_ok=True))
    master = SignMasterKey.generate()
    guarded(lambda: master.save(key_path, password))
    guarded(lambda: master.public_key.save(pem_path))
    typer.echo(f"master key (encrypted, 0600): {key_path}\nmaster public key: {pem_path}")
    kgc_tls.finish_setup(tls, password)


@app.command("extract")
def extract(
    identity: Annotated[
        str, typer.Option("--id", help="Identity to issue a signing key for (UTF-8), e.g. inst:alpha.")
    ],
    master_path: MasterOption = DEFAULT_MASTER,
    out: Annotated[Path | None, typer.Option("--out", help="Output key file (default: sign_<id>.key).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing key file.")] = False,
    password_file: PasswordFileOption = None,
) -> None:
    """Extract a user's SM9 signing key (encrypted with the same password as the master key)."""
    from fedledger.sm9 import SignMasterKey, extract_sign_key

    out_path = out or Path(f"sign_{_safe_name(identity)}.key")
    _refuse_overwrite([out_path], force)
    password = read_password(password_file, f"master key {master_path}")
    master = guarded(lambda: SignMasterKey.load(master_path, password))
    key = guarded(lambda: extract_sign_key(master, identity))
    guarded(lambda: key.save(out_path, password))
    typer.echo(f"signing key for {identity!r} (encrypted, 0600): {out_path}")


@app.command("split")
def split(
    identity: Annotated[str, typer.Option("--id", help="Consortium identity, e.g. consortium:<chain id>:<contract>.")],
    k: Annotated[int, typer.Option("-k", help="Signers needed (threshold).")],
    n: Annotated[int, typer.Option("-n", help="Number of shares (institutions), at most 255.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for share-<j>.key files and threshold_public.json.")],
    master_path: MasterOption = DEFAULT_MASTER,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing share files.")] = False,
    password_file: PasswordFileOption = None,
) -> None:
    """Split an identity's key into n point shares (k needed to sign) plus public verification data."""
    from fedledger.sm9 import SignMasterKey
    from fedledger.sm9.threshold import split_key

    if not 1 <= k <= n <= 255:
        fail(f"need 1 <= k <= n <= 255, got k={k}, n={n}")
    share_paths = [out / f"share-{j}.key" for j in range(1, n + 1)]
    _refuse_overwrite([*share_paths, out / THRESHOLD_PUBLIC_FILE], force)
    password = read_password(password_file, f"master key {master_path}")
    master = guarded(lambda: SignMasterKey.load(master_path, password))
    guarded(lambda: out.mkdir(parents=True, exist_ok=True))
    with spinner(f"splitting the key of {identity!r} into {n} shares"):
        shares, public = guarded(lambda: split_key(master, identity, k, n))
        for share, path in zip(shares, share_paths, strict=True):
            guarded(lambda share=share, path=path: share.save(path, password))  # type: ignore[misc]
        guarded(lambda: public.save(out / THRESHOLD_PUBLIC_FILE))
        guarded(lambda: master.public_key.save(out / MASTER_PUBLIC_FILE))
    typer.echo(
        f"{n} shares (k={k}) for {identity!r} in {out}: share-1.key .. share-{n}.key (encrypted, 0600), "
        f"{THRESHOLD_PUBLIC_FILE}, {MASTER_PUBLIC_FILE}"
    )


app.command("tls-issue")(kgc_tls.tls_issue)
