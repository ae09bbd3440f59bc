"""The consortium roster: which Ethereum address holds which SM9 identity and threshold share.

Written once at setup by the KGC (a trusted dealer) and handed to every party; the aggregator
uses it to check who sent a commitment or partial signature, the nodes to know their own share.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fedledger.fileio import atomic_write_text


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
                str(data["consortium_identity"]),
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


def consortium_identity(chain_id: int, contract: str) -> str:
    """The SM9 identity the consortium signs round records as (bound to one ledger)."""
    return f"consortium:{chain_id}:{contract.lower()}"


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
            shutil.copyfile(source, keys_dir / name)
