"""Is a ledger entry's content in the store, intact, with the ledger's SM3 digest? Judged once per CID.

Model files are sealed (fedledger.envelope): the ledger's digest is the plaintext's, the CID the
ciphertext's. Without reader keys the audit checks what anyone can: the content is present, every
block matches the CID, it is an envelope, and for whom (readers' identities and ML-KEM key ids);
the verdict says the plaintext digest was not checked. With a member's reader keys (member mode)
it opens the envelope and compares the plaintext's SM3 with the ledger's.

Streaming every model file on every ``/summary`` makes the audit I/O-bound and lets one huge DAG
tie the server up, so a definitive verdict (present and matching, digest differs, corrupt, not a
CID) is kept in a bounded least-recently-used cache for ``recheck_after`` seconds (default: the
life of the process). A missing block or an unreadable store is not cached: it may be transient.
Every failure, whatever the store raises for an untrusted CID, becomes that entry's verdict.
"""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict

from cryptography.hazmat.primitives import hashes

from fedledger.audit.models import Check
from fedledger.audit.params import cid_key
from fedledger.audit.views import hex0x
from fedledger.digests import sm3_chunks
from fedledger.envelope import EnvelopeAccessError, EnvelopeError, RecipientKeys, open_chunks
from fedledger.envelope.header import MAGIC as ENVELOPE_MAGIC
from fedledger.envelope.header import read_header
from fedledger.store import ContentStore, InvalidCIDError, StoreError
from fedledger.store.errors import BlockNotFoundError, ContentMismatchError

DEFAULT_CACHE_ENTRIES = 4096
_HEAD_BYTES = 2 << 20  # enough for an envelope header with 1024 readers


class ContentChecker:
    """Reads content from ``store`` and compares its SM3 digest with the ledger's (cached per CID)."""

    def __init__(
        self,
        store: ContentStore,
        *,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
        recheck_after: float | None = None,
        reader_keys: RecipientKeys | None = None,
    ) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.store = store
        self.max_entries = max_entries
        self.recheck_after = recheck_after
        self.reader_keys = reader_keys
        self.reads = 0  # how many times content was streamed from the store
        self._cache: OrderedDict[tuple[object, bytes], tuple[float, Check]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many verdicts are cached now."""
        return len(self._cache)

    def check(self, cid: str, digest: bytes) -> Check:
        key = (cid_key(cid), bytes(digest))
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and (self.recheck_after is None or now - cached[0] < self.recheck_after):
                self._cache.move_to_end(key)
                return cached[1]
        verdict, final = self._read(cid, digest)
        if final and self.max_entries:
            with self._lock:
                self._cache[key] = (now, verdict)
                self._cache.move_to_end(key)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return verdict

    def _read(self, cid: str, digest: bytes) -> tuple[Check, bool]:
        """(verdict, whether it is definitive) from streaming the content once."""
        if not isinstance(cid, str) or not cid.strip():
            return Check(ok=False, detail=f"the ledger's CID {cid!r} is blank, not a CID"), True
        self.reads += 1
        try:
            h = hashes.Hash(hashes.SM3())
            size = 0
            head = b""
            for chunk in self.store.get(cid):
                h.update(chunk)
                size += len(chunk)
                if len(head) < _HEAD_BYTES:
                    head += chunk[: _HEAD_BYTES - len(head)]
            actual = h.finalize()
            if actual != digest and head.startswith(ENVELOPE_MAGIC):
                return self._sealed(cid, digest, size, actual, head)
        except InvalidCIDError:
            return Check(ok=False, detail=f"the ledger's CID {cid!r} is not a valid CID"), True
        except BlockNotFoundError as exc:
            return Check(ok=False, detail=f"content {cid} is missing from the store: {exc}"), False
        except ContentMismatchError as exc:
            return Check(ok=False, detail=f"content {cid} is corrupt in the store: {exc}"), True
        except StoreError as exc:
            return Check(ok=False, detail=f"content {cid} could not be read from the store: {exc}"), False
        except Exception as exc:  # an untrusted CID must not crash the audit: it is this entry's verdict
            return Check(ok=False, detail=f"content {cid!r} could not be checked: {type(exc).__name__}: {exc}"), False
        if actual != digest:
            detail = (
                f"content {cid} is present ({size} bytes) but its SM3 digest {hex0x(actual)} "
                f"differs from the ledger's {hex0x(digest)}"
            )
            return Check(ok=False, detail=detail), True
        return Check(ok=True, detail=f"content {cid} present ({size} bytes), SM3 digest matches the ledger"), True

    def _sealed(self, cid: str, digest: bytes, size: int, ciphertext_sm3: bytes, head: bytes) -> tuple[Check, bool]:
        """The verdict on a sealed file: keyless (what anyone sees) or, as a reader, the plaintext digest."""
        try:
            entries = read_header(io.BytesIO(head)).entries
        except EnvelopeError as exc:
            return Check(ok=False, detail=f"content {cid} is not a readable envelope: {exc}"), True
        names = ", ".join(f"{e.identity.decode('utf-8', 'replace')} ({e.key_id.hex()[:8]})" for e in entries)
        seen = f"content {cid} present ({size} bytes, ciphertext SM3 {hex0x(ciphertext_sm3)}), sealed to {names}"
        keys = self.reader_keys
        if keys is None or keys.identity not in {e.identity for e in entries}:
            return Check(ok=True, detail=f"{seen}; plaintext digest not checked (no reader key)"), True
        try:
            with self.store.open(cid) as src:
                plaintext_sm3 = sm3_chunks(open_chunks(src, keys))
        except EnvelopeAccessError:  # named, but wrapped to another (rotated) ML-KEM key of this reader
            return Check(ok=True, detail=f"{seen}; plaintext digest not checked (wrapped to another key)"), True
        except EnvelopeError as exc:
            return Check(ok=False, detail=f"{seen}, but it does not open: {exc}"), True
        if plaintext_sm3 != digest:
            detail = f"{seen}; its plaintext SM3 {hex0x(plaintext_sm3)} differs from the ledger's {hex0x(digest)}"
            return Check(ok=False, detail=detail), True
        return Check(ok=True, detail=f"{seen}; plaintext SM3 digest matches the ledger (opened as a reader)"), True
