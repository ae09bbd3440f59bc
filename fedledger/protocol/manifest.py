"""The round manifest: which of a round's ledger entries the global model includes, which it leaves
out and why.

The aggregator puts it in the content store before the signing session; the round record binds
its CID and SM3 digest, so the k co-signers vouch for every inclusion and every exclusion, and an
auditor reads the whole account of a round in one pass. Canonical bytes (UTF-8 JSON, sorted keys,
no insignificant whitespace) make equal manifests byte-equal, and parsing is strict: anything that
is not exactly what :meth:`RoundManifest.to_bytes` writes is refused with a named reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from fedledger.digests import sm3
from fedledger.errors import FedLedgerError
from fedledger.protocol.entries import RoundRecord
from fedledger.protocol.merkle import merkle_root
from fedledger.store import ContentStore, StoreError
from fedledger.store.errors import BlockNotFoundError

if TYPE_CHECKING:
    from fedledger.chain.client import GlobalModelPosted

MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20  # ~2000 entries with long reasons; a round is far smaller
MAX_REASON_CHARS = 512
MAX_CID_CHARS = 128
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_HEX32 = re.compile(r"0x[0-9a-f]{64}")
_FIELDS = {
    "version",
    "chain_id",
    "contract",
    "round",
    "base_digest",
    "global_cid",
    "global_digest",
    "rule",
    "included",
    "excluded",
}
SECAGG_FIELD = "secagg"  # present only in secure-aggregation rounds (fedledger.protocol.secagg_round)


# (included rows: institution, cid, digest, leaf), (excluded rows: institution, cid, code)
Decisions = tuple[tuple[tuple[str, str, bytes, bytes], ...], tuple[tuple[str, str, str], ...]]


class ManifestError(FedLedgerError, ValueError):
    """Bytes that are not a well-formed round manifest; the message names the first problem."""


class ReasonCode(StrEnum):
    """Why an entry was left out: a closed list, so nodes compare decisions, not prose."""

    SIGNATURE_INVALID = "signature_invalid"
    CONTENT_UNAVAILABLE = "content_unavailable"
    DIGEST_MISMATCH = "digest_mismatch"
    MALFORMED_FILE = "malformed_file"
    FIELDS_MISMATCH = "fields_mismatch"  # file's sample count, width or index map differ from the ledger
    WRONG_SHAPE = "wrong_shape"
    WRONG_WINDOW = "wrong_window"  # the index map is not the one the consortium's selection gives
    NON_FINITE = "non_finite"
    NORM_BOUND = "norm_bound"
    WRONG_BASE = "wrong_base"
    NOT_MEMBER = "not_member"
    NOT_IN_SECURE_ROUND = "not_in_secure_round"  # no keys shared, or after the survivor set was fixed


@dataclass(frozen=True)
class Inclusion:
    """An included entry: its Merkle ``leaf`` (``UpdateEntry.leaf``) ties it to the updates root."""

    institution: str  # lower-case address
    cid: str
    digest: bytes
    leaf: bytes

    def to_dict(self) -> dict[str, str]:
        return {
            "institution": self.institution,
            "cid": self.cid,
            "digest": "0x" + self.digest.hex(),
            "leaf": "0x" + self.leaf.hex(),
        }


@dataclass(frozen=True)
class Exclusion:
    """A left-out entry, with its reason code and a human-readable reason."""

    institution: str  # lower-case address
    cid: str
    code: ReasonCode
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"institution": self.institution, "cid": self.cid, "code": self.code.value, "reason": self.reason}


@dataclass(frozen=True)
class RoundManifest:
    """The public account of one round (see the module docstring)."""

    chain_id: int
    contract: str  # lower-case
    round: int
    base_digest: bytes
    global_cid: str
    global_digest: bytes
    rule: dict[str, Any]  # aggregation rule name and parameters, validation policy
    included: tuple[Inclusion, ...]
    excluded: tuple[Exclusion, ...]
    version: int = field(default=MANIFEST_VERSION)
    secagg: dict[str, Any] | None = None  # a secure round's published messages; its shape is secagg_round's

    def __post_init__(self) -> None:
        _check_rows(self.included, self.excluded)

    @property
    def entry_count(self) -> int:
        """How many ``UpdateSubmitted`` entries of the round the manifest accounts for."""
        return len(self.included) + len(self.excluded)

    def updates_root(self) -> bytes:
        """Merkle root of the included leaves (in address order), as the round record carries it."""
        return merkle_root([row.leaf for row in self.included])

    def decisions(self) -> Decisions:
        """What co-signers must agree on: every inclusion, and every exclusion with its code
        (the reason text may differ between honest parties, e.g. a store's error message)."""
        return (
            tuple((r.institution, r.cid, r.digest, r.leaf) for r in self.included),
            tuple((r.institution, r.cid, r.code.value) for r in self.excluded),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "round": self.round,
            "base_digest": "0x" + self.base_digest.hex(),
            "global_cid": self.global_cid,
            "global_digest": "0x" + self.global_digest.hex(),
            "rule": self.rule,
            "included": [row.to_dict() for row in self.included],
            "excluded": [row.to_dict() for row in self.excluded],
        } | ({} if self.secagg is None else {SECAGG_FIELD: self.secagg})

    def to_bytes(self) -> bytes:
        """Canonical encoding: UTF-8 JSON, sorted keys, no insignificant whitespace."""
        data = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES}-byte cap")
        return data

    def digest(self) -> bytes:
        """SM3 of the canonical bytes (what the round record binds)."""
        return sm3(self.to_bytes())

    def round_record(self, manifest_cid: str) -> RoundRecord:
        """The round record that binds this manifest, stored under ``manifest_cid``."""
        return RoundRecord(
            self.chain_id,
            self.contract,
            self.round,
            self.base_digest,
            self.global_cid,
            self.global_digest,
            self.updates_root(),
            manifest_cid,
            self.digest(),
            self.entry_count,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundManifest:
        """Parse untrusted bytes; only the exact canonical encoding of a valid manifest is accepted."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES}-byte cap")
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"manifest is not UTF-8 JSON: {exc}") from None
        manifest = cls._from_dict(raw)
        if manifest.to_bytes() != data:
            raise ManifestError("manifest bytes are not in canonical form")
        return manifest

    @classmethod
    def _from_dict(cls, raw: Any) -> RoundManifest:
        if not isinstance(raw, dict) or set(raw) - {SECAGG_FIELD} != _FIELDS:
            keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            raise ManifestError(f"manifest must be an object with exactly the fields {sorted(_FIELDS)}, got {keys}")
        if raw["version"] != MANIFEST_VERSION:
            raise ManifestError(f"unsupported manifest version {raw['version']!r}")
        if not isinstance(raw["rule"], dict) or not isinstance(raw["rule"].get("name"), str):
            raise ManifestError("manifest rule must be an object with a name")
        if not isinstance(raw["included"], list) or not isinstance(raw["excluded"], list):
            raise ManifestError("manifest included/excluded must be lists")
        if SECAGG_FIELD in raw and not isinstance(raw[SECAGG_FIELD], dict):
            raise ManifestError("manifest secagg must be an object")
        return cls(
            chain_id=_uint(raw["chain_id"], "chain_id"),
            contract=_address(raw["contract"], "contract"),
            round=_uint(raw["round"], "round"),
            base_digest=_hex32(raw["base_digest"], "base_digest"),
            global_cid=_cid(raw["global_cid"], "global_cid"),
            global_digest=_hex32(raw["global_digest"], "global_digest"),
            rule=raw["rule"],
            included=tuple(_inclusion(row, i) for i, row in enumerate(raw["included"])),
            excluded=tuple(_exclusion(row, i) for i, row in enumerate(raw["excluded"])),
            secagg=raw.get(SECAGG_FIELD),
        )


def _check_rows(included: tuple[Inclusion, ...], excluded: tuple[Exclusion, ...]) -> None:
    for name, rows in (("included", included), ("excluded", excluded)):
        addresses = [row.institution for row in rows]
        if addresses != sorted(set(addresses)):
            raise ManifestError(f"{name} rows must be sorted by address, each address once")
    both = {r.institution for r in included} & {r.institution for r in excluded}
    if both:
        raise ManifestError(f"{sorted(both)[0]} is both included and excluded")


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise ManifestError(f"{what} must be an unsigned integer")
    return value


def _address(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise ManifestError(f"{what} must be a lower-case 0x address")
    return value


def _hex32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise ManifestError(f"{what} must be 0x and 64 lower-case hex digits")
    return bytes.fromhex(value[2:])


def _cid(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CID_CHARS:
        raise ManifestError(f"{what} must be a string of 1..{MAX_CID_CHARS} characters")
    return value


def _row(raw: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or set(raw) != keys:
        raise ManifestError(f"{what} must have exactly the fields {sorted(keys)}")
    return raw


def _inclusion(raw: Any, i: int) -> Inclusion:
    row = _row(raw, {"institution", "cid", "digest", "leaf"}, f"included[{i}]")
    return Inclusion(
        _address(row["institution"], f"included[{i}].institution"),
        _cid(row["cid"], f"included[{i}].cid"),
        _hex32(row["digest"], f"included[{i}].digest"),
        _hex32(row["leaf"], f"included[{i}].leaf"),
    )


def _exclusion(raw: Any, i: int) -> Exclusion:
    row = _row(raw, {"institution", "cid", "code", "reason"}, f"excluded[{i}]")
    try:
        code = ReasonCode(row["code"])
    except ValueError:
        raise ManifestError(f"excluded[{i}].code {row['code']!r} is not a known reason code") from None
    reason = row["reason"]
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise ManifestError(f"excluded[{i}].reason must be text of at most {MAX_REASON_CHARS} characters")
    return Exclusion(_address(row["institution"], f"excluded[{i}].institution"), _cid(row["cid"], "cid"), code, reason)


class ManifestUnreadable(FedLedgerError):
    """A posted round's manifest cannot be used; ``final`` is False when the reason may pass."""

    def __init__(self, problem: str, final: bool = True) -> None:
        super().__init__(problem)
        self.problem = problem
        self.final = final


def read_posted_manifest(store: ContentStore, post: GlobalModelPosted) -> RoundManifest:
    """The manifest a post binds: fetched (size-capped), its SM3 digest checked, parsed strictly."""
    try:
        data = store.read_bytes(post.manifest_cid, max_size=MAX_MANIFEST_BYTES)
    except BlockNotFoundError as exc:
        raise ManifestUnreadable(f"manifest {post.manifest_cid} is missing from the store ({exc})", False) from None
    except (StoreError, ValueError) as exc:  # an untrusted CID is this round's verdict
        raise ManifestUnreadable(f"manifest {post.manifest_cid!r} cannot be read: {exc}", False) from None
    if sm3(data) != post.manifest_digest:
        raise ManifestUnreadable(f"manifest {post.manifest_cid} does not have the posted manifest digest")
    try:
        return RoundManifest.from_bytes(data)
    except ManifestError as exc:
        raise ManifestUnreadable(f"malformed manifest: {exc}") from None
