"""Canonical byte encodings of the two things that get SM9-signed.

An update entry is signed by its institution's own SM9 identity key; a round record is signed by
the consortium identity with a k-of-n threshold signature. Both encodings are fixed-layout,
length-prefixed and domain-separated (with chain id and contract address), so a signature made
for one ledger, round or kind of message can never be replayed as another.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Protocol

from fedledger.digests import as_bytes32, sm3

_UPDATE_TAG = b"fedledger/update-entry/v1"
_RECORD_TAG = b"fedledger/round-record/v2"


def _address_bytes(address: str) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte Ethereum address: {address!r}")
    return raw


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise ValueError(f"entry count must be an integer in [0, 2**32), got {value!r}")
    return value


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


class SubmittedEvent(Protocol):
    """What an ``UpdateSubmitted`` event carries (``fedledger.chain.client.UpdateSubmitted`` fits)."""

    @property
    def round(self) -> int: ...
    @property
    def institution(self) -> str: ...
    @property
    def cid(self) -> str: ...
    @property
    def digest(self) -> bytes: ...
    @property
    def num_samples(self) -> int: ...
    @property
    def width_rate_ppm(self) -> int: ...
    @property
    def mapping_digest(self) -> bytes: ...


@dataclass(frozen=True)
class UpdateEntry:
    """One institution's submission for one round, as recorded by ``UpdateSubmitted``."""

    chain_id: int
    contract: str
    round: int
    institution: str  # Ethereum address of the submitting institution
    cid: str
    digest: bytes  # SM3 of the update file
    num_samples: int
    width_ppm: int
    mapping_digest: bytes  # SM3 of the sub-model index map

    @classmethod
    def from_event(cls, chain_id: int, contract: str, event: SubmittedEvent) -> UpdateEntry:
        """The signed entry an ``UpdateSubmitted`` event on ledger (chain_id, contract) stands for."""
        return cls(
            chain_id=chain_id,
            contract=contract,
            round=event.round,
            institution=event.institution,
            cid=event.cid,
            digest=event.digest,
            num_samples=event.num_samples,
            width_ppm=event.width_rate_ppm,
            mapping_digest=event.mapping_digest,
        )

    def message(self) -> bytes:
        """The bytes the institution signs with its SM9 identity key."""
        return b"".join(
            [
                _text(_UPDATE_TAG.decode()),
                struct.pack(">Q", self.chain_id),
                _address_bytes(self.contract),
                struct.pack(">Q", self.round),
                _address_bytes(self.institution),
                _text(self.cid),
                as_bytes32(self.digest, "update digest"),
                struct.pack(">QI", self.num_samples, self.width_ppm),
                as_bytes32(self.mapping_digest, "mapping digest"),
            ]
        )

    def leaf(self, signature_der: bytes) -> bytes:
        """Merkle leaf: the entry exactly as submitted, its signature included."""
        return sm3(b"\x00" + self.message() + sm3(signature_der))


class PostedEvent(Protocol):
    """What a ``GlobalModelPosted`` event carries (``fedledger.chain.client.GlobalModelPosted`` fits)."""

    @property
    def round(self) -> int: ...
    @property
    def cid(self) -> str: ...
    @property
    def digest(self) -> bytes: ...
    @property
    def updates_root(self) -> bytes: ...
    @property
    def manifest_cid(self) -> str: ...
    @property
    def manifest_digest(self) -> bytes: ...
    @property
    def update_count(self) -> int: ...


@dataclass(frozen=True)
class RoundRecord:
    """What the consortium threshold-signs for a round: all of it is on chain after posting.

    ``manifest_cid``/``manifest_digest`` bind the round manifest (every entry included or left out
    with its reason, ``fedledger.protocol.manifest``); ``entry_count`` is how many entries the round
    has, which the contract checks against its own count when the record is posted.
    """

    chain_id: int
    contract: str
    round: int
    base_digest: bytes  # digest of the model the round started from
    global_cid: str
    global_digest: bytes
    updates_root: bytes
    manifest_cid: str
    manifest_digest: bytes
    entry_count: int

    @classmethod
    def from_posted(cls, chain_id: int, contract: str, base_digest: bytes, posted: PostedEvent) -> RoundRecord:
        """The record a ``GlobalModelPosted`` event stands for; ``base_digest`` comes from its ``RoundOpened``."""
        return cls(
            chain_id,
            contract,
            posted.round,
            base_digest,
            posted.cid,
            posted.digest,
            posted.updates_root,
            posted.manifest_cid,
            posted.manifest_digest,
            posted.update_count,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form the aggregator shows in a signing session (digests as 0x-hex)."""
        return {
            "chain_id": self.chain_id,
            "contract": self.contract,
            "round": self.round,
            "base_digest": "0x" + self.base_digest.hex(),
            "global_cid": self.global_cid,
            "global_digest": "0x" + self.global_digest.hex(),
            "updates_root": "0x" + self.updates_root.hex(),
            "manifest_cid": self.manifest_cid,
            "manifest_digest": "0x" + self.manifest_digest.hex(),
            "entry_count": self.entry_count,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> RoundRecord:
        """Parse :meth:`to_dict`'s form from an untrusted peer; ValueError names what is wrong."""
        try:
            return cls(
                int(raw["chain_id"]),
                str(raw["contract"]),
                int(raw["round"]),
                as_bytes32(bytes.fromhex(raw["base_digest"].removeprefix("0x")), "base digest"),
                str(raw["global_cid"]),
                as_bytes32(bytes.fromhex(raw["global_digest"].removeprefix("0x")), "global digest"),
                as_bytes32(bytes.fromhex(raw["updates_root"].removeprefix("0x")), "updates root"),
                str(raw["manifest_cid"]),
                as_bytes32(bytes.fromhex(raw["manifest_digest"].removeprefix("0x")), "manifest digest"),
                _count(raw["entry_count"]),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"malformed round record: {exc.__class__.__name__}: {exc}") from None

    def message(self) -> bytes:
        """The bytes the consortium identity signs (k-of-n threshold SM9)."""
        return b"".join(
            [
                _text(_RECORD_TAG.decode()),
                struct.pack(">Q", self.chain_id),
                _address_bytes(self.contract),
                struct.pack(">Q", self.round),
                as_bytes32(self.base_digest, "base digest"),
                _text(self.global_cid),
                as_bytes32(self.global_digest, "global digest"),
                as_bytes32(self.updates_root, "updates root"),
                _text(self.manifest_cid),
                as_bytes32(self.manifest_digest, "manifest digest"),
                struct.pack(">I", self.entry_count),
            ]
        )
