"""Gas figures for every ledger operation, measured on a fresh local chain.

Calldata is realistic: a 46-character CIDv0, 32-byte SM3 digests, a 104-byte DER-encoded SM9
signature (random bytes, so almost none are zero: the expensive case for calldata). Gas is
deterministic for a given chain and compiler, so one run is the measurement; a plain ETH transfer
measured in the same run is the baseline the ratios refer to.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from fedledger.chain.localchain import ChainKind, LocalChain

SUBMIT_UPDATE_TARGET = 60_000
POST_GLOBAL_MODEL_K3_TARGET = 120_000
REALISTIC_CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"  # a CIDv0: 46 characters
SM9_SIGNATURE_BYTES = 104


def _sm9_like_signature() -> bytes:
    """A stand-in with the size of a DER SM9 signature (SEQUENCE { OCTET STRING h, BIT STRING S })."""
    body = os.urandom(SM9_SIGNATURE_BYTES - 2)
    return bytes([0x30, len(body)]) + body


def measure_gas(kind: ChainKind = "anvil", progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Deploy a 5-institution, k = 3 ledger and run every operation once; returns gas used."""
    from web3 import HTTPProvider, Web3

    from fedledger.chain.approvals import GlobalModelRecord, MembershipChange
    from fedledger.chain.compiler import compile_ledger
    from fedledger.chain.deploy import deploy_ledger, dev_consortium
    from fedledger.chain.devaccounts import dev_account, dev_roles
    from fedledger.digests import sm3

    say = progress or (lambda _msg: None)
    say("compiling FederatedLedger")
    compiled = compile_ledger()
    roles = dev_roles(5)
    gas: dict[str, int] = {}
    say(f"starting {kind}")
    with LocalChain(kind) as chain:
        w3 = Web3(HTTPProvider(chain.rpc_url))
        say("measuring a plain transfer (baseline)")
        gas["plainTransfer"] = _transfer_gas(w3, roles.deployer, roles.outsider.address)
        say("deploying")
        deployment = deploy_ledger(
            w3,
            roles.deployer,
            aggregator=roles.aggregator.address,
            institutions=dev_consortium(5),
            threshold=3,
            compiled=compiled,
        )
        gas["deploy"] = deployment.gas_used
        ledger = deployment.client(w3)
        say("round 0: open, submit, post")
        gas["openRound"] = ledger.open_round(
            roles.aggregator, 0, REALISTIC_CID, sm3(b"initial model")
        ).gas_used
        submits = [
            ledger.submit_update(
                inst, 0, REALISTIC_CID, sm3(b"update %d" % i), sm3(b"index map %d" % i),
                1_000 + i, [1_000_000, 500_000, 250_000, 125_000, 125_000][i], _sm9_like_signature(),
            ).gas_used
            for i, inst in enumerate(roles.institutions)
        ]  # fmt: skip
        gas["submitUpdate"] = max(submits)
        record = GlobalModelRecord(
            0, REALISTIC_CID, sm3(b"global 0"), sm3(b"root 0"), REALISTIC_CID, sm3(b"manifest 0"), len(submits),
            _sm9_like_signature(),
        )  # fmt: skip
        approvals = [ledger.approve_global_model(a, record) for a in roles.institutions[:3]]
        gas["postGlobalModel_k3"] = ledger.post_global_model(roles.aggregator, record, approvals).gas_used
        say("round 1 with five approvals")
        ledger.open_round(roles.aggregator, 1, REALISTIC_CID, record.digest)
        record1 = GlobalModelRecord(
            1, REALISTIC_CID, sm3(b"global 1"), sm3(b"root 1"), REALISTIC_CID, sm3(b"manifest 1"), 0,
            _sm9_like_signature(),
        )  # fmt: skip
        approvals = [ledger.approve_global_model(a, record1) for a in roles.institutions]
        gas["postGlobalModel_5approvals"] = ledger.post_global_model(
            roles.aggregator, record1, approvals
        ).gas_used
        gas["recordAccess"] = ledger.record_access(
            roles.institutions[0], REALISTIC_CID, "local training, round 1"
        ).gas_used
        say("membership changes")
        newcomer = dev_account(7)
        change = MembershipChange.add(newcomer.address, "hospital-6", 3)
        approvals = [ledger.approve_membership_change(a, change) for a in roles.institutions[:3]]
        gas["addInstitution_k3"] = ledger.apply_membership_change(roles.deployer, change, approvals).gas_used
        change = MembershipChange.set_threshold(4)
        approvals = [ledger.approve_membership_change(a, change) for a in roles.institutions[:3]]
        gas["setThreshold_k3"] = ledger.apply_membership_change(roles.deployer, change, approvals).gas_used

    baseline = gas["plainTransfer"]
    return {
        "chain": kind,
        "compiler": compiled.compiler_version,
        "evm_version": compiled.settings.get("evmVersion"),
        "calldata": {"cid_chars": len(REALISTIC_CID), "sm9_signature_bytes": SM9_SIGNATURE_BYTES},
        "gas": gas,
        "ratio_to_plain_transfer": {
            k: round(v / baseline, 3) for k, v in gas.items() if k != "plainTransfer"
        },
        "targets": {
            "submitUpdate": _target(gas["submitUpdate"], SUBMIT_UPDATE_TARGET),
            "postGlobalModel_k3": _target(gas["postGlobalModel_k3"], POST_GLOBAL_MODEL_K3_TARGET),
        },
    }


def _target(measured: int, limit: int) -> dict[str, Any]:
    return {"gas": measured, "target": limit, "met": measured <= limit}


def _transfer_gas(w3: Any, sender: Any, to: str) -> int:
    tx = {
        "to": to,
        "value": 1,
        "gas": 21_000,
        "chainId": int(w3.eth.chain_id),
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "maxFeePerGas": 2 * int(w3.eth.gas_price) + 1,
        "maxPriorityFeePerGas": 1,
    }
    tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    return int(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["gasUsed"])
