"""Audit test scenarios: consortium ledgers on the real session Anvil with rounds played out by hand.

No federated learning is needed to audit a ledger: updates and models are small random files in a
real LocalStore; everything else is real - SM9 keys from a freshly generated master key, entries
signed with each institution's identity key, round records threshold-signed (k = 3 of 5) under the
consortium identity, EIP-712 approvals from the dev institution accounts, and the contract.

A round plan says who submits, whose entry is forged, whom the aggregator leaves out, and whether
the round is posted; the builder acts as aggregator and institutions accordingly, and records what
it did so tests can compare the API's answers with what really happened.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fedledger.audit.api import create_app
from fedledger.audit.service import AuditService
from fedledger.chain.approvals import GlobalModelRecord
from fedledger.chain.client import LedgerClient
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.digests import sm3
from fedledger.protocol import RoundRecord, UpdateEntry
from fedledger.protocol.consortium import consortium_identity
from fedledger.protocol.manifest import Exclusion, ReasonCode, RoundManifest
from fedledger.protocol.round_check import AggregationRule, LedgerUpdate, RoundComputation
from fedledger.sm9 import (
    KeyShare,
    SignMasterKey,
    SignPrivateKey,
    ThresholdPublic,
    extract_sign_key,
    sign,
    split_key,
    threshold_sign_local,
)
from fedledger.store import ContentStore, LocalStore

RATES_PPM = [1_000_000, 500_000, 500_000, 250_000, 125_000]


@dataclass
class RoundPlan:
    submitters: list[int]
    forged: list[int] = field(default_factory=list)  # entry signed with another institution's key
    wrong_digest: list[int] = field(default_factory=list)  # ledger digest is not the file's SM3
    excluded: list[int] = field(default_factory=list)  # aggregator leaves these out of the record
    post: bool = True
    bad_threshold_signature: bool = False  # consortium signs a different record
    accesses: list[int] = field(default_factory=list)  # institutions recording access to the base
    cids: dict[int, str] = field(default_factory=dict)  # a CID put on the ledger instead of the file's


@dataclass
class PlayedRound:
    round: int
    base_cid: str
    base_digest: bytes
    updates: dict[str, str] = field(default_factory=dict)  # address -> update CID
    signatures: dict[str, bytes] = field(default_factory=dict)
    entries: dict[str, UpdateEntry] = field(default_factory=dict)
    included: list[str] = field(default_factory=list)  # addresses, sorted lower-case
    global_cid: str | None = None
    global_digest: bytes | None = None
    updates_root: bytes | None = None
    approvers: list[str] = field(default_factory=list)
    manifest: RoundManifest | None = None


@dataclass
class Scenario:
    deployment: Deployment
    ledger: LedgerClient
    roles: DevRoles
    store_dir: Path
    master_public_key_path: Path
    master: SignMasterKey
    institution_keys: dict[str, SignPrivateKey]
    shares: list[KeyShare]
    threshold_public: ThresholdPublic
    initial_cid: str
    initial_digest: bytes
    rounds: list[PlayedRound]

    def address(self, i: int) -> str:
        return self.roles.institutions[i].address

    def service(self, store_dir: Path | None = None, **options: Any) -> AuditService:
        store = LocalStore(store_dir or self.store_dir)
        return AuditService(self.ledger, store, self.master.public_key, **options)

    def client(self, store_dir: Path | None = None, **options: Any) -> TestClient:
        return TestClient(create_app(self.service(store_dir, **options)))


def _reason(plan: RoundPlan, i: int) -> tuple[ReasonCode, str]:
    if i in plan.forged:
        return ReasonCode.SIGNATURE_INVALID, "SM9 signature does not verify under the submitter's identity"
    if i in plan.wrong_digest:
        return ReasonCode.DIGEST_MISMATCH, "the file's SM3 differs from the ledger entry's digest"
    return ReasonCode.NORM_BOUND, "update L2 norm exceeds the bound"


def round_manifest(
    ledger: LedgerClient,
    round_index: int,
    base_digest: bytes,
    global_cid: str,
    global_digest: bytes,
    entries: dict[str, UpdateEntry],
    signatures: dict[str, bytes],
    excluded: dict[str, tuple[ReasonCode, str]],
) -> RoundManifest:
    """The manifest an aggregator publishes: ``entries`` (by lower-case address) minus ``excluded``."""
    computation = RoundComputation(
        [LedgerUpdate(e, signatures[a], None) for a, e in sorted(entries.items()) if a not in excluded],
        [Exclusion(a, entries[a].cid, code, reason) for a, (code, reason) in sorted(excluded.items())],
        {},
    )
    ledger_id = (ledger.chain_id, ledger.address)
    return computation.manifest(ledger_id, round_index, base_digest, global_cid, global_digest, AggregationRule())


def store_manifest(store: ContentStore, manifest: RoundManifest) -> RoundRecord:
    """Put ``manifest`` in the store; the round record that binds it."""
    return manifest.round_record(store.put(manifest.to_bytes()))


def _put_random(store: LocalStore, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    return store.put(data), sm3(data)


def play_rounds(
    deployment: Deployment,
    ledger: LedgerClient,
    roles: DevRoles,
    workdir: Path,
    plans: list[RoundPlan],
    *,
    aggregator_accesses: bool = True,
) -> Scenario:
    """Play ``plans`` on a fresh ledger; returns what was done."""
    store_dir = workdir / "store"
    store = LocalStore(store_dir, durable=False)
    master = SignMasterKey.generate()
    mpk_path = workdir / "master-public.pem"
    master.public_key.save(mpk_path)
    keys = {spec.address.lower(): extract_sign_key(master, spec.sm9_id) for spec in deployment.institutions}
    identity = consortium_identity(deployment.chain_id, deployment.address)
    shares, public = split_key(master, identity, 3, 5)
    initial_cid, initial_digest = _put_random(store, 3000)
    played: list[PlayedRound] = []
    base_cid, base_digest = initial_cid, initial_digest
    for r, plan in enumerate(plans):
        ledger.open_round(roles.aggregator, r, base_cid, base_digest)
        this = PlayedRound(r, base_cid, base_digest)
        played.append(this)
        if aggregator_accesses and r == 0:
            ledger.record_access(roles.aggregator, base_cid, "seed the initial model")
        for i in plan.accesses:
            ledger.record_access(roles.institutions[i], base_cid, f"train round {r}")
        for i in plan.submitters:
            account = roles.institutions[i]
            cid, digest = _put_random(store, 2000 + 97 * i + r)
            cid = plan.cids.get(i, cid)
            if i in plan.wrong_digest:
                digest = sm3(b"not the file " + cid.encode())
            entry = UpdateEntry(
                chain_id=ledger.chain_id,
                contract=ledger.address,
                round=r,
                institution=account.address,
                cid=cid,
                digest=digest,
                num_samples=100 + i,
                width_ppm=RATES_PPM[i],
                mapping_digest=sm3(b"index map %d" % i),
            )
            signer = (
                keys[roles.institutions[(i + 1) % 5].address.lower()]
                if i in plan.forged
                else keys[account.address.lower()]
            )
            signature = sign(signer, entry.message()).to_der()
            ledger.submit_update(
                account, r, cid, digest, entry.mapping_digest, entry.num_samples, entry.width_ppm, signature
            )
            address = account.address.lower()
            this.updates[address], this.signatures[address], this.entries[address] = cid, signature, entry
        if not plan.post:
            continue
        excluded = {roles.institutions[i].address.lower(): _reason(plan, i) for i in plan.excluded}
        this.included = sorted(a for a in this.entries if a not in excluded)
        global_cid, global_digest = _put_random(store, 5000 + r)
        manifest = round_manifest(
            ledger, r, base_digest, global_cid, global_digest, this.entries, this.signatures, excluded
        )
        record = store_manifest(store, manifest)
        root = record.updates_root
        message = record.message()
        if plan.bad_threshold_signature:
            message = dataclasses.replace(record, updates_root=sm3(b"other root")).message()
        signature = threshold_sign_local(shares[1:4], public, message).to_der()
        on_chain = GlobalModelRecord.from_round_record(record, signature)
        approvers = [roles.institutions[(r + j) % 5] for j in range(3)]
        approvals = [ledger.approve_global_model(a, on_chain) for a in approvers]
        ledger.post_global_model(roles.aggregator, on_chain, approvals)
        this.manifest = manifest
        this.global_cid, this.global_digest, this.updates_root = global_cid, global_digest, root
        this.approvers = [a.address for a in approvers]
        base_cid, base_digest = global_cid, global_digest
    return Scenario(
        deployment=deployment,
        ledger=ledger,
        roles=roles,
        store_dir=store_dir,
        master_public_key_path=mpk_path,
        master=master,
        institution_keys=keys,
        shares=shares,
        threshold_public=public,
        initial_cid=initial_cid,
        initial_digest=initial_digest,
        rounds=played,
    )
