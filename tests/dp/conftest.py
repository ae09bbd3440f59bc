"""A fresh ledger deployed with a privacy budget (epsilon 8, delta 1e-5) on the session Anvil."""

from __future__ import annotations

import pytest
from web3 import Web3

from fedledger.chain.approvals import PrivacyBudgetSetting
from fedledger.chain.client import LedgerClient
from fedledger.chain.compiler import CompiledContract
from fedledger.chain.deploy import Deployment, deploy_ledger, dev_consortium
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.localchain import LocalChain

BUDGET = PrivacyBudgetSetting.of(8.0, 1e-5)


@pytest.fixture
def budget_ledger(
    anvil_chain: LocalChain, anvil_w3: Web3, compiled_ledger: CompiledContract, dev_accounts: DevRoles
) -> tuple[Deployment, LedgerClient]:
    deployment = deploy_ledger(
        anvil_w3,
        dev_accounts.deployer,
        aggregator=dev_accounts.aggregator.address,
        institutions=dev_consortium(len(dev_accounts.institutions)),
        threshold=3,
        compiled=compiled_ledger,
        rpc_url=anvil_chain.rpc_url,
        privacy_budget=BUDGET,
    )
    return deployment, deployment.client(anvil_w3)
