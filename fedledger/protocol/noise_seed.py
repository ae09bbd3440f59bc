"""The seed of a round's central DP noise: the aggregator's secret, committed before the updates
exist and bound to what the round includes, shown to the co-signers and never published.

Why this shape (docs/secagg.md, "Central DP"): co-signers must recompute the noised model bit for
bit, so they need the seed; but a seed anyone can read (e.g. one printed in the public manifest)
lets anyone who later receives the model subtract the noise, which voids the guarantee. Members
in a plain-alignment round already see every update, so handing them the seed costs nothing. The
commitment, published with the round's DP parameters and fetched by every node before it submits,
keeps the aggregator from trying secrets until it likes the noise; binding the seed to the updates
root keeps one secret from giving the same noise to two different sets of updates.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedledger.errors import FedLedgerError

SECRET_BYTES = 32
_COMMIT = b"fedledger/central-dp/commitment/v1"
_SEED = b"fedledger/central-dp/seed/v1"
_HEX32 = re.compile(r"0x[0-9a-f]{64}")
_MAX_CID_CHARS = 128


class NoiseSeedError(FedLedgerError, ValueError):
    """A noise secret that is malformed or does not open the round's commitment."""


def _context(chain_id: int, contract: str, round_index: int) -> bytes:
    address = bytes.fromhex(contract.lower().removeprefix("0x"))
    return chain_id.to_bytes(32, "big") + address + round_index.to_bytes(8, "big")


def _check_secret(secret: bytes) -> None:
    if len(secret) != SECRET_BYTES:
        raise NoiseSeedError(f"central-DP noise secret must be {SECRET_BYTES} bytes, got {len(secret)}")


def noise_commitment(secret: bytes, chain_id: int, contract: str, round_index: int) -> bytes:
    """SHA3-256 commitment to the round's noise secret (published before the updates are submitted)."""
    _check_secret(secret)
    return hashlib.sha3_256(_COMMIT + _context(chain_id, contract, round_index) + secret).digest()


def noise_seed(
    secret: bytes, commitment: bytes, chain_id: int, contract: str, round_index: int, updates_root: bytes
) -> bytes:
    """The 256-bit noise seed, after checking that ``secret`` opens ``commitment``."""
    if not hmac.compare_digest(noise_commitment(secret, chain_id, contract, round_index), commitment):
        raise NoiseSeedError(f"the round {round_index} noise secret does not open its published commitment")
    if len(updates_root) != 32:
        raise NoiseSeedError("updates root must be 32 bytes")
    return hashlib.sha3_256(_SEED + _context(chain_id, contract, round_index) + updates_root + secret).digest()


def parse_hex32(text: Any, what: str) -> bytes:
    """32 bytes from untrusted ``0x`` + 64 lower-case hex digits (how commitments and digests travel)."""
    if not isinstance(text, str) or not _HEX32.fullmatch(text):
        raise NoiseSeedError(f"{what} must be 0x and 64 lower-case hex digits")
    return bytes.fromhex(text[2:])


@dataclass(frozen=True)
class PublishedNoise:
    """What a round's manifest says about its noise secret: the commitment (given to the nodes before
    they submit) and where co-signers fetch the secret, sealed to the round's readers, with its SM3."""

    commitment: bytes
    secret_cid: str
    secret_digest: bytes

    def to_dict(self) -> dict[str, str]:
        return {
            "commitment": "0x" + self.commitment.hex(),
            "secret_cid": self.secret_cid,
            "secret_digest": "0x" + self.secret_digest.hex(),
        }

    @classmethod
    def from_dict(cls, raw: Any) -> PublishedNoise:
        """Parse the manifest's untrusted ``noise`` member: exactly these fields, each well formed."""
        if not isinstance(raw, Mapping) or set(raw) != {"commitment", "secret_cid", "secret_digest"}:
            raise NoiseSeedError("noise must have exactly the fields commitment, secret_cid and secret_digest")
        commitment = parse_hex32(raw["commitment"], "noise.commitment")
        digest = parse_hex32(raw["secret_digest"], "noise.secret_digest")
        cid = raw["secret_cid"]
        if not isinstance(cid, str) or not 0 < len(cid) <= _MAX_CID_CHARS:
            raise NoiseSeedError(f"noise.secret_cid must be a string of 1..{_MAX_CID_CHARS} characters")
        return cls(commitment, cid, digest)
