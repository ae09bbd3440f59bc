"""Sealed model files in real rounds (real Anvil, real store, real processes' code in threads).

One consortium plays in order: round 0 with everyone; the store's blocks are then read from disk
and hold no plaintext byte of any file the round wrote; the audit verifies every entry without keys
and checks plaintext digests with a member's keys; a member removed on chain cannot open the next
round's global model while an active one can; a member added on chain reads its first round's base.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.driver import open_next_round
from demo.in_process import InProcessConsortium, password_of
from fedledger.audit.service import AuditService
from fedledger.chain.approvals import MembershipChange
from fedledger.chain.devaccounts import dev_roles
from fedledger.chain.localchain import LocalChain
from fedledger.cli import app
from fedledger.envelope import RecipientKeys
from fedledger.envelope.header import MAGIC
from fedledger.protocol.consortium import Member
from fedledger.protocol.errors import SealedModelError
from fedledger.protocol.model_files import get_model
from fedledger.protocol.readers import READER_KEYS_FILE
from fedledger.sm9 import SignMasterPublicKey
from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key
from fedledger.store import open_store


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    with LocalChain("anvil") as chain:
        c = InProcessConsortium.create(tmp_path_factory.mktemp("sealed"), chain)
        c.run_rounds(1)
        yield c


def _store_blocks(c: InProcessConsortium) -> list[bytes]:
    root = Path(c.layout.store_spec.removeprefix("local:"))
    return [p.read_bytes() for p in (root / "blocks").rglob("*.data")]


def _plaintext_probes(model: bytes) -> list[bytes]:
    """The safetensors header, each tensor name, and 32-byte slices of the float data."""
    header_len = int.from_bytes(model[:8], "little")
    names = [n.encode() for n in json.loads(model[8 : 8 + header_len]) if n != "__metadata__"]
    data = model[8 + header_len :]
    slices = [data[i : i + 32] for i in range(0, len(data) - 32, max(1, len(data) // 16))]
    return [b'{"__metadata__"', *[b'"' + n + b'"' for n in names], *slices]


def _files_round_0_wrote(c: InProcessConsortium) -> dict[str, Path]:
    agg_state = c.layout.aggregator_dir / "state"
    files = {
        "initial model": agg_state / "global-initial.safetensors",
        "global model": agg_state / "round-0" / "global-r0.safetensors",
    }
    for node in c.nodes:
        files[f"{node.name}'s update"] = node.state_dir / "round-0" / "update.safetensors"
    return files


def test_the_store_holds_no_plaintext_byte_of_any_file_round_0_wrote(consortium: InProcessConsortium) -> None:
    c = consortium
    ledger = c.nodes[0].ledger
    cids = [ledger.rounds_opened(round=0)[0].base_cid, ledger.global_models_posted(round=0)[0].cid]
    cids += [e.cid for e in ledger.updates_submitted(round=0)]
    store = open_store(c.layout.store_spec)
    assert all(store.read_bytes(cid).startswith(MAGIC) for cid in cids)  # every ledger CID is an envelope
    blocks = _store_blocks(c)
    assert len(blocks) >= len(cids)
    for what, path in _files_round_0_wrote(c).items():
        probes = _plaintext_probes(path.read_bytes())
        assert len(probes) > 10 and all(p in path.read_bytes() for p in probes)  # control: real probes
        leaked = [p[:24] for p in probes if any(p in block for block in blocks)]
        assert leaked == [], f"{what}: plaintext found in the store"


def test_the_audit_verifies_every_entry_without_keys_and_checks_plaintext_with_a_members_keys(
    consortium: InProcessConsortium,
) -> None:
    c = consortium
    mpk = SignMasterPublicKey.load(c.layout.master_public_key)
    keyless = AuditService(c.nodes[0].ledger, open_store(c.layout.store_spec), mpk).summary()
    assert keyless.failures == [] and keyless.updates.verified == 5 and keyless.global_models.verified == 1
    store = open_store(c.layout.store_spec)
    member = AuditService(c.nodes[0].ledger, store, mpk, reader_keys=c.nodes[0].reader_keys)
    event = c.nodes[0].ledger.updates_submitted(round=0)[2]
    keyless_verdict = AuditService(c.nodes[0].ledger, store, mpk).check_content(event.cid, event.digest)
    assert keyless_verdict.ok and "plaintext digest not checked" in keyless_verdict.detail
    assert "plaintext SM3 digest matches" in member.check_content(event.cid, event.digest).detail
    wrong = member.check_content(event.cid, b"\x01" * 32)
    assert not wrong.ok and "plaintext SM3" in wrong.detail


def test_audit_summary_cli_in_member_mode_opens_every_file_and_refuses_a_wrong_password(
    consortium: InProcessConsortium, tmp_path: Path
) -> None:
    c = consortium
    member = c.layout.node_dirs[1]
    args = ["audit", "summary", "--deployment", str(c.layout.root / "deployment.json"), "--store", c.layout.store_spec,
            "--master-public-key", str(c.layout.master_public_key),
            "--reader-keys", str(member / "keys" / READER_KEYS_FILE)]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--password-file", str(member / "password"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "verified"
    (tmp_path / "wrong").write_text("not the password\n")
    wrong = CliRunner().invoke(app, [*args, "--password-file", str(tmp_path / "wrong")])
    assert wrong.exit_code == 2 and "wrong password" in wrong.output and len(wrong.output.splitlines()) == 1


def test_a_member_removed_on_chain_cannot_open_the_next_global_model_an_active_one_can(
    consortium: InProcessConsortium, tmp_path: Path
) -> None:
    c = consortium
    ledger = c.nodes[0].ledger
    removed = c.nodes[4]
    change = MembershipChange.remove(removed.account.address, 3)
    approvals = [ledger.approve_membership_change(n.account, change) for n in c.nodes[:3]]
    ledger.apply_membership_change(dev_roles(5).deployer, change, approvals)
    c.run_rounds(2, only=[0, 1, 2, 3])
    posted = ledger.global_models_posted(round=1)[0]
    assert posted.update_count == 4
    store = open_store(c.layout.store_spec)
    with pytest.raises(SealedModelError, match="not readable"):
        get_model(store, posted.cid, posted.digest, tmp_path / "removed.bin", removed.reader_keys)  # type: ignore[arg-type]
    assert not (tmp_path / "removed.bin").exists()
    opened = get_model(store, posted.cid, posted.digest, tmp_path / "active.bin", c.nodes[3].reader_keys)  # type: ignore[arg-type]
    assert opened.stat().st_size > 0
    # What it was sent before its removal stays readable to it (nothing takes back a delivered key).
    before = ledger.global_models_posted(round=0)[0]
    get_model(store, before.cid, before.digest, tmp_path / "old.bin", removed.reader_keys)  # type: ignore[arg-type]


def test_a_member_added_on_chain_reads_the_base_of_its_first_round(
    consortium: InProcessConsortium, tmp_path: Path
) -> None:
    c = consortium
    ledger = c.nodes[0].ledger
    newcomer, identity = dev_roles(5).outsider, "inst:newcomer"
    kgc = EncryptMasterKey.load(c.layout.root / "kgc" / "enc_master.key", password_of(c.layout.root / "kgc"))
    keys = RecipientKeys.generate(extract_encrypt_key(kgc, identity))
    change = MembershipChange.add(newcomer.address, identity, 3)
    approvals = [ledger.approve_membership_change(n.account, change) for n in c.nodes[:3]]
    ledger.apply_membership_change(dev_roles(5).deployer, change, approvals)
    agg = c.aggregator_context()
    roster = agg.consortium

    agg.consortium = replace(
        roster,
        members=(*roster.members, Member("newcomer", newcomer.address, identity, 99, keys.public.mlkem_public.hex())),
    )
    previous = ledger.global_models_posted(round=1)[0]
    open_next_round(agg, 1)
    opened = ledger.rounds_opened(round=2)[0]
    assert opened.base_cid != previous.cid and opened.base_digest == previous.digest  # re-sealed
    store = open_store(c.layout.store_spec)
    get_model(store, opened.base_cid, opened.base_digest, tmp_path / "base.bin", keys)
    with pytest.raises(SealedModelError):
        get_model(store, previous.cid, previous.digest, tmp_path / "before.bin", keys)
    mpk = SignMasterPublicKey.load(c.layout.master_public_key)
    audit = AuditService(ledger, store, mpk)
    assert audit.verifier.link_check(audit.snapshot(), 2).ok
