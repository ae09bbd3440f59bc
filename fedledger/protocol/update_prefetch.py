"""Each update of the open round fetched and opened as its ``UpdateSubmitted`` log arrives, so the
round pipeline (the aggregator's alignment, every node's recomputation before it commits) finds the
files ready instead of fetching n of them after the last submit.

A background worker fetches each one while other members still train; the pipeline
(``fedledger.protocol.round_check``, unchanged) asks a :class:`PrefetchedVault`, which hands over a
prefetched file only if it is the plaintext the ledger entry names (its SM3 is checked again), and
otherwise fetches as before. A prefetch that fails is left to the pipeline, which names the reason
in the manifest's terms. A node registers its own update as it submits it: its plaintext is on disk.
Given a :class:`VerifiedSignatures`, the worker also verifies each entry's SM9 signature as it lands
(its own too), so the pipeline after the last submit finds them verified.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedledger.chain.client import LedgerClient, UpdateSubmitted
from fedledger.digests import sm3_file
from fedledger.protocol.entries import UpdateEntry
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.signature_cache import VerifiedSignatures
from fedledger.sm9 import SignMasterPublicKey

log = logging.getLogger(__name__)

Key = tuple[str, bytes]  # (ciphertext CID, plaintext SM3) as the ledger entry names them
PENDING_WAIT_SECONDS = 120.0  # a safety bound only: a fetch under way always ends (done or failed)


class PrefetchedFiles:
    """Plaintext files already fetched and checked, per round; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rounds: dict[int, dict[Key, Path]] = {}
        self._pending: dict[Key, threading.Event] = {}  # being fetched now: asking again waits for it

    def begin(self, cid: str, digest: bytes) -> bool:
        """Mark (cid, digest) as being fetched; False if it already is."""
        with self._lock:
            if (cid, digest) in self._pending:
                return False
            self._pending[(cid, digest)] = threading.Event()
            return True

    def end(self, cid: str, digest: bytes) -> None:
        """The fetch begun for (cid, digest) is over (done or failed): whoever waits on it looks now."""
        with self._lock:
            done = self._pending.pop((cid, digest), None)
        if done is not None:
            done.set()

    def add(self, round_index: int, cid: str, digest: bytes, path: Path) -> None:
        with self._lock:
            for old in [r for r in self._rounds if r < round_index - 1]:
                del self._rounds[old]  # finished rounds: nothing will ask for their updates again
            self._rounds.setdefault(round_index, {})[(cid, digest)] = path

    def find(self, cid: str, digest: bytes) -> Path | None:
        """The prefetched file, waiting for a fetch of it under way (rather than fetching it twice)."""
        with self._lock:
            pending = self._pending.get((cid, digest))
        if pending is not None:
            pending.wait(PENDING_WAIT_SECONDS)
        with self._lock:
            for files in self._rounds.values():
                if (cid, digest) in files:
                    return files[(cid, digest)]
        return None

    def has(self, round_index: int, cid: str, digest: bytes) -> bool:
        with self._lock:
            return (cid, digest) in self._rounds.get(round_index, {})


@dataclass(frozen=True)
class PrefetchedVault(ModelVault):
    """A vault that serves a prefetched plaintext (hard-linked, its SM3 checked) before fetching."""

    prefetched: PrefetchedFiles = field(default_factory=PrefetchedFiles)

    @classmethod
    def over(cls, vault: ModelVault, prefetched: PrefetchedFiles) -> PrefetchedVault:
        """``vault`` (same store and keys) serving ``prefetched`` first."""
        return cls(vault.store, vault.master_public, vault.keys, prefetched)

    def get(self, cid: str, expected_digest: bytes, dest: str | Path) -> Path:
        found = self.prefetched.find(cid, expected_digest)
        target = Path(dest)
        if found is not None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                os.link(found, target)
                if sm3_file(target) == expected_digest:
                    return target
                target.unlink(missing_ok=True)  # changed on disk since: fetch it for real
            except OSError:
                target.unlink(missing_ok=True)
        return super().get(cid, expected_digest, dest)


class UpdatePrefetcher:
    """Listens to the ledger's logs; for each ``UpdateSubmitted`` reads the round's new entries (the
    ledger client's log cache reads only new blocks) and fetches and opens each into ``folder(round)``;
    with ``signatures`` (the master public key and the role's cache) it verifies each entry's signature."""

    def __init__(
        self,
        ledger: LedgerClient,
        vault: Callable[[], ModelVault],
        folder: Callable[[int], Path],
        files: PrefetchedFiles,
        signatures: tuple[SignMasterPublicKey, VerifiedSignatures] | None = None,
    ) -> None:
        self.ledger = ledger
        self.vault = vault
        self.folder = folder
        self.files = files
        self.signatures = signatures
        self._identities: dict[str, str] = {}  # address (lower case) -> SM9 id, read from the roster
        self._tried: set[tuple[int, str, bytes]] = set()  # (round, address, signature) verified once, good or bad
        self.topic = ledger.event_topic("UpdateSubmitted")
        self._rounds: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="update-prefetch", daemon=True)

    def on_log(self, entry: dict[str, Any]) -> None:
        """An event source's listener: queue the round of every ``UpdateSubmitted`` log."""
        topics = [str(t).lower() for t in entry.get("topics") or []]
        if len(topics) > 1 and topics[0] == self.topic:
            self._rounds.put(int(topics[1], 16))

    def __enter__(self) -> UpdatePrefetcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._rounds.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while (round_index := self._rounds.get()) is not None:
            try:
                self.prefetch(round_index)
            except Exception as exc:  # the recomputation fetches whatever is missing
                log.debug("prefetching round %d updates failed: %s", round_index, exc)

    def prefetch(self, round_index: int) -> None:
        """Fetch and open every entry of ``round_index`` not prefetched yet (and verify its signature)."""
        for event in self.ledger.updates_submitted(round=round_index):
            if not self.files.has(round_index, event.cid, event.digest) and self.files.begin(event.cid, event.digest):
                try:
                    self._fetch(round_index, event)
                finally:
                    self.files.end(event.cid, event.digest)
            self._verify(event)

    def _fetch(self, round_index: int, event: UpdateSubmitted) -> None:
        name = f"{event.institution.lower()}-{event.digest.hex()[:16]}.safetensors"  # never the CID: untrusted text
        path = self.folder(round_index) / name
        try:
            self.vault().get(event.cid, event.digest, path)
        except Exception as exc:  # unavailable, not sealed to us, wrong digest: the recomputation says so
            log.debug("prefetch of %s for round %d failed: %s", event.cid, round_index, exc)
            return
        self.files.add(round_index, event.cid, event.digest, path)

    def _verify(self, event: UpdateSubmitted) -> None:
        """Verify the entry's signature into the cache; anything amiss is the pipeline's to judge."""
        if self.signatures is None:
            return
        mpk, verified = self.signatures
        address = event.institution.lower()
        tried = (event.round, address, bytes(event.sm9_signature))
        if tried in self._tried:  # a bad one too: the pipeline names it, no use verifying it at every log
            return
        if address not in self._identities:  # a member new to this role: the roster says who it is
            self._identities = {m.address.lower(): m.sm9_id for m in self.ledger.roster()}
        identity = self._identities.get(address)
        if identity is not None:
            entry = UpdateEntry.from_event(self.ledger.chain_id, self.ledger.address, event)
            verified.verify_quietly(mpk, identity, entry.message(), bytes(event.sm9_signature))
            self._tried = {t for t in self._tried if t[0] >= event.round - 1} | {tried}
