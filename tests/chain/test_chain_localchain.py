"""LocalChain: a real Anvil (and Hardhat node) started, probed, persisted and stopped."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3

from fedledger.chain.compiler import CompiledContract
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.localchain import LocalChain, LocalChainError, rpc_request
from fedledger.errors import FedLedgerError
from tests.support.local_ledger import assert_ledger_kept, deploy_and_open_round


def test_anvil_starts_answers_and_releases_its_port() -> None:
    chain = LocalChain("anvil", chain_id=4242)
    with chain:
        assert chain.running
        assert int(str(rpc_request(chain.rpc_url, "eth_chainId")), 16) == 4242
        assert chain.rpc_url.startswith("http://127.0.0.1:")
        port = chain.port
        assert port is not None
    assert not chain.running
    # The port is released: a new chain can listen on it at once.
    with LocalChain("anvil", port=port) as again:
        assert rpc_request(again.rpc_url, "eth_blockNumber") == "0x0"
    with pytest.raises(LocalChainError, match="not running"):
        _ = chain.rpc_url


def test_state_persists_across_restarts(
    tmp_path: Path, compiled_ledger: CompiledContract, dev_accounts: DevRoles
) -> None:
    state = tmp_path / "state" / "anvil.json"
    with LocalChain("anvil", state_path=state) as chain:
        deployment = deploy_and_open_round(chain.rpc_url, compiled_ledger, dev_accounts, 5, 3)
    assert state.exists()
    with LocalChain("anvil", state_path=state) as chain:
        assert_ledger_kept(chain.rpc_url, deployment)
        assert deployment.client(Web3(HTTPProvider(chain.rpc_url))).threshold() == 3


def test_occupied_port_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        with pytest.raises(LocalChainError, match=f"port {port} is in use") as caught:
            LocalChain("anvil", port=port, startup_timeout=10).start()
    assert isinstance(caught.value, FedLedgerError)  # a CLI or role loop catches it with the rest


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown chain kind"):
        LocalChain("ganache")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Anvil only"):
        LocalChain("hardhat", state_path="x.json")
    with pytest.raises(ValueError, match="state_interval"):
        LocalChain("anvil", state_path="x.json", state_interval=0)


def test_hardhat_node_runs_the_same_dev_accounts(hardhat_chain: LocalChain, dev_accounts: DevRoles) -> None:
    accounts = [str(a).lower() for a in rpc_request(hardhat_chain.rpc_url, "eth_accounts")]  # type: ignore[union-attr]
    assert dev_accounts.deployer.address.lower() in accounts
    assert all(a.address.lower() in accounts for a in dev_accounts.institutions)
    assert "HardhatNetwork" in str(rpc_request(hardhat_chain.rpc_url, "web3_clientVersion"))
