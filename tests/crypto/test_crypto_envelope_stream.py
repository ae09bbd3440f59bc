"""The streaming envelope: round trips at every size boundary with both AEADs, and every way an
attacker can change a sealed file (one bit anywhere, reorder, duplicate, truncate, extend) is
refused without releasing the bad chunk's plaintext.
"""

from __future__ import annotations

import io
import os
import stat
import tracemalloc
from pathlib import Path

import gmssl_pyx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.envelope import (
    EnvelopeAccessError,
    EnvelopeError,
    EnvelopeFormatError,
    EnvelopeIntegrityError,
    RecipientKeys,
    open_chunks,
    open_file,
    recipients_of,
    seal_file,
    seal_stream,
)
from fedledger.envelope.aead import SM4_GCM
from fedledger.envelope.header import CONTEXT_BYTES, read_header
from fedledger.sm9.encryption_keys import EncryptMasterKey

CHUNK = 4096
TAG = 16


def _seal(data: bytes, kgc: EncryptMasterKey, readers: list[RecipientKeys], aead: str = "AES-256-GCM") -> bytes:
    out = io.BytesIO()
    seal_stream(io.BytesIO(data), out, [r.public for r in readers], kgc.public_key, aead=aead, chunk_size=CHUNK)
    return out.getvalue()


def _open(blob: bytes, keys: RecipientKeys) -> bytes:
    return b"".join(open_chunks(io.BytesIO(blob), keys))


def _header_len(blob: bytes) -> int:
    src = io.BytesIO(blob)
    read_header(src)
    return src.tell()


@pytest.mark.parametrize("aead", ["AES-256-GCM", "SM4-GCM"])
@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17])
def test_round_trip_at_every_boundary(
    kgc: EncryptMasterKey, members: list[RecipientKeys], aead: str, size: int
) -> None:
    data = os.urandom(size)
    blob = _seal(data, kgc, members[:2], aead)
    chunks = max(1, -(-size // CHUNK))
    assert len(blob) == _header_len(blob) + size + chunks * TAG
    for reader in members[:2]:
        assert _open(blob, reader) == data
    with pytest.raises(EnvelopeAccessError):
        _open(blob, members[2])


def test_no_plaintext_and_no_key_material_in_the_ciphertext(
    kgc: EncryptMasterKey, members: list[RecipientKeys]
) -> None:
    data = b"safetensors header" + bytes(range(256)) * 64
    blob = _seal(data, kgc, members[:1])
    assert b"safetensors" not in blob and bytes(range(256)) not in blob
    assert members[0]._mlkem.private_bytes_raw() not in blob


def test_header_is_public_and_lists_recipients(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    blob = _seal(b"x", kgc, members)
    assert recipients_of(io.BytesIO(blob)) == [m.identity for m in members]


def test_one_bit_flipped_anywhere_is_refused(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    data = os.urandom(2 * CHUNK + 100)
    blob = _seal(data, kgc, members[:2])
    header = _header_len(blob)
    positions = sorted(
        {0, 8, 9, 12, 15, 16, 30, CONTEXT_BYTES, CONTEXT_BYTES + 3, header // 2, header - 1}  # header
        | {header, header + CHUNK // 2, header + CHUNK + TAG - 1}  # first chunk and its tag
        | {header + CHUNK + TAG, len(blob) - TAG - 1, len(blob) - 1}  # later chunks, last tag
    )
    for pos in positions:
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        for reader in members[:2]:
            with pytest.raises(EnvelopeError):
                _open(bytes(bad), reader)


def _chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    header = _header_len(blob)
    body = blob[header:]
    return blob[:header], [body[i : i + CHUNK + TAG] for i in range(0, len(body), CHUNK + TAG)]


def test_reorder_duplicate_truncate_extend_are_refused(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    blob = _seal(os.urandom(3 * CHUNK + 10), kgc, members[:1])
    head, chunks = _chunks(blob)
    assert len(chunks) == 4
    tampered = {
        "swap": head + chunks[1] + chunks[0] + chunks[2] + chunks[3],
        "duplicate": head + chunks[0] + chunks[0] + chunks[1] + chunks[2] + chunks[3],
        "drop a middle chunk": head + chunks[0] + chunks[2] + chunks[3],
        "cut at a chunk boundary": head + chunks[0] + chunks[1] + chunks[2],
        "cut inside a chunk": blob[:-5],
        "no chunks": head,
        "extended": blob + b"\x00" * (TAG + 1),
        "last chunk replayed": blob + chunks[3],
    }
    for name, bad in tampered.items():
        with pytest.raises(EnvelopeIntegrityError):
            _open(bad, members[0])
        assert name


def test_no_plaintext_of_a_bad_chunk_is_released(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    data = os.urandom(3 * CHUNK)
    for aead in ("AES-256-GCM", "SM4-GCM"):
        blob = bytearray(_seal(data, kgc, members[:1], aead))
        header = _header_len(bytes(blob))
        blob[header + CHUNK + TAG + 7] ^= 0x80  # inside chunk 1
        released: list[bytes] = []
        with pytest.raises(EnvelopeIntegrityError, match="chunk 1"):
            for chunk in open_chunks(io.BytesIO(bytes(blob)), members[0]):
                released.append(chunk)
        assert released == [data[:CHUNK]]  # chunk 0 only, authenticated


def test_open_file_leaves_nothing_behind_on_failure(
    tmp_path: Path, kgc: EncryptMasterKey, members: list[RecipientKeys]
) -> None:
    src, sealed, out = tmp_path / "model.bin", tmp_path / "model.env", tmp_path / "model.out"
    src.write_bytes(os.urandom(2 * CHUNK + 3))
    seal_file(src, sealed, [m.public for m in members[:2]], kgc.public_key, chunk_size=CHUNK)
    assert open_file(sealed, out, members[1]) == src.stat().st_size
    assert out.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    out.unlink()
    sealed.write_bytes(sealed.read_bytes()[:-1])
    with pytest.raises(EnvelopeIntegrityError):
        open_file(sealed, out, members[1])
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_parameters_are_refused_before_writing(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    cards = [m.public for m in members]
    for kwargs, match in (
        ({"chunk_size": 1000}, "power of two"),
        ({"chunk_size": 1 << 25}, "power of two"),
        ({"aead": "ChaCha20"}, "unknown AEAD"),
    ):
        out = io.BytesIO()
        with pytest.raises(EnvelopeFormatError, match=match):
            seal_stream(io.BytesIO(b"x"), out, cards, kgc.public_key, **kwargs)  # type: ignore[arg-type]
        assert out.getvalue() == b""
    for recipients in ([], [cards[0], cards[0]]):
        with pytest.raises(EnvelopeFormatError):
            seal_stream(io.BytesIO(b"x"), io.BytesIO(), recipients, kgc.public_key)


def test_malformed_headers_give_a_format_error(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    blob = _seal(b"x", kgc, members[:1])
    for bad in (b"", b"NOTANENV" + blob[8:], blob[:8] + b"\x02" + blob[9:], blob[:40]):
        with pytest.raises(EnvelopeFormatError):
            _open(bad, members[0])


def test_a_rotated_mlkem_key_reads_new_files_and_the_old_key_reads_old_ones(
    kgc: EncryptMasterKey, members: list[RecipientKeys]
) -> None:
    old = members[0]
    new = RecipientKeys.generate(old.sm9_key)
    old_file, new_file = _seal(b"old", kgc, [old]), _seal(b"new", kgc, [new])
    with pytest.raises(EnvelopeAccessError, match="another ML-KEM key"):
        _open(old_file, new)
    assert b"".join(open_chunks(io.BytesIO(old_file), [new, old])) == b"old"
    assert _open(new_file, new) == b"new"


def test_memory_stays_bounded_while_streaming(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    size, chunk = 48 << 20, 1 << 20

    class Zeros(io.RawIOBase):
        def __init__(self) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    class Sink(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            return len(data)

    tracemalloc.start()
    try:
        seal_stream(io.BufferedReader(Zeros()), Sink(), [members[0].public], kgc.public_key, chunk_size=chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * chunk, f"peak {peak} bytes for a {size}-byte stream"


def test_sm4_gcm_chunks_match_gmssl(kgc: EncryptMasterKey) -> None:
    key, nonce, aad, data = os.urandom(16), os.urandom(12), b"header digest", os.urandom(1000)
    sealed = SM4_GCM.cipher(key).seal(nonce, data, aad)
    body, tag = gmssl_pyx.sm4_gcm_encrypt(key, nonce, aad, data)
    assert sealed == body + tag
    assert SM4_GCM.cipher(key).open(nonce, body + tag, aad) == data


def test_a_bit_flip_sweep_over_the_whole_file_is_always_refused(
    kgc: EncryptMasterKey, members: list[RecipientKeys]
) -> None:
    """Every 29th byte of a two-chunk envelope, header and chunks alike, with a different bit each time."""
    blob = _seal(os.urandom(CHUNK + 900), kgc, members[:1])
    for n, pos in enumerate(range(0, len(blob), 29)):
        bad = bytearray(blob)
        bad[pos] ^= 1 << (n % 8)
        with pytest.raises(EnvelopeError):
            _open(bytes(bad), members[0])


@settings(max_examples=25, deadline=None)
@given(
    data=st.binary(max_size=3 * CHUNK + 50),
    chunk_size=st.sampled_from([CHUNK, 2 * CHUNK]),
    aead=st.sampled_from(["AES-256-GCM", "SM4-GCM"]),
    read_size=st.integers(min_value=1, max_value=5000),
)
def test_round_trip_property_with_short_reads(
    kgc: EncryptMasterKey, members: list[RecipientKeys], data: bytes, chunk_size: int, aead: str, read_size: int
) -> None:
    """Any content, chunk size and AEAD; the source hands out at most ``read_size`` bytes per read (a pipe)."""

    class Trickle(io.RawIOBase):
        def __init__(self, payload: bytes) -> None:
            self.src = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            chunk = self.src.read(min(len(buffer), read_size))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    out = io.BytesIO()
    source = Trickle(data)
    info = seal_stream(source, out, [members[0].public], kgc.public_key, aead=aead, chunk_size=chunk_size)  # type: ignore[arg-type]
    assert info.plaintext_bytes == len(data) and info.ciphertext_bytes == len(out.getvalue())
    assert b"".join(open_chunks(Trickle(out.getvalue()), members[0])) == data  # type: ignore[arg-type]
