"""``fedledger kgc``: the SM9 key generation centre (master keys, user keys, threshold shares).

The master secrets and every private key or share are written password-encrypted with mode 0600;
public files (master public key PEMs, threshold public data JSON) are written in the clear.
Encryption (issue #11) has its own master key pair next to the signing one: `extract-encrypt`
issues a member's SM9 decryption key, and `register-card` files the member's own ML-KEM-768 public
key (made by `node init`/`aggregator init`, never seen by the KGC) in the roster.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli import kgc_tls
from fedledger.cli.common import (
    BAD_INPUT,
    PasswordFileOption,
    errors_reported,
    fail,
    guarded,
    read_password,
    spinner,
)
from fedledger.errors import FedLedgerError

app = typer.Typer(no_args_is_help=True)
MASTER_KEY_FILE = "sign_master.key"
MASTER_PUBLIC_FILE = "sign_master_public.pem"
THRESHOLD_PUBLIC_FILE = "threshold_public.json"
ENC_MASTER_KEY_FILE = "enc_master.key"
ENC_MASTER_PUBLIC_FILE = "enc_master_public.pem"

DEFAULT_MASTER = Path("kgc") / MASTER_KEY_FILE
DEFAULT_ENC_MASTER = Path("kgc") / ENC_MASTER_KEY_FILE
MasterOption = Annotated[Path, typer.Option("--master", help="Encrypted master key file (from `fedledger kgc setup`).")]
ForceKeyOption = Annotated[bool, typer.Option("--force", help="Overwrite an existing key file.")]
EncMasterOption = Annotated[
    Path, typer.Option("--enc-master", help="Encrypted SM9 encryption master key file (from `fedledger kgc setup`).")
]


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
    """Generate the SM9 signing and encryption master key pairs and the consortium's TLS CA (see `kgc tls-issue`)."""
    from fedledger.sm9 import SignMasterKey

    key_path, pem_path = out / MASTER_KEY_FILE, out / MASTER_PUBLIC_FILE
    _refuse_overwrite([key_path, pem_path, *_encryption_master_paths(out)], force)
    password = read_password(password_file, "the new master key", confirm=True)
    tls = kgc_tls.prepare_setup(out, password, tls_ca, tls_ca_key, aggregator_host, consortium, force)
    guarded(lambda: out.mkdir(parents=True, exist_ok=True))
    master = SignMasterKey.generate()
    guarded(lambda: master.save(key_path, password))
    guarded(lambda: master.public_key.save(pem_path))
    typer.echo(f"master key (encrypted, 0600): {key_path}\nmaster public key: {pem_path}")
    _setup_encryption_master(out, password)
    kgc_tls.finish_setup(tls, password)


def _encryption_master_paths(out: Path) -> list[Path]:
    return [out / ENC_MASTER_KEY_FILE, out / ENC_MASTER_PUBLIC_FILE]


def _setup_encryption_master(out: Path, password: str) -> None:
    """The encryption master key pair (ke, Ppub-e): separate from the signing one, same password."""
    from fedledger.sm9.encryption_keys import EncryptMasterKey

    key_path, pem_path = _encryption_master_paths(out)
    master = EncryptMasterKey.generate()
    guarded(lambda: master.save(key_path, password))
    guarded(lambda: master.public_key.save(pem_path))
    typer.echo(f"encryption master key (encrypted, 0600): {key_path}\nencryption master public key: {pem_path}")


@app.command("extract")
def extract(
    identity: Annotated[
        str, typer.Option("--id", help="Identity to issue a signing key for (UTF-8), e.g. inst:alpha.")
    ],
    master_path: MasterOption = DEFAULT_MASTER,
    out: Annotated[Path | None, typer.Option("--out", help="Output key file (default: sign_<id>.key).")] = None,
    force: ForceKeyOption = False,
    password_file: PasswordFileOption = None,
) -> None:
    """Extract a user's SM9 signing key (encrypted with the same password as the master key)."""
    from fedledger.sm9 import SignMasterKey, extract_sign_key

    out_path = out or Path(f"sign_{_safe_name(identity)}.key")
    _issue_key(identity, out_path, force, password_file, master_path, SignMasterKey.load, extract_sign_key)
    typer.echo(f"signing key for {identity!r} (encrypted, 0600): {out_path}")


def _issue_key(identity, out_path, force, password_file, master_path, load_master, extract_key) -> None:  # type: ignore[no-untyped-def]
    """Load a master key, extract ``identity``'s key and save it under the master key's password."""
    _refuse_overwrite([out_path], force)
    password = read_password(password_file, f"master key {master_path}")
    master = guarded(lambda: load_master(master_path, password))
    key = guarded(lambda: extract_key(master, identity))
    guarded(lambda: key.save(out_path, password))


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


@app.command("extract-encrypt")
def extract_encrypt(
    identity: Annotated[str, typer.Option("--id", help="Identity to issue an SM9 decryption key for (UTF-8).")],
    master_path: EncMasterOption = DEFAULT_ENC_MASTER,
    out: Annotated[Path | None, typer.Option("--out", help="Output key file (default: enc_<id>.key).")] = None,
    force: ForceKeyOption = False,
    password_file: PasswordFileOption = None,
) -> None:
    """Issue a member's (or the aggregator's) SM9 decryption key, encrypted with the master key's password."""
    from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key

    out_path = out or Path(f"enc_{_safe_name(identity)}.key")
    _issue_key(identity, out_path, force, password_file, master_path, EncryptMasterKey.load, extract_encrypt_key)
    typer.echo(f"SM9 decryption key for {identity!r} (encrypted, 0600): {out_path}")


@app.command("register-card")
def register_card(
    roster: Annotated[Path, typer.Option("--roster", help="Consortium roster (consortium.json) to update.")],
    card: Annotated[Path, typer.Option("--card", help="A reader card (reader-card.json from node/aggregator init).")],
    enc_master_public: Annotated[
        Path | None,
        typer.Option("--enc-master-public", help="Also publish this SM9 encryption master public key (PEM)."),
    ] = None,
    as_aggregator: Annotated[
        bool, typer.Option("--aggregator", help="The card is the aggregator's (its identity becomes the reader's).")
    ] = False,
) -> None:
    """File a member's or the aggregator's ML-KEM-768 public key in the roster under its SM9 identity."""
    from dataclasses import replace

    from fedledger.envelope import Recipient
    from fedledger.protocol.consortium import Consortium
    from fedledger.sm9.encryption_keys import EncryptMasterPublicKey

    with errors_reported(BAD_INPUT, (FedLedgerError, OSError, ValueError)):  # roster errors are ValueErrors
        reader = Recipient.from_json(card.read_text(encoding="utf-8"))
        identity = reader.identity.decode("utf-8")
        updated = Consortium.load(roster).with_reader_card(identity, reader.mlkem_public, aggregator=as_aggregator)
        if enc_master_public is not None:
            mpk = EncryptMasterPublicKey.load(enc_master_public)
            updated = replace(updated, encrypt_master_public=mpk.to_der().hex())
        updated.save(roster)
    typer.echo(f"registered ML-KEM key {reader.key_id.hex()} of {identity!r} in {roster}")
