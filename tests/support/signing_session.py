"""A signing session for round 0 of a fresh dev ledger, with real SM9 shares for the five dev
institutions (k = 3) and the real ``ChainApprovals`` gate, for the adversarial signing tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from aggregator.approval_check import ChainApprovals
from aggregator.driver import AggregatorContext
from aggregator.http_api import SessionBoard
from aggregator.signing import SigningSession
from fedledger.chain.approvals import GlobalModelRecord, MembershipChange
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles
from fedledger.fl import default_spec
from fedledger.protocol import RoundRecord
from fedledger.protocol.consortium import Consortium, Member
from fedledger.protocol.round_check import AggregationRule, RoundComputation
from fedledger.protocol.session_auth import sign_payload
from fedledger.sm9 import SignMasterKey
from fedledger.sm9.threshold import Commitment, Signer, ThresholdPublic, split_key
from fedledger.store import open_store

K = 3
BASE_DIGEST = b"\x01" * 32


@dataclass
class SessionFixture:
    ledger: LedgerClient
    roles: DevRoles
    master: SignMasterKey
    public: ThresholdPublic
    signers: list[Signer]
    roster: Consortium
    record: RoundRecord

    def new_session(self, record: RoundRecord | None = None) -> SigningSession:
        record = record or self.record
        return SigningSession(
            self.public, self.roster, record, [], ChainApprovals(self.ledger, record), signing_grace_seconds=0.01
        )

    def commitment(self, session: SigningSession, i: int, account: LocalAccount | None = None) -> tuple[dict, str]:
        payload = self.signers[i].commit(session.session_id).to_dict()
        return payload, sign_payload(bytes((account or self.roles.institutions[i]).key), payload)

    def signed_session(self) -> SigningSession:
        """A session in its approve phase: all five committed and signed; the SM9 signature is out."""
        session = self.new_session()
        for i in range(len(self.signers)):
            session.add_commitment(*self.commitment(session, i))
        assert session.tick() == "sign"
        commitments = [Commitment.from_dict(c) for c in session.describe()["commitments"]]
        for i, signer in enumerate(self.signers):
            partial = signer.sign(session.session_id, session.record.message(), commitments).to_dict()
            session.add_partial(partial, sign_payload(bytes(self.roles.institutions[i].key), partial))
        assert session.tick() == "approve"
        return session

    def approval(self, session: SigningSession, i: int) -> bytes:
        assert session.signature_der is not None
        gm = GlobalModelRecord.from_round_record(session.record, session.signature_der)
        return self.ledger.approve_global_model(self.roles.institutions[i], gm)

    def remove_on_chain(self, i: int) -> None:
        """Institution ``i`` leaves the ledger (k stays 3), approved by three others."""
        change = MembershipChange.remove(self.roles.institutions[i].address, K)
        others = [a for j, a in enumerate(self.roles.institutions) if j != i][:K]
        approvals = [self.ledger.approve_membership_change(a, change) for a in others]
        self.ledger.remove_institution(self.roles.deployer, change.account, K, approvals)


def make_record(ledger: LedgerClient, global_cid: str = "bafkreiglobalmodel") -> RoundRecord:
    """A round-0 record as the aggregator builds it: from a manifest of the round's (no) entries, so
    its entry count is the ledger's and the post can pass."""
    manifest = RoundComputation([], [], {}).manifest(
        (ledger.chain_id, ledger.address), 0, BASE_DIGEST, global_cid, b"\x02" * 32, AggregationRule()
    )
    return manifest.round_record("bafkreiroundmanifest")


def session_fixture(ledger: LedgerClient, roles: DevRoles) -> SessionFixture:
    """Open round 0 on ``ledger`` and set up the consortium's shares and roster for it."""
    ledger.open_round(roles.aggregator, 0, "bafkreibasemodel", BASE_DIGEST)
    identity = f"consortium:{ledger.chain_id}:{ledger.address.lower()}"
    master = SignMasterKey.generate()
    shares, public = split_key(master, identity, K, len(roles.institutions))
    members = tuple(
        Member(f"hospital-{i + 1}", a.address, f"hospital-{i + 1}", i + 1) for i, a in enumerate(roles.institutions)
    )
    roster = Consortium(ledger.chain_id, ledger.address, identity, K, members)
    return SessionFixture(
        ledger, roles, master, public, [Signer(s, public) for s in shares], roster, make_record(ledger)
    )


def aggregator_context(fx: SessionFixture, tmp_path: Path, account: LocalAccount | None = None) -> AggregatorContext:
    """The aggregator of ``fx``'s ledger (or ``account`` posing as it), with a real local store."""
    return AggregatorContext(
        account=account or fx.roles.aggregator,
        ledger=fx.ledger,
        store=open_store(f"local:{tmp_path / 'store'}"),
        spec=default_spec((8,), 2),
        master_public_key=fx.public.master_public_key,
        threshold_public=fx.public,
        consortium=fx.roster,
        state_dir=tmp_path / "aggregator",
        board=SessionBoard(),
        poll_interval=0.05,
    )
