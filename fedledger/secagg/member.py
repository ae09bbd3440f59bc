"""A member's side of secure aggregation (Bonawitz et al. 2017), phase by phase.

Phases: (1) advertise a channel key and a mask key; (2) agree pairwise mask secrets, split the
self-mask seed and the mask-key material t-of-n, seal each recipient's shares to it, publish
commitments; (3) send the masked input; (4) reveal, per other member, the seed share if it
survived or the key share if it dropped, never both, for one published survivor set only.
Every input from others is checked; a dealer whose share contradicts its commitment is named.
"""

from __future__ import annotations

import secrets

import numpy as np

from fedledger.secagg.errors import CheatingMember, InsufficientShares, SecAggError, SecAggInputError
from fedledger.secagg.hybrid import HybridKeyPair, encapsulate, open_sealed, pair_secret, seal
from fedledger.secagg.masks import apply_pair_mask, self_mask
from fedledger.secagg.messages import (
    AdvertiseKeys,
    MaskedInput,
    Reveal,
    RoundSetup,
    ShareKeys,
    secret_commitment,
    share_commitment,
    survivors_digest,
)
from fedledger.secagg.ring import encode, to_ring
from fedledger.secagg.shamir import split


def pack_shares(seed_share: bytes, key_share: bytes) -> bytes:
    return len(seed_share).to_bytes(8, "big") + seed_share + key_share


def unpack_shares(data: bytes) -> tuple[bytes, bytes]:
    length = int.from_bytes(data[:8], "big")
    if len(data) < 8 + length:
        raise SecAggInputError("sealed shares are truncated")
    return data[8 : 8 + length], data[8 + length :]


class RoundKeys:
    """A member's round-scoped secrets: channel key, mask key, self-mask seed (memory only).

    Why separate from :class:`Member`: in the round protocol a member advertises its keys before
    the round's setup (who takes part, with which weights and index maps) is fixed.
    """

    def __init__(self) -> None:
        self.channel = HybridKeyPair.generate()
        self.mask = HybridKeyPair.generate()
        self.seed = secrets.token_bytes(32)

    def advert(self, round_index: int, member: int) -> AdvertiseKeys:
        return AdvertiseKeys(round_index, member, self.channel.public, self.mask.public)

    def __repr__(self) -> str:
        return "RoundKeys(<secret>)"


class Member:
    """One member in one round; holds its secrets in memory only (they are round-scoped)."""

    def __init__(self, member: int, setup: RoundSetup, keys: RoundKeys | None = None) -> None:
        if member not in setup.weights:
            raise SecAggInputError(f"member {member} is not in the round's roster")
        self.id = member
        self.setup = setup
        keys = keys or RoundKeys()
        self._channel = keys.channel
        self._mask = keys.mask
        self._seed = keys.seed
        self._adverts: dict[int, AdvertiseKeys] = {}
        self._pair_kem: dict[int, tuple[bytes, bytes]] = {}  # j > i: (ML-KEM secret, ciphertext)
        self._pair_secrets: dict[int, bytes] = {}
        self._received: dict[int, tuple[bytes, bytes]] = {}  # dealer: (seed share, key share)
        self._revealed_for: bytes | None = None
        self._shares_received = False

    def advertise(self) -> AdvertiseKeys:
        return AdvertiseKeys(self.setup.round_index, self.id, self._channel.public, self._mask.public)

    def share_keys(self, adverts: dict[int, AdvertiseKeys]) -> ShareKeys:
        """Phase 2, given the published phase-1 messages (members that advertised: U1)."""
        rnd, t = self.setup.round_index, self.setup.threshold
        for m, advert in adverts.items():
            if advert.member != m or advert.round_index != rnd or m not in self.setup.weights:
                raise CheatingMember(m, "advertised keys for another member, round or roster")
        if adverts.get(self.id) != self.advertise():
            raise SecAggInputError("the published keys do not include this member's own advert")
        if len(adverts) < t:
            raise SecAggError(f"only {len(adverts)} members advertised keys, threshold is {t}")
        if self._adverts:
            raise SecAggError("keys were already shared this round")
        u1 = sorted(adverts)
        pair_kem, sealed = {}, {}
        for j in (j for j in u1 if j > self.id):
            try:
                pair_kem[j] = encapsulate(adverts[j].mask)
            except SecAggInputError as exc:
                raise CheatingMember(j, "advertised a malformed ML-KEM key") from exc
        material = self._mask.secret + b"".join(pair_kem[j][0] for j in sorted(pair_kem))
        seed_shares, key_shares = split(self._seed, t, u1), split(material, t, u1)
        for j in (j for j in u1 if j != self.id):
            try:
                shares = pack_shares(seed_shares[j], key_shares[j])
                sealed[j] = seal(self._channel, adverts[j].channel, (self.id, j), rnd, shares)
            except SecAggInputError as exc:
                raise CheatingMember(j, "advertised a malformed channel key") from exc
        self._adverts, self._pair_kem = dict(adverts), pair_kem
        self._received = {self.id: (seed_shares[self.id], key_shares[self.id])}
        return ShareKeys(
            rnd,
            self.id,
            {j: ct for j, (_, ct) in pair_kem.items()},
            sealed,
            {j: share_commitment(rnd, self.id, j, "seed", s) for j, s in seed_shares.items()},
            {j: share_commitment(rnd, self.id, j, "key", s) for j, s in key_shares.items()},
            secret_commitment(rnd, self.id, "seed", self._seed),
            secret_commitment(rnd, self.id, "key", material),
        )

    def receive_shares(self, share_messages: dict[int, ShareKeys]) -> None:
        """Phase 2 end: open this member's shares from every dealer in U2, check them, agree pair secrets."""
        rnd = self.setup.round_index
        if not self._adverts or self._shares_received:
            raise SecAggError("shares can be received once, after this member shared its own")
        if self.id not in share_messages:
            raise SecAggInputError("the published shares do not include this member's own")
        if len(share_messages) < self.setup.threshold:
            raise SecAggError(f"only {len(share_messages)} members shared keys, threshold is {self.setup.threshold}")
        received, pair_secrets = dict(self._received), {}
        for d, message in share_messages.items():
            if d not in self._adverts or message.member != d or message.round_index != rnd:
                raise CheatingMember(d, "shares from a member that did not advertise keys, or for another round")
            if d == self.id:
                continue
            if self.id not in message.sealed_shares:
                raise CheatingMember(d, f"no shares for member {self.id}")
            try:
                opened = open_sealed(self._channel, self._adverts[d].channel, (d, self.id), rnd,
                                     message.sealed_shares[self.id])
                seed_share, key_share = unpack_shares(opened)
            except SecAggInputError as exc:
                raise CheatingMember(d, f"sealed shares for member {self.id} do not open") from exc
            committed = (message.seed_share_commitments.get(self.id), message.key_share_commitments.get(self.id))
            expected = (share_commitment(rnd, d, self.id, "seed", seed_share),
                        share_commitment(rnd, d, self.id, "key", key_share))
            if committed != expected:
                raise CheatingMember(d, f"shares for member {self.id} contradict its commitments")
            received[d] = (seed_share, key_share)
            pair_secrets[d] = self._agree(d, message)
        self._received, self._pair_secrets = received, pair_secrets  # all checked: now commit
        self._shares_received = True

    def _agree(self, j: int, message: ShareKeys) -> bytes:
        mine, theirs = self._mask.public, self._adverts[j].mask
        try:
            dh = self._mask.dh(theirs)
        except SecAggInputError as exc:
            raise CheatingMember(j, "advertised a degenerate X25519 mask key") from exc
        if self.id < j:
            kem_secret, ciphertext = self._pair_kem[j]
            return pair_secret(dh, kem_secret, ciphertext, mine, theirs, (self.id, j), self.setup.round_index)
        theirs_ct = message.pair_ciphertexts.get(self.id)
        if theirs_ct is None:
            raise CheatingMember(j, f"no pair ciphertext for member {self.id}")
        try:
            kem_secret = self._mask.decapsulate(theirs_ct)
        except SecAggInputError as exc:
            raise CheatingMember(j, "malformed pair ciphertext") from exc
        return pair_secret(dh, kem_secret, theirs_ct, theirs, mine, (j, self.id), self.setup.round_index)

    def masked_input(self, values: np.ndarray, value_bound: float, noise: np.ndarray | None = None) -> MaskedInput:
        """Phase 3: enc(w * x) (+ this member's noise share, ring units) + self mask + pair masks."""
        setup = self.setup
        positions = setup.positions[self.id]
        if not self._shares_received:
            raise SecAggError("masked input before the shares were received")
        if values.shape != positions.shape:
            raise SecAggInputError(f"update has {values.size} entries, the sub-model {positions.size}")
        y = encode(values, setup.weights[self.id], setup.ring, value_bound)
        if noise is not None:
            if noise.shape != positions.shape:
                raise SecAggInputError("noise share does not match the sub-model")
            y += to_ring(noise, setup.ring)
        y += self_mask(self._seed, setup.round_index, self.id, positions.size, setup.ring)
        own = (positions, setup.runs[self.id])
        for j, secret in sorted(self._pair_secrets.items()):
            other = (setup.positions[j], setup.runs[j])
            sign = +1 if self.id < j else -1
            apply_pair_mask(y, secret, setup.round_index, setup.ring, sign, own, other, setup.global_length,
                            by_global=False)
        return MaskedInput(setup.round_index, self.id, y)

    def reveal(self, survivors: list[int]) -> Reveal:
        """Phase 4 for the published survivor set; refuses any second, different set."""
        if not self._shares_received:
            raise SecAggError("reveal before the shares were received")
        u2 = set(self._received)
        chosen = set(survivors)
        if not chosen <= u2 or self.id not in chosen:
            raise SecAggInputError("survivor set names members that did not share keys, or omits this member")
        if len(chosen) < self.setup.threshold:
            raise InsufficientShares(f"only {len(chosen)} survivors, threshold is {self.setup.threshold}")
        digest = survivors_digest(self.setup.round_index, sorted(chosen))
        if self._revealed_for not in (None, digest):
            raise SecAggError("asked to reveal for a second, different survivor set: refusing")
        self._revealed_for = digest
        return Reveal(
            self.setup.round_index,
            self.id,
            digest,
            {d: self._received[d][0] for d in sorted(chosen)},
            {d: self._received[d][1] for d in sorted(u2 - chosen)},
        )
