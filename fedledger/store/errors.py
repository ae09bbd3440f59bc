"""The store's error hierarchy: one base class so callers can catch everything the store raises.

Every error names what it is about (the CID, the file, the backend address), because the
integrator's logs are read by people who were not there when the round ran.
"""

from __future__ import annotations

from fedledger.errors import FedLedgerError


class StoreError(FedLedgerError):
    """Base class of every error the content store raises."""


class InvalidCIDError(StoreError, ValueError):
    """A string or byte sequence is not a CID this store understands."""


class BlockNotFoundError(StoreError, KeyError):
    """A block (or the root of a file) is not in the store."""

    def __init__(self, cid: str, detail: str = "") -> None:
        self.cid = cid
        message = f"block {cid} not found"
        super().__init__(f"{message}: {detail}" if detail else message)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ContentMismatchError(StoreError):
    """Bytes that should belong to a CID hash to something else (corruption or a lying peer)."""

    def __init__(self, cid: str, detail: str) -> None:
        self.cid = cid
        super().__init__(f"content of {cid} does not match its CID: {detail}")


class MalformedDagError(StoreError):
    """A block hashes correctly but does not decode as the dag-pb/UnixFS file we expect."""

    def __init__(self, cid: str, detail: str) -> None:
        self.cid = cid
        super().__init__(f"block {cid} is not a valid UnixFS file node: {detail}")


class LimitExceededError(StoreError):
    """A file's DAG is larger or deeper than the reader allows (checked before its bytes are streamed)."""

    def __init__(self, cid: str, limit: str, value: int, detail: str) -> None:
        self.cid = cid
        self.limit = limit
        self.value = value
        super().__init__(f"{cid}: {detail}, over the limit {limit}={value}")


class BackendUnavailableError(StoreError):
    """The storage backend (a Kubo daemon) cannot be reached or keeps failing."""


class InvalidCarError(StoreError):
    """A CAR file is truncated, malformed or uses a feature this importer does not support."""
