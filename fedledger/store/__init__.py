"""Content-addressed model store: an embedded blockstore and a Kubo RPC backend behind one interface.

CIDs are the ones ``ipfs add`` gives with its defaults (CIDv0, 256 KiB chunks, balanced DAG,
174 links per node) or with ``--cid-version 1`` (raw leaves). Every read is verified block by
block against the CID. See docs/store.md.
"""

from fedledger.store.base import DEFAULT_MAX_DEPTH, DEFAULT_MAX_FILE_SIZE, ContentStore, Stat
from fedledger.store.builder import CHUNK_SIZE, MAX_LINKS, compute_cid
from fedledger.store.car import export_car, import_car
from fedledger.store.cid import CID
from fedledger.store.errors import (
    BackendUnavailableError,
    BlockNotFoundError,
    ContentMismatchError,
    InvalidCarError,
    InvalidCIDError,
    LimitExceededError,
    MalformedDagError,
    StoreError,
)
from fedledger.store.factory import default_store_spec, open_store
from fedledger.store.kubo import KuboStore
from fedledger.store.local import LocalStore

__all__ = [
    "CHUNK_SIZE",
    "CID",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_FILE_SIZE",
    "MAX_LINKS",
    "BackendUnavailableError",
    "BlockNotFoundError",
    "ContentMismatchError",
    "ContentStore",
    "InvalidCIDError",
    "InvalidCarError",
    "KuboStore",
    "LimitExceededError",
    "LocalStore",
    "MalformedDagError",
    "Stat",
    "StoreError",
    "compute_cid",
    "default_store_spec",
    "export_car",
    "import_car",
    "open_store",
]
