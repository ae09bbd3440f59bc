"""The one place model files enter and leave the content store: sealed on the way in, opened and
checked on the way out.

``put_model`` seals a file to its readers (fresh content key, hybrid SM9-KEM + ML-KEM-768
wrapping; see docs/crypto.md) and stores the ciphertext; it returns the ciphertext's CID and the
plaintext's SM3. A ledger entry signs both, so neither can be swapped for another: a different
ciphertext has another CID, and a valid ciphertext of other content fails the plaintext digest in
``get_model``. Decrypted files are written 0600 and appear only when every chunk authenticated and
the digest matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from fedledger.digests import sm3_file
from fedledger.envelope import (
    DEFAULT_AEAD,
    EnvelopeAccessError,
    Recipient,
    RecipientKeys,
    open_chunks,
    seal_pieces,
    sealed_reader,
)
from fedledger.envelope.header import read_header
from fedledger.fileio import SECRET_MODE, atomic_writer
from fedledger.protocol.errors import ModelDigestMismatch, SealedModelError
from fedledger.sm9.encryption_keys import EncryptMasterPublicKey
from fedledger.store import ContentStore


class _HashingReader:
    """Reads a file while taking its SM3, so the digest is of exactly the bytes that were sealed."""

    def __init__(self, fh) -> None:  # type: ignore[no-untyped-def]
        self._fh = fh
        self._hash = hashes.Hash(hashes.SM3())

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._hash.update(data)
        return bytes(data)

    def digest(self) -> bytes:
        return self._hash.finalize()


def put_model(
    store: ContentStore,
    path: str | Path,
    readers: Sequence[Recipient],
    master_public: EncryptMasterPublicKey,
    *,
    aead: str = DEFAULT_AEAD,
) -> tuple[str, bytes]:
    """Seal ``path`` to ``readers`` and store the ciphertext; returns (ciphertext CID, plaintext SM3)."""
    with open(path, "rb") as fh:
        source = _HashingReader(fh)
        cid = store.put(sealed_reader(seal_pieces(source, readers, master_public, aead=aead)))  # type: ignore[arg-type]
        return cid, source.digest()


def get_model(
    store: ContentStore,
    cid: str,
    expected_digest: bytes,
    dest: str | Path,
    keys: RecipientKeys | Sequence[RecipientKeys],
) -> Path:
    """Fetch ``cid``, open it with ``keys`` into ``dest`` (0600) and check its plaintext SM3.

    A file already at ``dest`` with the expected digest is that content and is not fetched again.
    Raises ``SealedModelError`` (not a reader), ``ModelDigestMismatch``, or the store's and the
    envelope's own errors (missing or corrupt blocks, altered ciphertext); ``dest`` is then untouched.
    """
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and sm3_file(target) == expected_digest:
        return target
    digest = hashes.Hash(hashes.SM3())
    try:
        with store.open(cid) as src, atomic_writer(target, SECRET_MODE, durable=False) as out:
            for chunk in open_chunks(src, keys):
                digest.update(chunk)
                out.write(chunk)
            actual = digest.finalize()
            if actual != expected_digest:
                raise ModelDigestMismatch(
                    f"model {cid}: plaintext SM3 {actual.hex()} differs from the ledger's {expected_digest.hex()}"
                )
    except EnvelopeAccessError as exc:
        raise SealedModelError(f"model {cid} is not readable with this party's keys: {exc}") from None
    return target


def sealed_to(store: ContentStore, cid: str) -> set[tuple[bytes, bytes]]:
    """The (SM9 identity, ML-KEM key id) pairs ``cid``'s public header holds a wrapped key for."""
    with store.open(cid) as src:
        return {(entry.identity, entry.key_id) for entry in read_header(src).entries}


def readable_by(store: ContentStore, cid: str, readers: Sequence[Recipient]) -> bool:
    """Whether every reader (identity and current ML-KEM key) has an entry in ``cid``'s public header."""
    named = sealed_to(store, cid)
    return all((r.identity, r.key_id) in named for r in readers)


def _get_plain(store: ContentStore, cid: str, expected_digest: bytes, dest: str | Path) -> Path:
    """A plaintext model file (a federation whose roster publishes no encryption master key)."""
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and sm3_file(target) == expected_digest:
        return target
    store.get_to_path(cid, target)
    actual = sm3_file(target)
    if actual != expected_digest:
        target.unlink(missing_ok=True)
        raise ModelDigestMismatch(f"model {cid}: SM3 {actual.hex()} differs from the ledger's {expected_digest.hex()}")
    return target


@dataclass(frozen=True)
class ModelVault:
    """One party's access to model files: its store, the KGC's SM9 encryption master public key and
    its own reader keys (None: it can seal, but open nothing).

    ``master_public`` None is a federation that does not seal (its roster publishes no encryption
    master key, e.g. one provisioned before sealing): files go into the store as they are and come
    out checked against the ledger's digest only.
    """

    store: ContentStore
    master_public: EncryptMasterPublicKey | None
    keys: RecipientKeys | None

    @property
    def sealing(self) -> bool:
        return self.master_public is not None

    def put(self, path: str | Path, readers: Sequence[Recipient]) -> tuple[str, bytes]:
        if self.master_public is None:
            return self.store.put(Path(path)), sm3_file(path)
        return put_model(self.store, path, readers, self.master_public)

    def get(self, cid: str, expected_digest: bytes, dest: str | Path) -> Path:
        if self.master_public is None:
            return _get_plain(self.store, cid, expected_digest, dest)
        if self.keys is None:
            raise SealedModelError(f"model {cid} is sealed and this party holds no reader keys (init --encrypt-key)")
        return get_model(self.store, cid, expected_digest, dest, self.keys)

    def readers_of(self, cid: str) -> set[str] | None:
        """The identities ``cid``'s public header names; None when the federation does not seal."""
        if self.master_public is None:
            return None
        return {identity.decode("utf-8", "replace") for identity, _key_id in sealed_to(self.store, cid)}

    def round_readers(self, base_cid: str, now: Sequence[Recipient]) -> list[Recipient]:
        """The readers every update of a round must be sealed to: those of ``now`` (the chain's
        readers at check time) that the round's base model is also sealed to (the readers when the
        round opened). A member added or removed mid-round is not required, so an honest update
        sealed before or after the change still qualifies; none when the federation does not seal."""
        if self.master_public is None:
            return []
        at_open = sealed_to(self.store, base_cid)
        return [r for r in now if (r.identity, r.key_id) in at_open]

    def reseal_for(self, cid: str, expected_digest: bytes, readers: Sequence[Recipient], workdir: Path) -> str:
        """``cid`` if all ``readers`` can open it, else the CID of the same plaintext sealed to them.

        How a member added since ``cid`` was written reads it from its first round on; the ledger's
        digest (the plaintext's) is unchanged, so the base of a round stays bound to the signed record.
        """
        if self.master_public is None or readable_by(self.store, cid, readers):
            return cid
        plain = self.get(cid, expected_digest, workdir / "reseal.plain")
        try:
            new_cid, digest = self.put(plain, readers)
        finally:
            plain.unlink(missing_ok=True)
        if digest != expected_digest:
            raise ModelDigestMismatch(f"model {cid} changed while it was re-sealed")
        return new_cid
