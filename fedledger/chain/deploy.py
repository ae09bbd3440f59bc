"""Deploy a FederatedLedger and describe the deployment in a JSON file other commands can find.

The deployment file holds the RPC URL, chain id, address, deployment block (where event searches
start), the consortium as deployed, and the ABI, so clients need neither the compiler nor the
sources. It holds no keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from fedledger.chain.approvals import NO_PRIVACY_BUDGET, PrivacyBudgetSetting
from fedledger.chain.compiler import CompiledContract, compile_ledger
from fedledger.chain.errors import ErrorDecoder, LedgerRevert, revert_data_of
from fedledger.fileio import atomic_write_text

if TYPE_CHECKING:
    from web3 import Web3

    from fedledger.chain.client import LedgerClient

DEFAULT_DEPLOYMENT_FILE = Path(".fedledger") / "deployment.json"
DEPLOYMENT_ENV = "FEDLEDGER_DEPLOYMENT"


@dataclass(frozen=True)
class InstitutionSpec:
    address: str
    sm9_id: str


@dataclass
class Deployment:
    rpc_url: str
    chain_id: int
    address: str
    deploy_block: int
    tx_hash: str
    gas_used: int
    aggregator: str
    threshold: int
    institutions: list[InstitutionSpec]
    compiler_version: str
    abi: list[dict[str, Any]] = field(repr=False)
    privacy_budget: PrivacyBudgetSetting = NO_PRIVACY_BUDGET

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        values = dict(data)
        values["institutions"] = [InstitutionSpec(**i) for i in data["institutions"]]
        if "privacy_budget" in data:
            values["privacy_budget"] = PrivacyBudgetSetting(**data["privacy_budget"])
        return cls(**values)

    def save(self, path: str | Path) -> Path:
        """Write atomically (readers never see half a file)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(target, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path | None = None) -> Deployment:
        """Load ``path``, else ``$FEDLEDGER_DEPLOYMENT``, else ``.fedledger/deployment.json``."""
        target = Path(path or os.environ.get(DEPLOYMENT_ENV) or DEFAULT_DEPLOYMENT_FILE)
        try:
            data = json.loads(target.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no deployment file at {target}: run `fedledger chain up` or `fedledger chain deploy`"
            ) from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"deployment file {target} is not valid JSON: {exc}") from None
        try:
            return cls.from_json(data)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"deployment file {target} lacks a field: {exc}") from None

    def client(self, w3: Web3 | None = None) -> LedgerClient:
        from fedledger.chain.client import LedgerClient

        if w3 is None:
            return LedgerClient.connect(self.rpc_url, self.address, self.abi, from_block=self.deploy_block)
        return LedgerClient(w3, self.address, self.abi, from_block=self.deploy_block)


def constructor_args(
    aggregator: str,
    institutions: Sequence[InstitutionSpec],
    threshold: int,
    privacy_budget: PrivacyBudgetSetting = NO_PRIVACY_BUDGET,
) -> tuple[str, list[str], list[str], int, int, int]:
    """FederatedLedger's constructor arguments, in order (also for estimating its gas)."""
    return (
        to_checksum_address(aggregator),
        [to_checksum_address(i.address) for i in institutions],
        [i.sm9_id for i in institutions],
        threshold,
        privacy_budget.epsilon_micro,
        privacy_budget.delta_pico,
    )


def deploy_ledger(
    w3: Web3,
    deployer: LocalAccount,
    *,
    aggregator: str,
    institutions: Sequence[InstitutionSpec],
    threshold: int,
    compiled: CompiledContract | None = None,
    rpc_url: str = "",
    privacy_budget: PrivacyBudgetSetting = NO_PRIVACY_BUDGET,
) -> Deployment:
    """Deploy FederatedLedger with its founding institutions, k and the consortium's privacy
    budget (none by default: rounds without differential privacy); returns the deployment record."""
    from web3.exceptions import ContractLogicError

    if not institutions:
        raise ValueError("a ledger needs at least one founding institution")
    if not 1 <= threshold <= len(institutions):
        raise ValueError(
            f"threshold k={threshold} must be between 1 and the {len(institutions)} institutions"
        )
    compiled = compiled or compile_ledger()
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    args = constructor_args(aggregator, institutions, threshold, privacy_budget)
    chain_id = int(w3.eth.chain_id)
    try:
        tx = factory.constructor(*args).build_transaction(
            {
                "from": deployer.address,
                "chainId": chain_id,
                "nonce": w3.eth.get_transaction_count(deployer.address, "pending"),
            }
        )
    except ContractLogicError as exc:
        data = revert_data_of(exc)
        if data is None:
            raise LedgerRevert({"detail": str(exc)}, call="deploy FederatedLedger") from exc
        raise ErrorDecoder(compiled.abi).decode(data, call="deploy FederatedLedger") from None
    tx["gas"] = int(tx["gas"] * 6 // 5)
    tx_hash = w3.eth.send_raw_transaction(deployer.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        detail = f"deployment transaction 0x{bytes(tx_hash).hex()} failed"
        raise LedgerRevert({"detail": detail}, call="deploy FederatedLedger")
    return Deployment(
        rpc_url=rpc_url,
        chain_id=chain_id,
        address=to_checksum_address(receipt["contractAddress"]),
        deploy_block=int(receipt["blockNumber"]),
        tx_hash="0x" + bytes(tx_hash).hex(),
        gas_used=int(receipt["gasUsed"]),
        aggregator=args[0],
        threshold=threshold,
        institutions=[InstitutionSpec(to_checksum_address(i.address), i.sm9_id) for i in institutions],
        compiler_version=compiled.compiler_version,
        abi=compiled.abi,
        privacy_budget=privacy_budget,
    )


def dev_consortium(institutions: int = 5, sm9_id_prefix: str = "hospital-") -> list[InstitutionSpec]:
    """The dev institutions (dev accounts 2..) with SM9 identities ``hospital-1`` ..."""
    from fedledger.chain.devaccounts import dev_roles

    roles = dev_roles(institutions)
    return [InstitutionSpec(a.address, f"{sm9_id_prefix}{i + 1}") for i, a in enumerate(roles.institutions)]
