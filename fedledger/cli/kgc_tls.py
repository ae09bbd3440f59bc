"""The KGC's TLS work: the consortium CA and the certificates it issues (``kgc setup``, ``kgc tls-issue``).

Everything lands in one folder (``<kgc>/tls``): ``ca.pem`` (public, every party trusts it),
``ca-key.pem``, ``aggregator-cert.pem``/``aggregator-key.pem`` and ``<member>-cert.pem``/
``<member>-key.pem`` per roster member. The CA key is encrypted under the KGC's password; each
party's key under its own transport password (``<key>.password``), mode 0600, so that password
opens that key alone; ``node init`` and ``aggregator init`` re-encrypt their own under the party's
password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.common import PasswordFileOption, errors_reported, fail, read_password
from fedledger.protocol.consortium import Consortium, Member
from fedledger.protocol.key_distribution import issue_secret, transport_password_path
from fedledger.tls import ConsortiumCA
from fedledger.tls.ca import IssuedCertificate

TLS_DIR = "tls"
CA_CERT, CA_KEY = "ca.pem", "ca-key.pem"
AGGREGATOR = "aggregator"
LOCAL_HOSTS = ["127.0.0.1", "localhost"]

TlsCaOption = Annotated[
    Path | None, typer.Option("--tls-ca", help="The consortium's own CA certificate (PEM); else a new CA is made.")
]
TlsCaKeyOption = Annotated[
    Path | None, typer.Option("--tls-ca-key", help="Its private key (PEM, plain or encrypted with the KGC password).")
]
AggregatorHostOption = Annotated[
    list[str] | None,
    typer.Option("--aggregator-host", help="Host name or IP nodes use to reach the aggregator (repeatable)."),
]
RosterOption = Annotated[
    Path | None, typer.Option("--consortium", help="Roster (JSON): issue a client certificate to each member.")
]


def cert_paths(tls_dir: Path, party: str) -> tuple[Path, Path]:
    """Where a party's certificate and key are written in the KGC's TLS folder."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", party):
        fail(f"member name {party!r} cannot name a file: use letters, digits, '.', '_' and '-'")
    return tls_dir / f"{party}-cert.pem", tls_dir / f"{party}-key.pem"


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        fail(f"refusing to overwrite {', '.join(existing)} (use --force)")


@dataclass
class Issuance:
    """What the CA is about to issue, checked in full before anything is written."""

    ca: ConsortiumCA
    tls_dir: Path
    hosts: list[str]
    members: list[Member]
    chain_id: int = 0
    days: int = 365
    save_ca: bool = False  # a CA made (or brought) now is written too

    def targets(self) -> list[Path]:
        parties = ([AGGREGATOR] if self.hosts else []) + [m.name for m in self.members]
        ca_files = [self.tls_dir / CA_CERT, self.tls_dir / CA_KEY] if self.save_ca else []
        issued = [cert_paths(self.tls_dir, party) for party in parties]
        return ca_files + [p for cert, key in issued for p in (cert, key, transport_password_path(key))]

    def write(self, password: str) -> list[Path]:
        """Issue and write every certificate; returns the cert paths. The CA key is encrypted under the
        KGC's ``password``; each party's key under its own transport password (``<key>.password``, 0600)."""
        written = []
        with errors_reported():
            self.tls_dir.mkdir(parents=True, exist_ok=True)
            if self.save_ca:
                self.ca.save(self.tls_dir / CA_CERT, self.tls_dir / CA_KEY, password)
            if self.hosts:
                cert, key = cert_paths(self.tls_dir, AGGREGATOR)
                _save_for_recipient(self.ca.issue_server(self.hosts, days=self.days), cert, key)
                written.append(cert)
            for m in self.members:
                cert, key = cert_paths(self.tls_dir, m.name)
                issued = self.ca.issue_member(self.chain_id, m.address, m.sm9_identity, m.name, days=self.days)
                _save_for_recipient(issued, cert, key)
                written.append(cert)
        return written


def _save_for_recipient(issued: IssuedCertificate, cert: Path, key: Path) -> None:
    """A party's certificate, and its key under a fresh transport password only that party receives."""
    secret = issue_secret(lambda path, password: issued.save(cert, path, password), key, cert.name)
    secret.save_password()


def plan_issuance(
    ca: ConsortiumCA,
    tls_dir: Path,
    hosts: list[str] | None,
    roster: Path | None,
    only: list[str] | None = None,
    days: int = 365,
) -> Issuance:
    """The aggregator's certificate (when ``hosts``) and the members' (from ``roster``, or ``only`` these)."""
    issuance = Issuance(ca, tls_dir, list(hosts or []), [], days=days)
    if roster is not None:
        with errors_reported(kinds=(ValueError, OSError)):
            consortium = Consortium.load(roster)
        issuance.chain_id = consortium.chain_id
        issuance.members = [m for m in consortium.members if not only or m.name in only]
        missing = sorted(set(only or []) - {m.name for m in issuance.members})
        if missing:
            fail(f"no member named {', '.join(missing)} in {roster}")
    issuance.targets()  # every member name must make a file name
    return issuance


def prepare_setup(
    out: Path,
    password: str,
    given_ca: Path | None,
    given_ca_key: Path | None,
    hosts: list[str] | None,
    roster: Path | None,
    force: bool,
) -> Issuance:
    """``kgc setup``'s TLS part, checked before the KGC writes anything: the CA (made, or the
    consortium's own) and what it can issue now."""
    if (given_ca is None) != (given_ca_key is None):
        fail("--tls-ca and --tls-ca-key go together: the CA's certificate and its private key")
    with errors_reported():
        ca = (
            ConsortiumCA.load(given_ca, given_ca_key, password)
            if given_ca and given_ca_key
            else ConsortiumCA.generate()
        )
    issuance = plan_issuance(ca, out / TLS_DIR, hosts or LOCAL_HOSTS, roster)
    issuance.save_ca = True
    _refuse_overwrite(issuance.targets(), force)
    return issuance


def finish_setup(issuance: Issuance, password: str) -> None:
    written = issuance.write(password)
    typer.echo(
        f"TLS: consortium CA {issuance.tls_dir / CA_CERT} (key encrypted, 0600); issued {', '.join(map(str, written))}"
    )


def tls_issue(
    consortium: RosterOption = None,
    member: Annotated[list[str] | None, typer.Option("--member", help="Only this member (repeatable).")] = None,
    aggregator_host: AggregatorHostOption = None,
    tls_dir: Annotated[Path, typer.Option("--tls-dir", help="The KGC's TLS folder (from `kgc setup`).")] = Path("kgc")
    / TLS_DIR,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Validity of the new certificates.")] = 365,
    force: Annotated[bool, typer.Option("--force", help="Replace existing certificates (rotation).")] = False,
    new_ca: Annotated[
        bool,
        typer.Option("--new-ca", help="Replace the CA itself first (with --force): every party needs the new one."),
    ] = False,
    password_file: PasswordFileOption = None,
) -> None:
    """Issue TLS certificates from the consortium CA: new members, a new aggregator host, or rotation."""
    if consortium is None and not aggregator_host:
        fail("nothing to issue: give --consortium (member certificates) and/or --aggregator-host")
    password = read_password(password_file, f"the consortium CA key in {tls_dir}")
    with errors_reported():
        ca = ConsortiumCA.generate() if new_ca else ConsortiumCA.load(tls_dir / CA_CERT, tls_dir / CA_KEY, password)
    issuance = plan_issuance(ca, tls_dir, aggregator_host, consortium, member, days)
    issuance.save_ca = new_ca
    _refuse_overwrite(issuance.targets(), force)
    written = issuance.write(password)
    typer.echo(f"issued (keys encrypted, 0600): {', '.join(map(str, written))}")
