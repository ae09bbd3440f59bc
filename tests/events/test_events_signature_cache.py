"""Every SM9 signature is verified once per role: the round pipeline, the prefetcher, the approval and
the next round's base check share one cache, and the cache only ever remembers exact successes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles
from fedledger.digests import sm3
from fedledger.protocol import UpdateEntry
from fedledger.protocol.manifest import ReasonCode
from fedledger.protocol.round_check import EntryExcluded, LedgerUpdate, check_signature
from fedledger.protocol.signature_cache import VerifiedSignatures
from fedledger.protocol.update_prefetch import PrefetchedFiles, PrefetchedVault, UpdatePrefetcher
from fedledger.sm9 import SignMasterKey, SM9Error, extract_sign_key, sign
from fedledger.store.local import LocalStore

MASTER = SignMasterKey.generate()
MPK = MASTER.public_key
CONTRACT = "0x" + "22" * 20


def _signed(identity: str, message: bytes) -> bytes:
    return sign(extract_sign_key(MASTER, identity), message).to_der()


def test_only_the_exact_bytes_that_verified_are_taken_from_the_cache() -> None:
    cache = VerifiedSignatures()
    good = _signed("clinic-a", b"entry")
    assert cache.verify(MPK, "clinic-a", b"entry", good)
    assert cache.verify(MPK, "clinic-a", b"entry", good) and cache.verifications == 1  # a hit: no pairing
    other = _signed("clinic-a", b"another entry")
    # Each differing input is a new key, verified afresh and refused: the cache never vouches for it.
    assert not cache.verify(MPK, "clinic-a", b"entrY", good)
    assert not cache.verify(MPK, "clinic-b", b"entry", good)
    assert not cache.verify(MPK, "clinic-a", b"entry", other)
    assert not cache.verify(SignMasterKey.generate().public_key, "clinic-a", b"entry", good)
    assert cache.verifications == 5
    assert not cache.verify(MPK, "clinic-a", b"entrY", good) and cache.verifications == 6  # failures are not kept
    with pytest.raises(SM9Error):
        cache.verify(MPK, "clinic-a", b"entry", b"\x30\x00")
    cache.verify_quietly(MPK, "clinic-a", b"entry", b"\x30\x00")  # the background's way: no raise, no entry


def test_the_cache_is_bounded() -> None:
    cache = VerifiedSignatures(max_entries=2)
    signatures = {m: _signed("clinic-a", m) for m in (b"1", b"2", b"3")}
    for message, der in signatures.items():
        assert cache.verify(MPK, "clinic-a", message, der)
    assert cache.verify(MPK, "clinic-a", b"1", signatures[b"1"]) and cache.verifications == 4  # evicted: again


def test_the_pipeline_check_skips_a_verified_signature_and_still_refuses_a_changed_entry() -> None:
    entry = UpdateEntry(31337, CONTRACT, 0, "0x" + "01" * 20, "QmA", sm3(b"u"), 10, 500_000, sm3(b"map"))
    update = LedgerUpdate(entry, _signed("clinic-a", entry.message()), "clinic-a")
    cache = VerifiedSignatures()
    check_signature(MPK, update, cache)
    check_signature(MPK, update, cache)
    assert cache.verifications == 1
    for changed in (
        dataclasses.replace(update, entry=dataclasses.replace(entry, num_samples=11)),  # weight raised
        dataclasses.replace(update, sm9_identity="clinic-b"),
    ):
        with pytest.raises(EntryExcluded) as refused:
            check_signature(MPK, changed, cache)
        assert refused.value.code is ReasonCode.SIGNATURE_INVALID
    with pytest.raises(EntryExcluded) as malformed:
        check_signature(MPK, dataclasses.replace(update, signature_der=b"\x30\x00"), cache)
    assert malformed.value.code is ReasonCode.SIGNATURE_INVALID and "malformed" in malformed.value.reason


def test_the_prefetcher_verifies_each_entry_as_it_lands(
    ledger: LedgerClient, dev_accounts: DevRoles, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    cache = VerifiedSignatures()
    vault = PrefetchedVault(store, None, None, PrefetchedFiles())
    prefetcher = UpdatePrefetcher(ledger, lambda: vault, lambda r: tmp_path / f"r{r}", PrefetchedFiles(), (MPK, cache))
    ledger.open_round(dev_accounts.aggregator, 0, "QmBase", sm3(b"base"))
    identities = {m.address.lower(): m.sm9_id for m in ledger.roster()}
    updates = []
    for i, account in enumerate(dev_accounts.institutions[:3]):
        content = b"update %d" % i
        (tmp_path / f"u{i}").write_bytes(content)
        cid = store.put(tmp_path / f"u{i}")
        entry = UpdateEntry(ledger.chain_id, ledger.address, 0, account.address, cid, sm3(content), 10, 500_000,
                            sm3(b"map"))  # fmt: skip
        identity = identities[account.address.lower()]
        signature = _signed(identity, entry.message()) if i < 2 else _signed(identity, b"something else")
        ledger.submit_update(account, 0, cid, sm3(content), sm3(b"map"), 10, 500_000, signature)
        updates.append(LedgerUpdate(entry, signature, identity))
    prefetcher.prefetch(0)
    assert cache.verifications == 3
    prefetcher.prefetch(0)  # a later log: the entries already verified are not verified again
    assert cache.verifications == 3
    for good in updates[:2]:
        check_signature(MPK, good, cache)
    assert cache.verifications == 3
    with pytest.raises(EntryExcluded):  # the bad one was not remembered: checked again, refused
        check_signature(MPK, updates[2], cache)
    assert cache.verifications == 4
