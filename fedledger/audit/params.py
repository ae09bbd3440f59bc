"""What the auditor accepts as input, in one place: the REST API, the service and the CLI share it.

Each parser turns untrusted text into a checked value or raises ``InvalidParameter`` with one line
naming what was wrong. The patterns and bounds here are also what the OpenAPI schema advertises, so
the schema and the server never disagree about what is valid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from eth_utils import is_hex_address, to_checksum_address

from fedledger.audit.errors import InvalidParameter
from fedledger.audit.models import Page
from fedledger.store import CID

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 1_000_000_000
MAX_ROUND = 2**64 - 1
MAX_CID_LENGTH = 128  # the contract's limit
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
# The CID forms the store parses: CIDv0 ("Qm" + 44 base58btc), CIDv1 in base32 ("b...") or base58btc
# ("z..."). The server still parses the CID fully; the pattern keeps the OpenAPI schema honest.
_B58 = "1-9A-HJ-NP-Za-km-z"
CID_PATTERN = rf"^(Qm[{_B58}]{{44}}|b[a-z2-7]{{8,127}}|z[{_B58}]{{8,127}})$"


def parse_address(text: str, what: str = "address") -> str:
    """A 0x-prefixed 20-byte hex address, checksummed; InvalidParameter otherwise."""
    if not isinstance(text, str) or not is_hex_address(text) or not text.startswith(("0x", "0X")):
        raise InvalidParameter(f"{what} {text!r} is not a 0x-prefixed 20-byte hex Ethereum address")
    return str(to_checksum_address(text))


def parse_cid_key(text: str) -> object:
    """The comparison key (``cid_key``) of a CID a client asks about; InvalidParameter unless the text
    has a CID's form (``CID_PATTERN``, exactly what the OpenAPI schema advertises). Text of that form
    that still does not decode is compared as text: it can only match an equally odd ledger entry."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_CID_LENGTH:
        raise InvalidParameter(f"CID must be 1..{MAX_CID_LENGTH} characters")
    if not text.strip():
        raise InvalidParameter("CID is blank")
    if not re.fullmatch(CID_PATTERN, text):
        raise InvalidParameter(f"{text!r} is not a valid CID (CIDv0 'Qm...', or CIDv1 'b...' / 'z...')")
    return cid_key(text)


def cid_key(text: str) -> object:
    """What makes two CID strings name the same content (CIDv0 and CIDv1 of one DAG agree).

    Ledger CIDs are untrusted: one that does not parse is compared as the text it is.
    """
    try:
        cid = CID.parse(text)
    except Exception:
        return text
    return (cid.codec, cid.multihash)


def check_paging(offset: int, limit: int) -> None:
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidParameter(f"offset must be between 0 and {MAX_OFFSET}, not {offset}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidParameter(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")


def paginate(items: Sequence[T], offset: int, limit: int) -> Page[T]:
    check_paging(offset, limit)
    return Page[T](total=len(items), offset=offset, limit=limit, items=list(items[offset : offset + limit]))


def check_round_number(round: int) -> None:
    if not 0 <= round <= MAX_ROUND:
        raise InvalidParameter(f"round must be between 0 and 2^64-1, not {round}")


def check_confirmations(confirmations: int) -> None:
    if confirmations < 0:
        raise InvalidParameter("--confirmations must be >= 0")


def check_from_block(from_block: int) -> None:
    if from_block < 0:
        raise InvalidParameter("the first block must be >= 0")


def check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise InvalidParameter(f"--port must be between 1 and 65535, not {port}")


def check_log_level(log_level: str) -> None:
    if log_level not in LOG_LEVELS:
        raise InvalidParameter(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")
