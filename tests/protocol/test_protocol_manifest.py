"""The round manifest: canonical bytes, strict parsing, closed reason codes, a size cap."""

from __future__ import annotations

import json

import pytest

from fedledger.digests import sm3
from fedledger.protocol import merkle_root
from fedledger.protocol.manifest import (
    MAX_MANIFEST_BYTES,
    Exclusion,
    Inclusion,
    ManifestError,
    ReasonCode,
    RoundManifest,
)

A, B, C = ("0x" + c * 40 for c in "abc")
MANIFEST = RoundManifest(
    chain_id=31337,
    contract="0x" + "11" * 20,
    round=2,
    base_digest=sm3(b"base"),
    global_cid="QmGlobal",
    global_digest=sm3(b"global"),
    rule={"name": "alignment", "max_norm": 5.0, "norm_policy": "reject"},
    included=(Inclusion(A, "QmA", sm3(b"a"), sm3(b"leaf a")), Inclusion(C, "QmC", sm3(b"c"), sm3(b"leaf c"))),
    excluded=(Exclusion(B, "QmB", ReasonCode.FIELDS_MISMATCH, "the file claims 1000000000 samples, the ledger 10"),),
)


def test_round_trip_is_byte_exact_and_canonical():
    data = MANIFEST.to_bytes()
    assert RoundManifest.from_bytes(data) == MANIFEST
    assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()
    assert MANIFEST.digest() == sm3(data)
    assert MANIFEST.entry_count == 3
    assert MANIFEST.updates_root() == merkle_root([sm3(b"leaf a"), sm3(b"leaf c")])


def test_non_canonical_bytes_are_refused():
    pretty = json.dumps(json.loads(MANIFEST.to_bytes()), indent=1).encode()
    with pytest.raises(ManifestError, match="canonical"):
        RoundManifest.from_bytes(pretty)


def _tampered(**change: object) -> bytes:
    raw = json.loads(MANIFEST.to_bytes())
    raw.update(change)
    return json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"version": 2}, "version"),
        ({"extra": 1}, "exactly the fields"),
        ({"contract": "0x" + "AB" * 20}, "lower-case"),
        ({"round": -1}, "unsigned"),
        ({"round": True}, "unsigned"),
        ({"base_digest": "0x1234"}, "64"),
        ({"rule": {}}, "rule"),
        ({"excluded": [{"institution": B, "cid": "QmB", "code": "felt_like_it", "reason": ""}]}, "reason code"),
        ({"excluded": [{"institution": A, "cid": "QmA", "code": "non_finite", "reason": ""}]}, "both included"),
        ({"included": list(reversed(json.loads(MANIFEST.to_bytes())["included"]))}, "sorted"),
        ({"excluded": [{"institution": B, "cid": "QmB", "code": "non_finite", "reason": "x" * 513}]}, "at most"),
    ],
)
def test_malformed_manifests_are_refused_with_a_reason(change: dict[str, object], match: str):
    with pytest.raises(ManifestError, match=match):
        RoundManifest.from_bytes(_tampered(**change))


def test_garbage_and_oversized_input_is_refused():
    for data in (b"\xff\xfe", b"[]", b"null", b"{"):
        with pytest.raises(ManifestError):
            RoundManifest.from_bytes(data)
    with pytest.raises(ManifestError, match="cap"):
        RoundManifest.from_bytes(b" " * (MAX_MANIFEST_BYTES + 1))


def test_decisions_ignore_reason_text_but_not_codes():
    reworded = RoundManifest(
        **{**MANIFEST.__dict__, "excluded": (Exclusion(B, "QmB", ReasonCode.FIELDS_MISMATCH, "other words"),)}
    )
    recoded = RoundManifest(**{**MANIFEST.__dict__, "excluded": (Exclusion(B, "QmB", ReasonCode.NORM_BOUND, "x"),)})
    assert reworded.decisions() == MANIFEST.decisions()
    assert recoded.decisions() != MANIFEST.decisions()
