"""SM9 signatures a role has already verified, so no signature is checked twice.

A round checks the same signatures several times: every entry's signature when its update is
prefetched, again in the round pipeline (``round_check``) by the aggregator and by each node before
it commits, and the consortium's threshold signature when a node approves the record and again when
the next round starts from that posted model. A pairing costs milliseconds; a lookup costs nothing.

Only successes are kept, keyed by everything ``verify`` reads: the master public key, the identity,
the message and the signature's bytes. A different byte anywhere is a different key and is verified
afresh, so the cache can never turn a bad signature into a good one. It is bounded (oldest out).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict

from fedledger.sm9 import Signature, SignMasterPublicKey, SM9Error, verify

MAX_ENTRIES = 4096  # a round holds n entries and one threshold signature: far more than any role keeps


def _key(mpk: SignMasterPublicKey, identity: str | bytes, message: bytes, signature_der: bytes) -> bytes:
    digest = hashlib.sha256()
    name = identity.encode("utf-8") if isinstance(identity, str) else bytes(identity)
    for part in (mpk.to_der(), name, message, signature_der):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.digest()


class VerifiedSignatures:
    """A bounded, thread-safe record of signatures that verified; ``verify`` consults it first."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self.verifications = 0  # pairings actually run (what the cache saves is visible in tests)

    def verify(self, mpk: SignMasterPublicKey, identity: str | bytes, message: bytes, signature_der: bytes) -> bool:
        """``fedledger.sm9.verify`` of the DER ``signature_der``, run at most once per success.

        A malformed signature raises ``SM9Error`` as ``Signature.from_der`` does, and is not kept.
        """
        key = _key(mpk, identity, bytes(message), bytes(signature_der))
        with self._lock:
            if key in self._good:
                self._good.move_to_end(key)
                return True
        signature = Signature.from_der(bytes(signature_der))
        with self._lock:
            self.verifications += 1
        if not verify(mpk, identity, message, signature):
            return False
        with self._lock:
            self._good[key] = None
            while len(self._good) > self.max_entries:
                self._good.popitem(last=False)
        return True

    def verify_quietly(
        self, mpk: SignMasterPublicKey, identity: str | bytes, message: bytes, signature_der: bytes
    ) -> None:
        """Verify ahead of need (a background prefetch): a bad or malformed signature is left to the
        pipeline, which names it in the manifest's terms."""
        with contextlib.suppress(SM9Error):
            self.verify(mpk, identity, message, signature_der)
