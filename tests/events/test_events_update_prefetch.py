"""A node opens each update of the round as its ledger entry lands, and its recomputation uses that
file only while it is exactly the plaintext the entry names; otherwise it fetches as before."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles
from fedledger.digests import sm3, sm3_file
from fedledger.protocol.update_prefetch import PrefetchedFiles, PrefetchedVault, UpdatePrefetcher
from fedledger.store.local import LocalStore

SIG = bytes(range(1, 105))


def _plain_vault(store: LocalStore, files: PrefetchedFiles) -> PrefetchedVault:
    return PrefetchedVault(store, None, None, files)  # a federation that does not seal: SM3 checks only


def _stored(store: LocalStore, folder: Path, name: str, content: bytes) -> tuple[str, bytes]:
    path = folder / name
    path.write_bytes(content)
    return store.put(path), sm3(content)


def test_a_prefetched_file_is_handed_over_only_while_it_is_the_entrys_plaintext(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    cid, digest = _stored(store, tmp_path, "update.bin", b"the real update")
    files = PrefetchedFiles()
    prefetched = tmp_path / "prefetched.bin"
    prefetched.write_bytes(b"the real update")
    files.add(0, cid, digest, prefetched)
    vault = _plain_vault(store, files)

    got = vault.get(cid, digest, tmp_path / "out" / "a.bin")
    assert os.stat(got).st_ino == os.stat(prefetched).st_ino  # handed over, not fetched

    prefetched.write_bytes(b"altered on disk!")  # same length, other bytes
    got = vault.get(cid, digest, tmp_path / "out" / "b.bin")
    assert sm3_file(got) == digest and os.stat(got).st_ino != os.stat(prefetched).st_ino  # fetched again
    assert vault.get(cid, digest, tmp_path / "out" / "c.bin").read_bytes() == b"the real update"

    other_cid, other_digest = _stored(store, tmp_path, "other.bin", b"another update")
    files.add(0, other_cid, digest, prefetched)  # a file filed under the wrong digest is never used for another
    assert vault.get(other_cid, other_digest, tmp_path / "out" / "d.bin").read_bytes() == b"another update"


def test_updates_are_fetched_as_their_entries_land(
    ledger: LedgerClient, dev_accounts: DevRoles, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    files = PrefetchedFiles()
    vault = _plain_vault(store, PrefetchedFiles())
    prefetcher = UpdatePrefetcher(ledger, lambda: vault, lambda r: tmp_path / f"round-{r}", files)
    ledger.open_round(dev_accounts.aggregator, 0, "QmBase", sm3(b"base"))
    entries = []
    for i, account in enumerate(dev_accounts.institutions[:3]):
        cid, digest = _stored(store, tmp_path, f"u{i}.bin", b"update %d" % i)
        ledger.submit_update(account, 0, cid, digest, sm3(b"map"), 10, 500_000, SIG)
        entries.append((cid, digest))
    missing = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"  # an entry whose content is nowhere
    ledger.submit_update(dev_accounts.institutions[3], 0, missing, sm3(b"gone"), sm3(b"map"), 10, 500_000, SIG)

    prefetcher.prefetch(0)
    for cid, digest in entries:
        found = files.find(cid, digest)
        assert found is not None and sm3_file(found) == digest
        assert found.parent == tmp_path / "round-0"
    assert files.find(missing, sm3(b"gone")) is None  # left to the recomputation, which names the reason


def test_a_file_being_prefetched_is_waited_for_not_fetched_twice(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    cid, digest = _stored(store, tmp_path, "update.bin", b"the real update")
    files = PrefetchedFiles()
    vault = _plain_vault(store, files)
    assert files.begin(cid, digest) and not files.begin(cid, digest)  # one fetch at a time per file
    prefetched = tmp_path / "prefetched.bin"
    prefetched.write_bytes(b"the real update")

    def finish() -> None:
        time.sleep(0.3)  # the prefetcher is still fetching when the pipeline asks
        files.add(0, cid, digest, prefetched)
        files.end(cid, digest)

    worker = threading.Thread(target=finish)
    worker.start()
    got = vault.get(cid, digest, tmp_path / "out" / "a.bin")
    worker.join()
    assert os.stat(got).st_ino == os.stat(prefetched).st_ino  # waited for it, then handed over

    other_cid, other_digest = _stored(store, tmp_path, "other.bin", b"another update")
    assert files.begin(other_cid, other_digest)
    files.end(other_cid, other_digest)  # that prefetch failed: nothing filed
    assert vault.get(other_cid, other_digest, tmp_path / "out" / "b.bin").read_bytes() == b"another update"
