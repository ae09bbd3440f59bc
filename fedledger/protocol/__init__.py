"""What the parties sign and agree on: canonical entry and round-record bytes, and the Merkle tree.

The node, the aggregator and the audit API all rebuild these byte strings from on-chain data,
so the encoding lives in one place and depends on nothing but SM3.
"""

from fedledger.protocol.entries import RoundRecord, UpdateEntry
from fedledger.protocol.merkle import MerkleProof, merkle_proof, merkle_root, verify_proof
from fedledger.widths import ppm_to_width, width_to_ppm

__all__ = [
    "MerkleProof",
    "RoundRecord",
    "UpdateEntry",
    "merkle_proof",
    "merkle_root",
    "ppm_to_width",
    "verify_proof",
    "width_to_ppm",
]
