"""The development accounts every local chain funds: Anvil's and Hardhat's well-known mnemonic.

These keys are public knowledge and fit only local chains. Roles used across fedledger's demos and
tests: account 0 deploys, account 1 aggregates, accounts 2..6 are the five institutions and
account 9 is an outsider with funds but no membership.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from eth_account import Account
from eth_account.signers.local import LocalAccount

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEPLOYER_INDEX = 0
AGGREGATOR_INDEX = 1
FIRST_INSTITUTION_INDEX = 2
OUTSIDER_INDEX = 9
DEV_CHAIN_IDS = (31337, 1337)  # Anvil/Hardhat (31337) and Ganache-style (1337) local chains


@lru_cache(maxsize=32)
def dev_account(index: int) -> LocalAccount:
    """Development account ``index`` (BIP-44 path m/44'/60'/0'/0/index)."""
    if not 0 <= index < 20:
        raise ValueError(f"dev account index {index} outside the 20 accounts local chains fund")
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


@dataclass(frozen=True)
class DevRoles:
    """Dev accounts assigned to the consortium's roles (repr shows addresses only)."""

    deployer: LocalAccount
    aggregator: LocalAccount
    institutions: tuple[LocalAccount, ...]
    outsider: LocalAccount

    def __repr__(self) -> str:
        names = ", ".join(a.address for a in self.institutions)
        return (
            f"DevRoles(deployer={self.deployer.address}, aggregator={self.aggregator.address}, "
            f"institutions=[{names}], outsider={self.outsider.address})"
        )


def dev_roles(institutions: int = 5) -> DevRoles:
    if not 1 <= institutions <= OUTSIDER_INDEX - FIRST_INSTITUTION_INDEX:
        raise ValueError(f"between 1 and 7 dev institutions are available, not {institutions}")
    return DevRoles(
        deployer=dev_account(DEPLOYER_INDEX),
        aggregator=dev_account(AGGREGATOR_INDEX),
        institutions=tuple(dev_account(FIRST_INSTITUTION_INDEX + i) for i in range(institutions)),
        outsider=dev_account(OUTSIDER_INDEX),
    )
