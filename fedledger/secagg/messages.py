"""The protocol's messages as canonical byte strings, each with an SM3 digest.

Why: every message is published (store + ledger digest), and any co-signing node recomputes the
aggregate from exactly these bytes; equal content gives equal bytes. Encoding: a tag, then
fields in a fixed order; integers as 8-byte big-endian, byte strings and arrays length-prefixed,
maps as a count and their entries sorted by member id. Parsing is strict (untrusted input):
wrong tag, trailing bytes or short fields are refused.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from fedledger.digests import sm3
from fedledger.secagg.errors import SecAggInputError
from fedledger.secagg.hybrid import HybridPublic
from fedledger.secagg.layout import RowBlock, Runs, row_blocks, runs
from fedledger.secagg.ring import RingSpec

MAGIC = b"FLSA1"


class _Writer:
    def __init__(self, tag: bytes) -> None:
        self.parts = [MAGIC, tag]

    def i64(self, value: int) -> _Writer:
        self.parts.append(int(value).to_bytes(8, "big", signed=True))
        return self

    def blob(self, value: bytes) -> _Writer:
        self.parts += [len(value).to_bytes(8, "big"), value]
        return self

    def i64s(self, values: list[int]) -> _Writer:
        self.i64(len(values))
        for v in values:
            self.i64(v)
        return self

    def table(self, values: dict[int, bytes]) -> _Writer:
        self.i64(len(values))
        for key in sorted(values):
            self.i64(key).blob(values[key])
        return self

    def done(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    def __init__(self, data: bytes, tag: bytes) -> None:
        if not data.startswith(MAGIC + tag):
            raise SecAggInputError(f"not a {tag.decode()} message")
        self.data, self.pos = data, len(MAGIC) + len(tag)

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise SecAggInputError("message is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def i64(self) -> int:
        return int.from_bytes(self._take(8), "big", signed=True)

    def blob(self) -> bytes:
        return self._take(int.from_bytes(self._take(8), "big"))

    def i64s(self) -> list[int]:
        return [self.i64() for _ in range(self._count())]

    def table(self) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for _ in range(self._count()):
            key = self.i64()
            if key in out or (out and key < max(out)):
                raise SecAggInputError("map keys are not strictly increasing")
            out[key] = self.blob()
        return out

    def _count(self) -> int:
        count = self.i64()
        if not 0 <= count <= len(self.data):
            raise SecAggInputError("bad element count")
        return count

    def end(self) -> None:
        if self.pos != len(self.data):
            raise SecAggInputError("trailing bytes after the message")


class _Message:
    def to_bytes(self) -> bytes:
        raise NotImplementedError

    def digest(self) -> bytes:
        """SM3 of the canonical bytes: what the ledger names."""
        return sm3(self.to_bytes())


@dataclass(frozen=True)
class RoundSetup(_Message):
    """Public parameters of one secure round: threshold, ring, global length, each member's
    sample weight and global positions (from its public index map)."""

    round_index: int
    threshold: int
    ring: RingSpec
    global_length: int
    weights: dict[int, int]
    positions: dict[int, np.ndarray] = field(repr=False)

    def __post_init__(self) -> None:
        members = sorted(self.weights)
        if sorted(self.positions) != members or not members or members[0] < 1:
            raise SecAggInputError("weights and positions must name the same members, ids >= 1")
        if not 2 <= self.threshold <= len(members):
            raise SecAggInputError(f"threshold {self.threshold} must be in [2, {len(members)}]")
        for m in members:
            pos = self.positions[m]
            if self.weights[m] < 1:
                raise SecAggInputError(f"member {m}: weight must be positive")
            if pos.size and (pos.min() < 0 or pos.max() >= self.global_length or np.unique(pos).size != pos.size):
                raise SecAggInputError(f"member {m}: positions outside the model or repeated")

    @property
    def members(self) -> list[int]:
        return sorted(self.weights)

    @functools.cached_property
    def runs(self) -> dict[int, Runs | None]:
        """Each member's contiguous runs, derived once per round (unmasking adds run by run)."""
        return {m: runs(p) for m, p in self.positions.items()}

    @functools.cached_property
    def row_blocks(self) -> dict[int, list[RowBlock] | None]:
        """Each member's runs merged into strided row blocks, once per round (unmasking adds by block)."""
        return {m: None if r is None else row_blocks(r) for m, r in self.runs.items()}

    def to_bytes(self) -> bytes:
        w = _Writer(b"setup").i64(self.round_index).i64(self.threshold).i64(self.ring.bits).i64(self.ring.frac_bits)
        w.i64(self.global_length).table({m: v.to_bytes(8, "big") for m, v in self.weights.items()})
        return w.table({m: p.astype(">i8").tobytes() for m, p in self.positions.items()}).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundSetup:
        r = _Reader(data, b"setup")
        round_index, threshold, bits, frac = r.i64(), r.i64(), r.i64(), r.i64()
        length = r.i64()
        weights = {m: int.from_bytes(v, "big") for m, v in r.table().items()}
        positions = {m: np.frombuffer(v, dtype=">i8").astype(np.int64) for m, v in r.table().items()}
        r.end()
        return cls(round_index, threshold, RingSpec(bits, frac), length, weights, positions)


@dataclass(frozen=True)
class AdvertiseKeys(_Message):
    """Phase 1: a member's channel key (for shares) and mask key (for pairwise masks)."""

    round_index: int
    member: int
    channel: HybridPublic
    mask: HybridPublic

    def to_bytes(self) -> bytes:
        w = _Writer(b"keys").i64(self.round_index).i64(self.member)
        w.blob(self.channel.x25519).blob(self.channel.mlkem)
        return w.blob(self.mask.x25519).blob(self.mask.mlkem).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> AdvertiseKeys:
        r = _Reader(data, b"keys")
        out = cls(r.i64(), r.i64(), HybridPublic(r.blob(), r.blob()), HybridPublic(r.blob(), r.blob()))
        r.end()
        return out


@dataclass(frozen=True)
class ShareKeys(_Message):
    """Phase 2: ML-KEM ciphertexts for pairs with higher ids, sealed shares per recipient, and
    commitments: SM3 of each share (seed, key) per recipient and of each whole secret."""

    round_index: int
    member: int
    pair_ciphertexts: dict[int, bytes]
    sealed_shares: dict[int, bytes]
    seed_share_commitments: dict[int, bytes]
    key_share_commitments: dict[int, bytes]
    seed_commitment: bytes
    key_commitment: bytes

    def to_bytes(self) -> bytes:
        w = _Writer(b"shares").i64(self.round_index).i64(self.member)
        w.table(self.pair_ciphertexts).table(self.sealed_shares)
        w.table(self.seed_share_commitments).table(self.key_share_commitments)
        return w.blob(self.seed_commitment).blob(self.key_commitment).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> ShareKeys:
        r = _Reader(data, b"shares")
        out = cls(r.i64(), r.i64(), r.table(), r.table(), r.table(), r.table(), r.blob(), r.blob())
        r.end()
        return out


@dataclass(frozen=True)
class MaskedInput(_Message):
    """Phase 3: the member's masked, weighted, fixed-point update over its own positions only."""

    round_index: int
    member: int
    values: np.ndarray = field(repr=False)

    def to_bytes(self) -> bytes:
        word = "<u4" if self.values.dtype == np.uint32 else "<u8"
        bits = 32 if word == "<u4" else 64
        return _Writer(b"masked").i64(self.round_index).i64(self.member).i64(bits).blob(
            self.values.astype(word).tobytes()
        ).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> MaskedInput:
        r = _Reader(data, b"masked")
        round_index, member, bits = r.i64(), r.i64(), r.i64()
        if bits not in (32, 64):
            raise SecAggInputError(f"masked input: ring of {bits} bits")
        raw = r.blob()
        r.end()
        dtype = np.dtype("<u4" if bits == 32 else "<u8")
        if len(raw) % dtype.itemsize:
            raise SecAggInputError("masked input: length is not a whole number of ring words")
        values = np.frombuffer(raw, dtype=dtype).astype(np.uint32 if bits == 32 else np.uint64)
        return cls(round_index, member, values)


@dataclass(frozen=True)
class Reveal(_Message):
    """Phase 4: for each other member, the self-mask seed share (it survived) or the mask-key
    share (it dropped), never both; bound to the published survivor set by its digest."""

    round_index: int
    member: int
    survivors_digest: bytes
    seed_shares: dict[int, bytes]
    key_shares: dict[int, bytes]

    def to_bytes(self) -> bytes:
        w = _Writer(b"reveal").i64(self.round_index).i64(self.member).blob(self.survivors_digest)
        return w.table(self.seed_shares).table(self.key_shares).done()

    @classmethod
    def from_bytes(cls, data: bytes) -> Reveal:
        r = _Reader(data, b"reveal")
        out = cls(r.i64(), r.i64(), r.blob(), r.table(), r.table())
        r.end()
        return out


def survivors_digest(round_index: int, survivors: list[int]) -> bytes:
    """SM3 of the canonical survivor set (members whose masked input the round uses)."""
    return sm3(_Writer(b"survivors").i64(round_index).i64s(sorted(survivors)).done())


def share_commitment(round_index: int, dealer: int, recipient: int, kind: str, share: bytes) -> bytes:
    """SM3 commitment to one share (a uniform field element, so the hash hides it)."""
    return sm3(_Writer(b"commit-" + kind.encode()).i64(round_index).i64(dealer).i64(recipient).blob(share).done())


def secret_commitment(round_index: int, dealer: int, kind: str, secret: bytes) -> bytes:
    """SM3 commitment to a whole secret (256-bit random material, so the hash hides it)."""
    return sm3(_Writer(b"secret-" + kind.encode()).i64(round_index).i64(dealer).blob(secret).done())


@dataclass
class Published:
    """Everything a round publishes: what ``recompute_aggregate`` needs, and nothing secret."""

    setup: RoundSetup
    keys: dict[int, AdvertiseKeys]
    shares: dict[int, ShareKeys]
    masked: dict[int, MaskedInput]
    reveals: dict[int, Reveal]

    @property
    def survivors(self) -> list[int]:
        return sorted(self.masked)

    def digests(self) -> dict[str, bytes]:
        """Digest of every published message, by a readable name (what the round record lists)."""
        out = {"setup": self.setup.digest()}
        for kind, messages in (("keys", self.keys), ("shares", self.shares), ("masked", self.masked),
                               ("reveal", self.reveals)):
            for member, message in messages.items():
                out[f"{kind}/{member}"] = message.digest()
        return out
