"""The consortium roster: which Ethereum address holds which SM9 identity and threshold share.

Written once at setup by the KGC (a trusted dealer) and handed to every party; the aggregator
uses it to check who sent a commitment or partial signature, the nodes to know their own share.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fedledger.fileio import atomic_write_bytes, atomic_write_text


@dataclass(frozen=True)
class Member:
    name: str
    address: str
    sm9_identity: str
    share_index: int


@dataclass(frozen=True)
class Consortium:
    chain_id: int
    contract: str
    consortium_identity: str
    threshold: int
    members: tuple[Member, ...]

    def by_address(self, address: str) -> Member:
        for member in self.members:
            if member.address.lower() == address.lower():
                return member
        raise KeyError(f"{address} is not a member of the consortium")

    def by_share(self, share_index: int) -> Member:
        for member in self.members:
            if member.share_index == share_index:
                return member
        raise KeyError(f"no member holds threshold share {share_index}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "contract": self.contract,
            "consortium_identity": self.consortium_identity,
            "threshold": self.threshold,
            "members": [m.__dict__ for m in self.members],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Consortium:
        try:
            members = tuple(Member(**m) for m in data["members"])
            return cls(
                int(data["chain_id"]),
                str(data["contract"]),
                normalise_identity(str(data["consortium_identity"])),
                int(data["threshold"]),
                members,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed consortium roster: {exc}") from None

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Consortium:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ValueError(f"no consortium roster at {path}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"consortium roster {path} is not JSON: {exc}") from None


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_CONSORTIUM_IDENTITY = re.compile(r"consortium:([0-9]+):(0x[0-9a-fA-F]{40})")


def canonical_address(address: str) -> str:
    """The one form an Ethereum address takes inside an identity: ``0x`` + 40 lower-case hex digits.

    Users paste addresses checksummed (mixed case), as every tool prints them; identities are bytes
    to SM9, so one address must give one identity whatever its case.
    """
    text = str(address).strip()
    if not _ADDRESS.fullmatch(text):
        raise ValueError(f"{address!r} is not an Ethereum address (0x and 40 hex digits)")
    return "0x" + text[2:].lower()


def consortium_identity(chain_id: int, contract: str) -> str:
    """The SM9 identity the consortium signs round records as (bound to one ledger).

    Every role and the audit build it here, so a checksummed and a lower-case contract address
    give the same identity.
    """
    if int(chain_id) < 0:
        raise ValueError(f"chain id {chain_id} is negative")
    return f"consortium:{int(chain_id)}:{canonical_address(contract)}"


def normalise_identity(identity: str) -> str:
    """An identity as typed by a user, in canonical form: a ``consortium:<chain id>:<address>``
    identity gets its address lower-cased; any other identity is returned unchanged."""
    match = _CONSORTIUM_IDENTITY.fullmatch(identity.strip())
    if match is None:
        return identity
    return consortium_identity(int(match.group(1)), match.group(2))


@dataclass(frozen=True)
class PublicMaterial:
    """The public files every party holds: the KGC's master public key, the threshold public data
    of the consortium key, and the roster. ``check`` opens all three; ``install`` copies them into
    a party's key folder under the names the configs expect."""

    master_public_key: Path
    threshold_public: Path
    roster: Path

    NAMES: ClassVar[tuple[str, str, str]] = (
        "sign-master-public-key.pem",
        "threshold-public.json",
        "consortium.json",
    )

    def check(self) -> None:
        """Raise (SM9Error or ValueError, naming the file) unless every file opens."""
        from fedledger.sm9 import SignMasterPublicKey
        from fedledger.sm9.threshold import ThresholdPublic

        SignMasterPublicKey.load(self.master_public_key)
        ThresholdPublic.load(self.threshold_public)
        Consortium.load(self.roster)

    def install(self, keys_dir: Path) -> None:
        keys_dir.mkdir(parents=True, exist_ok=True)
        for source, name in zip((self.master_public_key, self.threshold_public, self.roster), self.NAMES, strict=True):
            atomic_write_bytes(keys_dir / name, Path(source).read_bytes())
