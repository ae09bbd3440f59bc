"""The ledger part of a role's config file: which contract, over which endpoint, how long to wait.

Node and aggregator configs both extend :class:`LedgerSettings`, so the fields have one name, one
default and one meaning in every ``*.toml``. web3 and the compiler load only when a client is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from fedledger.chain.client import LedgerClient

RPC_TIMEOUT_SECONDS = 60.0  # one JSON-RPC call; a slow remote node answers well within this
RECEIPT_TIMEOUT_SECONDS = 120.0  # how long to wait for a sent transaction to be mined


class LedgerSettings(BaseModel):
    """Where the ledger is and how long its client waits on the chain."""

    rpc_url: str
    contract: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    rpc_timeout_seconds: float = Field(RPC_TIMEOUT_SECONDS, gt=0, description="one JSON-RPC call to the chain")
    receipt_timeout_seconds: float = Field(
        RECEIPT_TIMEOUT_SECONDS, gt=0, description="how long to wait for a sent transaction to be mined"
    )

    def ledger_client(self) -> LedgerClient:
        """A client of the configured ledger that waits as configured (connects on first use)."""
        from fedledger.chain.client import LedgerClient
        from fedledger.chain.compiler import compile_ledger

        return LedgerClient.connect(
            self.rpc_url,
            self.contract,
            compile_ledger().abi,
            rpc_timeout_seconds=self.rpc_timeout_seconds,
            receipt_timeout_seconds=self.receipt_timeout_seconds,
        )
