"""A transaction's fields in one JSON-RPC batch, and its receipt asked bare.

web3's ``build_transaction`` asks the nonce, the gas estimate, the priority fee and the latest block
one request at a time, each through its request stack (~2 ms of CPU apiece, several times the local
chain's answer), and its receipt wait sleeps 0.1 s whenever the receipt is not there at once. A role
sends a dozen transactions a round. Here the four questions go out as one batch, the fields are
filled as web3 fills them (EIP-1559: max fee = priority fee + 2 × base fee), and the receipt is asked
once bare. Anything unusual (a revert while estimating, an endpoint without batches or without
EIP-1559, an error reply) returns None, and the caller asks web3, which raises what it always raised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from web3 import Web3

RECEIPT_POLL_SECONDS = 0.02  # a receipt not there at once: ask again this soon (local chains mine at once)


def _int(value: Any) -> int | None:
    try:
        return int(str(value), 16)
    except (TypeError, ValueError):
        return None


def batched_fields(w3: Web3, chain_id: int, sender: str, to: str, data: str) -> dict[str, Any] | None:
    """The transaction (unsigned, gas not yet given its margin) from one batch, or None: ask web3."""
    from web3.types import RPCEndpoint

    call = {"from": sender, "to": to, "data": data}
    try:
        replies = w3.provider.make_batch_request(  # type: ignore[attr-defined]
            [
                (RPCEndpoint("eth_getTransactionCount"), [sender, "pending"]),
                (RPCEndpoint("eth_estimateGas"), [call]),
                (RPCEndpoint("eth_maxPriorityFeePerGas"), []),
                (RPCEndpoint("eth_getBlockByNumber"), ["latest", False]),
            ]
        )
    except Exception:  # no batches here (or a transport hiccup): the one-at-a-time path says what is wrong
        return None
    if not isinstance(replies, list) or len(replies) != 4 or any("error" in r for r in replies):
        return None
    nonce, gas, priority = (_int(r.get("result")) for r in replies[:3])
    block = replies[3].get("result")
    base = _int(block.get("baseFeePerGas")) if isinstance(block, dict) else None
    if nonce is None or gas is None or priority is None or base is None:
        return None
    return {
        "type": 2,
        "chainId": chain_id,
        "from": sender,
        "to": to,
        "data": data,
        "value": 0,
        "nonce": nonce,
        "gas": gas,
        "maxPriorityFeePerGas": priority,
        "maxFeePerGas": priority + 2 * base,
    }


def bare_receipt(w3: Web3, tx_hash: bytes) -> tuple[int, int, int] | None:
    """(status, block number, gas used) of a mined transaction asked once bare; None: not mined yet or odd."""
    from web3.types import RPCEndpoint

    reply = w3.provider.make_request(RPCEndpoint("eth_getTransactionReceipt"), ["0x" + bytes(tx_hash).hex()])
    receipt = reply.get("result")
    if not isinstance(receipt, dict):
        return None
    fields = (_int(receipt.get("status")), _int(receipt.get("blockNumber")), _int(receipt.get("gasUsed")))
    if any(f is None for f in fields):
        return None
    status, block, gas_used = fields
    assert status is not None and block is not None and gas_used is not None
    return status, block, gas_used
