"""Who may read a model file the federation writes: decided when it is written, from the chain.

An update and a global model are both sealed to every institution the ledger lists as active at
that moment (each recomputes the aggregation before it co-signs) and to the aggregator. The chain,
not a static file, says who is active, so a member removed on chain is left out of every file
written after its removal and a member added on chain is named from its first round on. The roster
supplies what the chain does not hold: each reader's ML-KEM-768 public key, filed under its SM9
identity, and the KGC's SM9 encryption master public key.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from fedledger.envelope import EnvelopeError, Recipient, RecipientKeys
from fedledger.envelope.recipients import KIND_RECIPIENT
from fedledger.fileio import atomic_write_text
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.errors import NoReaderCard, SealedModelError
from fedledger.sm9 import SM9Error
from fedledger.sm9.encryption_keys import EncryptMasterPublicKey, EncryptPrivateKey
from fedledger.sm9.keystore import read_header

log = logging.getLogger(__name__)


def sealing_master_key(consortium: Consortium) -> EncryptMasterPublicKey:
    """The KGC's SM9 encryption master public key the roster publishes."""
    if not consortium.encrypt_master_public:
        raise SealedModelError("the consortium roster has no SM9 encryption master public key (kgc setup issues one)")
    try:
        return _master_key(consortium.encrypt_master_public)
    except (SM9Error, ValueError) as exc:
        raise SealedModelError(f"the roster's SM9 encryption master public key is malformed: {exc}") from None


@functools.lru_cache(maxsize=8)
def _master_key(der_hex: str) -> EncryptMasterPublicKey:
    """One key object per published key: its fixed-base tables (g^r for every sealing) are built once
    per process, not at every vault a role makes (a sealing used to rebuild them: ~10 ms each)."""
    return EncryptMasterPublicKey.from_der(bytes.fromhex(der_hex))


def sealing_key_if_any(consortium: Consortium) -> EncryptMasterPublicKey | None:
    """The roster's SM9 encryption master public key, or None when the roster publishes none: the
    federation then does not seal (see ``ModelVault``)."""
    return sealing_master_key(consortium) if consortium.encrypt_master_public else None


def _card(identity: str, mlkem_hex: str) -> Recipient:
    try:
        return Recipient(identity.encode("utf-8"), bytes.fromhex(mlkem_hex))
    except (EnvelopeError, ValueError) as exc:
        raise SealedModelError(f"the roster's ML-KEM key of {identity!r} is malformed: {exc}") from None


def reader_card(consortium: Consortium, identity: str) -> Recipient:
    """The card the roster files under ``identity`` (a member's or the aggregator's)."""
    cards = {m.sm9_identity: m.mlkem768_public for m in consortium.members}
    if consortium.aggregator is not None:
        cards[consortium.aggregator.sm9_identity] = consortium.aggregator.mlkem768_public
    if identity not in cards:
        raise NoReaderCard(f"{identity!r} is neither a member nor the aggregator in the roster")
    if not cards[identity]:
        raise NoReaderCard(f"{identity!r} has no ML-KEM card registered in the roster (kgc register-card)")
    return _card(identity, cards[identity])


def model_readers(consortium: Consortium, active_identities: Iterable[str]) -> list[Recipient]:
    """The cards to seal a model file to: each active institution's (by SM9 identity), then the aggregator's.

    An active institution without a card in the roster is left out with a warning: it cannot read
    the file, but the federation goes on (no member can halt it by not registering a key).
    """
    if consortium.aggregator is None:
        raise SealedModelError("the consortium roster names no aggregator reader card (identity and ML-KEM key)")
    readers: list[Recipient] = []
    for identity in dict.fromkeys([*active_identities, consortium.aggregator.sm9_identity]):
        try:
            readers.append(reader_card(consortium, identity))
        except NoReaderCard as exc:
            if identity == consortium.aggregator.sm9_identity:
                raise
            log.warning("active institution %s cannot read this file: %s", identity, exc)
    return readers


class _Registered(Protocol):
    @property
    def sm9_id(self) -> str: ...


class ActiveSet(Protocol):
    """What the ledger client offers to say who is active now (``fedledger.chain.client.LedgerClient`` fits)."""

    def active_institutions(self) -> Sequence[_Registered]: ...


def readers_now(ledger: ActiveSet, consortium: Consortium) -> list[Recipient]:
    """``model_readers`` for the institutions the ledger lists as active at this moment (none when the
    roster publishes no encryption master key: nothing is sealed)."""
    if not consortium.encrypt_master_public:
        return []
    return model_readers(consortium, [i.sm9_id for i in ledger.active_institutions()])


READER_KEYS_FILE = "reader-keys.json"  # SM9 decryption key + ML-KEM-768 seed, password-encrypted, 0600
READER_CARD_FILE = "reader-card.json"  # the public card to register in the roster (`kgc register-card`)


def install_reader_keys(keys: RecipientKeys, keys_dir: Path, password: str) -> Path:
    """Save a party's reader keys (encrypted, 0600) and its public card next to them; returns the card."""
    keys.save(keys_dir / READER_KEYS_FILE, password)
    return atomic_write_text(keys_dir / READER_CARD_FILE, keys.public.to_json())


def load_reader_keys(path: Path, password: str) -> RecipientKeys | None:
    """The party's reader keys, or None when it was set up without any (it then opens no model file)."""
    return RecipientKeys.load(path, password) if path.is_file() else None


def reader_keys_from_kgc(encrypt_key: Path, kgc_password: str, identity: str | None = None) -> RecipientKeys:
    """A party's reader keys from ``encrypt_key``: the SM9 decryption key the KGC issued, with a fresh
    ML-KEM-768 key pair made here (so the KGC alone reads nothing), or a party's existing
    reader-keys file (a re-install keeps the ML-KEM key the roster already names)."""
    if read_header(encrypt_key)["kind"] == KIND_RECIPIENT:
        keys = RecipientKeys.load(encrypt_key, kgc_password)
    else:
        keys = RecipientKeys.generate(EncryptPrivateKey.load(encrypt_key, kgc_password))
    if identity is not None and keys.identity != identity.encode("utf-8"):
        raise SealedModelError(f"{encrypt_key} holds the decryption key of another identity, not {identity!r}")
    return keys
