"""``fedledger kgc``: the SM9 key generation centre (master keys, user keys, threshold shares).

The master secret is encrypted under the KGC's password, which protects nothing else: every issued
key or share is encrypted for its recipient alone, under a fresh transport password written to a
0600 ``<file>.password`` beside it (or printed once with ``--print-password``). Public files
(master public key PEM, threshold public data JSON) are written in the clear.
Encryption (issue #11) has its own master key pair next to the signing one: `extract-encrypt`
issues a member's SM9 decryption key the same way (transport password per recipient), and
`register-card` files the member's own ML-KEM-768 public key (made by `node init`/`aggregator
init`, never seen by the KGC) in the roster.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli import kgc_tls
from fedledger.cli.common import BAD_INPUT, PasswordFileOption, errors_reported, fail, guarded, read_password, spinner
from fedledger.errors import FedLedgerError
from fedledger.protocol.key_distribution import (
    IssuedSecret,
    issue_key_shares,
    issue_secret,
    issue_sign_key,
    transport_password_path,
)

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


PrintPasswordOption = Annotated[
    bool,
    typer.Option(
        "--print-password",
        help="Print each transport password once on stdout instead of writing <file>.password (0600).",
    ),
]


def _hand_over(issued: IssuedSecret, print_password: bool) -> str:
    """Print the transport password once, or write it beside the file; says where it went."""
    if print_password:
        typer.echo(f"transport password for {issued.path}: {issued.password}")
        return "password printed above"
    return f"password in {guarded(issued.save_password)}"


@app.command("extract")
def extract(
    identity: Annotated[
        str, typer.Option("--id", help="Identity to issue a signing key for (UTF-8), e.g. inst:alpha.")
    ],
    master_path: MasterOption = DEFAULT_MASTER,
    out: Annotated[Path | None, typer.Option("--out", help="Output key file (default: sign_<id>.key).")] = None,
    force: ForceKeyOption = False,
    print_password: PrintPasswordOption = False,
    password_file: PasswordFileOption = None,
) -> None:
    """Issue a user's SM9 signing key, encrypted under a fresh transport password for that user alone."""
    from fedledger.sm9 import SignMasterKey

    def issue(master_password: str, identity: str, out_path: Path) -> IssuedSecret:
        master = guarded(lambda: SignMasterKey.load(master_path, master_password))
        return guarded(lambda: issue_sign_key(master, identity, out_path))

    _issue_user_key(identity, "sign", "signing key", master_path, out, force, print_password, password_file, issue)


def _split_identity(identity: str | None, chain_id: int | None, contract: str | None) -> str:
    """The identity to split, in canonical form: --id, or the consortium identity of --chain-id/--contract."""
    from fedledger.protocol.consortium import consortium_identity, normalise_identity

    if identity is not None and (chain_id is not None or contract is not None):
        fail("give --id, or --chain-id with --contract, not both")
    if identity is not None:
        return normalise_identity(identity)
    if chain_id is None or contract is None:
        fail("missing the identity: give --id, or --chain-id and --contract (consortium:<chain id>:<contract>)")
    with errors_reported(BAD_INPUT, (ValueError,)):
        return consortium_identity(chain_id, contract)


@app.command("split")
def split(
    k: Annotated[int, typer.Option("-k", help="Signers needed (threshold).")],
    n: Annotated[int, typer.Option("-n", help="Number of shares (institutions), at most 255.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for share-<j>.key files and threshold_public.json.")],
    identity: Annotated[
        str | None,
        typer.Option("--id", help="Consortium identity, e.g. consortium:<chain id>:<contract> (address case-free)."),
    ] = None,
    chain_id: Annotated[int | None, typer.Option("--chain-id", help="With --contract: the ledger's chain id.")] = None,
    contract: Annotated[str | None, typer.Option("--contract", help="With --chain-id: the ledger's address.")] = None,
    master_path: MasterOption = DEFAULT_MASTER,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing share files.")] = False,
    print_password: PrintPasswordOption = False,
    password_file: PasswordFileOption = None,
) -> None:
    """Split an identity's key into n point shares (k needed to sign) plus public verification data.

    Each share is encrypted under its own transport password, for the institution that holds it.
    """
    from fedledger.sm9 import SignMasterKey

    name = _split_identity(identity, chain_id, contract)
    if not 1 <= k <= n <= 255:
        fail(f"need 1 <= k <= n <= 255, got k={k}, n={n}")
    share_paths = [out / f"share-{j}.key" for j in range(1, n + 1)]
    password_paths = [] if print_password else [transport_password_path(p) for p in share_paths]
    _refuse_overwrite([*share_paths, *password_paths, out / THRESHOLD_PUBLIC_FILE], force)
    password = read_password(password_file, f"master key {master_path}")
    master = guarded(lambda: SignMasterKey.load(master_path, password))
    guarded(lambda: out.mkdir(parents=True, exist_ok=True))
    with spinner(f"splitting the key of {name!r} into {n} shares"):
        issued, public = guarded(lambda: issue_key_shares(master, name, k, share_paths))
        guarded(lambda: public.save(out / THRESHOLD_PUBLIC_FILE))
        guarded(lambda: master.public_key.save(out / MASTER_PUBLIC_FILE))
    for one in issued:
        _hand_over(one, print_password)
    typer.echo(
        f"{n} shares (k={k}) for {name!r} in {out}: share-1.key .. share-{n}.key (each encrypted for its holder "
        f"alone, 0600; {'passwords printed above' if print_password else 'passwords in share-<j>.key.password'}), "
        f"{THRESHOLD_PUBLIC_FILE}, {MASTER_PUBLIC_FILE}"
    )


app.command("tls-issue")(kgc_tls.tls_issue)


@app.command("extract-encrypt")
def extract_encrypt(
    identity: Annotated[str, typer.Option("--id", help="Identity to issue an SM9 decryption key for (UTF-8).")],
    master_path: EncMasterOption = DEFAULT_ENC_MASTER,
    out: Annotated[Path | None, typer.Option("--out", help="Output key file (default: enc_<id>.key).")] = None,
    force: ForceKeyOption = False,
    print_password: PrintPasswordOption = False,
    password_file: PasswordFileOption = None,
) -> None:
    """Issue a member's (or the aggregator's) SM9 decryption key, under a fresh transport password for it alone."""
    from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key

    def issue(master_password: str, identity: str, out_path: Path) -> IssuedSecret:
        master = guarded(lambda: EncryptMasterKey.load(master_path, master_password))
        key = guarded(lambda: extract_encrypt_key(master, identity))
        return guarded(lambda: issue_secret(key.save, out_path, identity))

    _issue_user_key(
        identity, "enc", "SM9 decryption key", master_path, out, force, print_password, password_file, issue
    )


def _issue_user_key(
    identity: str,
    prefix: str,
    what: str,
    master_path: Path,
    out: Path | None,
    force: bool,
    print_password: bool,
    password_file: Path | None,
    issue: Callable[[str, str, Path], IssuedSecret],
) -> None:
    """One way to issue a user's key from a master key: canonical identity, no silent overwrite, the
    master's password read once, the key under a fresh transport password handed over."""
    from fedledger.protocol.consortium import normalise_identity

    identity = normalise_identity(identity)  # an address inside an identity is case-free
    out_path = out or Path(f"{prefix}_{_safe_name(identity)}.key")
    _refuse_overwrite([out_path] if print_password else [out_path, transport_password_path(out_path)], force)
    password = read_password(password_file, f"master key {master_path}")
    where = _hand_over(issue(password, identity, out_path), print_password)
    typer.echo(f"{what} for {identity!r} (encrypted for it alone, 0600): {out_path}; {where}")


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
