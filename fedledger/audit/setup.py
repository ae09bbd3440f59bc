"""Build an ``AuditService`` from what an operator has on disk: the deployment (or an RPC URL and a
contract address), a store spec and the KGC's SM9 master public key.

The chain connection uses a short timeout and few retries, so an unreachable chain becomes a
prompt 503 rather than a request that hangs for minutes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from web3 import Web3

    from fedledger.audit.service import AuditService

RPC_TIMEOUT_SECONDS = 15.0


def audit_web3(rpc_url: str, timeout: float = RPC_TIMEOUT_SECONDS) -> Web3:
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout
    from web3 import HTTPProvider, Web3
    from web3.providers.rpc.utils import ExceptionRetryConfiguration

    retry = ExceptionRetryConfiguration(errors=(RequestsConnectionError, Timeout), retries=1, backoff_factor=0.1)
    return Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=retry))


def open_audit_service(
    *,
    store: str,
    master_public_key: str | Path,
    deployment: str | Path | None = None,
    rpc_url: str | None = None,
    contract: str | None = None,
    from_block: int = 0,
    consortium_identity: str | None = None,
    confirmations: int = 0,
) -> AuditService:
    """An AuditService for a deployment file, or for ``rpc_url`` + ``contract`` (ABI from the compiler).

    ``rpc_url`` also overrides the deployment file's URL. Raises ValueError / FileNotFoundError
    with a clear message for bad input; the chain itself is first contacted on the first request.
    """
    from fedledger.audit.index import DeploymentFacts
    from fedledger.audit.params import check_from_block, parse_address
    from fedledger.audit.service import AuditService
    from fedledger.chain.client import LedgerClient
    from fedledger.chain.deploy import Deployment
    from fedledger.sm9 import SignMasterPublicKey, SM9Error
    from fedledger.store import StoreError, open_store

    if deployment is None and (rpc_url is None or contract is None):
        raise ValueError("give a deployment file, or both an RPC URL and a contract address")
    if contract is not None:
        parse_address(contract, "contract")
    check_from_block(from_block)
    mpk_path = Path(master_public_key)
    if not mpk_path.is_file():
        raise FileNotFoundError(f"no SM9 master public key at {mpk_path}")
    try:
        mpk = SignMasterPublicKey.load(mpk_path)
    except (SM9Error, ValueError, OSError) as exc:
        raise ValueError(f"{mpk_path} is not an SM9 sign master public key: {exc}") from None
    try:
        content_store = open_store(store)
    except StoreError as exc:
        raise ValueError(f"cannot open store {store!r}: {exc}") from None

    expected = None
    if deployment is not None:
        record = Deployment.load(deployment)
        address = contract or record.address
        same_contract = address.lower() == record.address.lower()
        expected = DeploymentFacts(
            record.chain_id,
            record.deploy_block if same_contract else None,
            record.tx_hash if same_contract else None,
        )
        url = rpc_url or record.rpc_url
        if not url:
            raise ValueError(f"deployment file {deployment} names no RPC URL: pass --rpc-url")
        ledger = LedgerClient(audit_web3(url), address, record.abi, from_block=max(record.deploy_block, from_block))
    elif rpc_url is not None and contract is not None:
        from fedledger.chain.compiler import compile_ledger

        ledger = LedgerClient(audit_web3(rpc_url), contract, compile_ledger().abi, from_block=from_block)
    else:  # unreachable: checked above
        raise ValueError("give a deployment file, or both an RPC URL and a contract address")
    return AuditService(
        ledger,
        content_store,
        mpk,
        consortium_identity=consortium_identity,
        confirmations=confirmations,
        expected=expected,
    )
