"""The aggregator's signing session with real SM9 shares and real Ethereum keys (no chain needed)."""

from __future__ import annotations

import pytest
from eth_account import Account

from aggregator.signing import SessionRejected, SigningSession
from fedledger.protocol import RoundRecord
from fedledger.protocol.consortium import Consortium, Member
from fedledger.protocol.session_auth import sign_payload
from fedledger.sm9 import Signature, SignMasterKey, verify
from fedledger.sm9.threshold import Commitment, Signer, split_key

ACCOUNTS = [Account.create() for _ in range(3)]
MASTER = SignMasterKey.generate()
SHARES, PUBLIC = split_key(MASTER, "consortium:31337:0xtest", 2, 3)
ROSTER = Consortium(
    31337,
    "0x" + "11" * 20,
    "consortium:31337:0xtest",
    2,
    tuple(Member(f"h{i + 1}", a.address, f"inst:h{i + 1}", i + 1) for i, a in enumerate(ACCOUNTS)),
)
RECORD = RoundRecord(
    31337, "0x" + "11" * 20, 0, b"\x01" * 32, "QmCid", b"\x02" * 32, b"\x03" * 32, "QmManifest", b"\x04" * 32, 1
)


class EveryoneActive:
    """The chain's view for these chain-less tests: every roster member active, k = 2."""

    def signer_of(self, signature_der: bytes, approval: bytes) -> str:
        return ACCOUNTS[0].address

    def is_active(self, address: str) -> bool:
        return True

    def required(self) -> int:
        return 2


def new_session(**kwargs: float) -> SigningSession:
    return SigningSession(PUBLIC, ROSTER, RECORD, [], EveryoneActive(), **kwargs)


def commit(session: SigningSession, signer: Signer, account: object) -> None:
    payload = signer.commit(session.session_id).to_dict()
    session.add_commitment(payload, sign_payload(bytes(account.key), payload))  # type: ignore[attr-defined]


def test_two_of_three_sign_a_standard_sm9_signature_over_the_record() -> None:
    session = new_session()
    signers = [Signer(share, PUBLIC) for share in SHARES]
    for signer, account in zip(signers, ACCOUNTS, strict=True):
        commit(session, signer, account)
    assert session.tick() == "sign"
    view = session.describe()
    commitments = [Commitment.from_dict(c) for c in view["commitments"]]
    for signer, account in zip(signers, ACCOUNTS, strict=True):
        partial = signer.sign(session.session_id, RECORD.message(), commitments).to_dict()
        session.add_partial(partial, sign_payload(bytes(account.key), partial))
    assert session.tick() == "approve"
    signature = Signature.from_der(bytes.fromhex(session.describe()["signature_der"]))
    assert verify(PUBLIC.master_public_key, PUBLIC.identity, RECORD.message(), signature)


def test_a_commitment_under_another_members_share_is_refused() -> None:
    session = new_session()
    payload = Signer(SHARES[0], PUBLIC).commit(session.session_id).to_dict()
    with pytest.raises(SessionRejected, match="holds share 2, not share 1"):
        session.add_commitment(payload, sign_payload(bytes(ACCOUNTS[1].key), payload))
    outsider = Account.create()
    with pytest.raises(SessionRejected, match="not a member"):
        session.add_commitment(payload, sign_payload(bytes(outsider.key), payload))
    with pytest.raises(SessionRejected, match="malformed"):
        session.add_commitment(payload, "0x1234")


def test_a_signer_that_commits_and_goes_silent_ends_the_session_naming_it() -> None:
    session = new_session(partial_timeout_seconds=5.0)
    signers = [Signer(share, PUBLIC) for share in SHARES]
    for signer, account in zip(signers, ACCOUNTS, strict=True):
        commit(session, signer, account)
    assert session.tick(now=1000.0) == "sign"
    commitments = [Commitment.from_dict(c) for c in session.describe()["commitments"]]
    for signer, account in list(zip(signers, ACCOUNTS, strict=True))[:2]:
        partial = signer.sign(session.session_id, RECORD.message(), commitments).to_dict()
        session.add_partial(partial, sign_payload(bytes(account.key), partial))
    assert session.tick(now=1002.0) == "sign"
    assert session.tick(now=1006.0) == "failed"
    assert session.unresponsive == [3] and session.cheaters == []


def test_commit_phase_waits_for_everyone_then_freezes_after_the_grace_period() -> None:
    session = new_session(signing_grace_seconds=3.0)
    signers = [Signer(share, PUBLIC) for share in SHARES]
    commit(session, signers[0], ACCOUNTS[0])
    assert session.tick(now=10.0) == "commit"  # fewer than k
    commit(session, signers[1], ACCOUNTS[1])
    assert session.tick(now=11.0) == "commit"  # k reached, grace running
    assert session.tick(now=14.5) == "sign"
    assert [c["index"] for c in session.describe()["commitments"]] == [1, 2]
    late = signers[2].commit(session.session_id).to_dict()
    with pytest.raises(SessionRejected, match="past the commit phase"):
        session.add_commitment(late, sign_payload(bytes(ACCOUNTS[2].key), late))
