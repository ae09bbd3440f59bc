"""EIP-712 approvals: eth-account's encoder (Python) and the contract's hashing (Solidity) are
independent implementations; they must agree on every digest."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.chain.approvals import (
    GlobalModelRecord,
    LedgerDomain,
    MembershipAction,
    MembershipChange,
    global_model_typed_data,
    membership_typed_data,
    recover_signer,
    sign_global_model,
    typed_data_digest,
)
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles

SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0

records = st.builds(
    GlobalModelRecord,
    round=st.integers(0, 2**64 - 1),
    cid=st.text(min_size=1, max_size=60),
    digest=st.binary(min_size=32, max_size=32),
    updates_root=st.binary(min_size=32, max_size=32),
    manifest_cid=st.text(min_size=1, max_size=60),
    manifest_digest=st.binary(min_size=32, max_size=32),
    entry_count=st.integers(0, 2**32 - 1),
    sm9_signature=st.binary(min_size=1, max_size=200),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=records)
def test_global_model_digest_matches_contract(ledger: LedgerClient, record: GlobalModelRecord) -> None:
    typed = global_model_typed_data(ledger.domain, record, ledger.nonces().global_model)
    assert typed_data_digest(typed) == ledger.global_model_approval_digest(record)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    action=st.sampled_from(list(MembershipAction)),
    account=st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
    sm9_id=st.text(max_size=40),
    threshold=st.integers(0, 2**32 - 1),
)
def test_membership_digest_matches_contract(
    ledger: LedgerClient, action: MembershipAction, account: str, sm9_id: str, threshold: int
) -> None:
    change = MembershipChange(action, account, sm9_id, threshold)
    typed = membership_typed_data(ledger.domain, change, ledger.nonces().membership)
    assert typed_data_digest(typed) == ledger.membership_change_approval_digest(change)


def test_domain_separator_matches_contract(ledger: LedgerClient) -> None:
    from eth_account._utils.encode_typed_data.encoding_and_hashing import hash_domain

    assert hash_domain(ledger.domain.as_dict()) == ledger.domain_separator()


def test_signatures_recover_and_are_canonical(dev_accounts: DevRoles) -> None:
    domain = LedgerDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    record = GlobalModelRecord(3, "QmX", b"\x01" * 32, b"\x02" * 32, "QmM", b"\x03" * 32, 4, b"sig")
    for account in dev_accounts.institutions:
        signature = sign_global_model(account, domain, record, nonce=7)
        assert len(signature) == 65 and signature[64] in (27, 28)
        assert int.from_bytes(signature[32:64], "big") <= SECP256K1_HALF_N
        assert recover_signer(global_model_typed_data(domain, record, 7), signature) == account.address
        # Any change of nonce, chain or contract changes who the signature recovers to.
        assert recover_signer(global_model_typed_data(domain, record, 8), signature) != account.address
        other_chain = LedgerDomain(1, domain.contract)
        assert recover_signer(global_model_typed_data(other_chain, record, 7), signature) != account.address
