"""The ledger side of fedledger: compile and deploy the FederatedLedger contract, run a local chain,
and read and write the ledger through a typed client.

Submodules are imported explicitly (``from fedledger.chain.client import LedgerClient``) so that
importing the package stays cheap: web3 loads only when a client is built.
"""
