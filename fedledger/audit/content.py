"""Is a ledger entry's content in the store, intact, with the ledger's SM3 digest? Judged once per CID.

Streaming every model file on every ``/summary`` makes the audit I/O-bound and lets one huge DAG
tie the server up, so a definitive verdict (present and matching, digest differs, corrupt, not a
CID) is kept in a bounded least-recently-used cache for ``recheck_after`` seconds (default: the
life of the process). A missing block or an unreadable store is not cached: it may be transient.
Every failure, whatever the store raises for an untrusted CID, becomes that entry's verdict.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from cryptography.hazmat.primitives import hashes

from fedledger.audit.models import Check
from fedledger.audit.params import cid_key
from fedledger.audit.views import hex0x
from fedledger.store import ContentStore, InvalidCIDError, StoreError
from fedledger.store.errors import BlockNotFoundError, ContentMismatchError

DEFAULT_CACHE_ENTRIES = 4096


class ContentChecker:
    """Reads content from ``store`` and compares its SM3 digest with the ledger's (cached per CID)."""

    def __init__(
        self,
        store: ContentStore,
        *,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
        recheck_after: float | None = None,
    ) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.store = store
        self.max_entries = max_entries
        self.recheck_after = recheck_after
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
            for chunk in self.store.get(cid):
                h.update(chunk)
                size += len(chunk)
            actual = h.finalize()
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
