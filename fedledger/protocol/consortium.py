"""The consortium roster: which Ethereum address holds which SM9 identity and threshold share.

Written once at setup by the KGC (a trusted dealer) and handed to every party; the aggregator
uses it to check who sent a commitment or partial signature, the nodes to know their own share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
        Path(path).write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")

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
