"""How long the ledger client waits on the chain: the defaults each role's config starts from.

Kept apart from ``client.py`` so that config files can name these defaults without loading
eth-account and web3.
"""

from __future__ import annotations

RPC_TIMEOUT_SECONDS = 60.0  # one JSON-RPC call; a slow remote node answers well within this
RECEIPT_TIMEOUT_SECONDS = 120.0  # how long to wait for a sent transaction to be mined
