"""Checks that the files a party is handed belong together and to it, before it keeps them.

A node given another hospital's SM9 key, a share dealt to another member, or a threshold split
of another ledger would otherwise fail rounds later with no hint. Each check names the file
(by its option) and the fix. Chain-side checks live in ``fedledger.chain.preflight``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.errors import FedLedgerError
from fedledger.protocol.consortium import Consortium, Member, canonical_address, consortium_identity

if TYPE_CHECKING:
    from fedledger.sm9 import SignMasterPublicKey, SignPrivateKey
    from fedledger.sm9.threshold import KeyShare, ThresholdPublic

_PROBE = b"fedledger enrolment probe"


class EnrolmentError(FedLedgerError):
    """A key, share or public file does not belong to this party or this ledger."""


def check_public_material(public: ThresholdPublic, roster: Consortium, chain_id: int, contract: str) -> None:
    """The roster and the threshold split are this ledger's (chain id, contract, canonical identity)."""
    expected = consortium_identity(chain_id, contract)
    if roster.chain_id != chain_id or canonical_address(roster.contract) != canonical_address(contract):
        raise EnrolmentError(
            f"--consortium is the roster of ledger {roster.contract} on chain {roster.chain_id}, "
            f"not of {contract} on chain {chain_id}: use this consortium's roster"
        )
    if roster.consortium_identity != expected:
        raise EnrolmentError(
            f"--consortium names the consortium identity {roster.consortium_identity!r}, expected {expected!r}: "
            "the KGC must rebuild the roster for this ledger"
        )
    split_for = public.identity.decode("utf-8", errors="replace")
    if split_for != expected:
        raise EnrolmentError(
            f"--threshold-public is a split of {split_for!r}, not of {expected!r}: the KGC must split the key of "
            f"this ledger (`fedledger kgc split --chain-id {chain_id} --contract {contract}`)"
        )
    if public.k != roster.threshold or public.n != len(roster.members):
        raise EnrolmentError(
            f"--threshold-public is a {public.k}-of-{public.n} split but the roster has k={roster.threshold} "
            f"and {len(roster.members)} members: use the split and roster the KGC issued together"
        )


def roster_member(roster: Consortium, sm9_identity: str) -> Member:
    for member in roster.members:
        if member.sm9_identity == sm9_identity:
            return member
    raise EnrolmentError(
        f"{sm9_identity} is not a member in --consortium: check --sm9-identity or ask the KGC for the current roster"
    )


def check_sign_key(key: SignPrivateKey, sm9_identity: str, master_public_key: SignMasterPublicKey) -> None:
    """``key`` is the KGC's key for ``sm9_identity`` under ``master_public_key`` (a real signature checks)."""
    from fedledger.sm9 import sign, verify

    claimed = key.identity.decode("utf-8", errors="replace")
    if claimed != sm9_identity:
        raise EnrolmentError(
            f"--sm9-key is the key of {claimed!r}, not of {sm9_identity!r}: use the key the KGC issued to this identity"
        )
    if key.master_public_key != master_public_key or not verify(
        master_public_key, sm9_identity, _PROBE, sign(key, _PROBE)
    ):
        raise EnrolmentError(
            f"--sm9-key does not sign as {sm9_identity!r} under --master-public-key (another member's key, or "
            "another KGC's): use the key the KGC issued to this identity"
        )


def check_share(share: KeyShare, public: ThresholdPublic, member: Member) -> None:
    """``share`` is the share the roster gives this member, and its point is the one the split published."""
    from fedledger.sm9.pairing import pairing
    from fedledger.sm9.threshold import Signer

    if share.index != member.share_index:
        raise EnrolmentError(
            f"--share holds share {share.index}, but the roster gives {member.sm9_identity} share "
            f"{member.share_index}: use share-{member.share_index} from the KGC"
        )
    Signer(share, public)  # same identity, master key and (k, n)
    q, _ = public.master_public_key.identity_point(public.identity)
    if pairing(share.point, q) != public.verification[share.index]:
        raise EnrolmentError(
            f"--share {share.index} does not match the published verification data: ask the KGC for your share"
        )
