"""``open_store("local:DIR" | "kubo:ADDRESS")``: one string picks the backend, for CLIs and config files.

Without a spec the store comes from $FEDLEDGER_STORE, else the embedded store under
$FEDLEDGER_HOME/store (default ~/.fedledger/store), so a newcomer needs nothing installed.
"""

from __future__ import annotations

import os
from pathlib import Path

from fedledger.store.base import ContentStore
from fedledger.store.errors import StoreError


def default_store_spec() -> str:
    """The spec used when none is given: $FEDLEDGER_STORE, else local:$FEDLEDGER_HOME/store."""
    explicit = os.environ.get("FEDLEDGER_STORE", "").strip()
    if explicit:
        return explicit
    home = os.environ.get("FEDLEDGER_HOME", "").strip()
    base = Path(home).expanduser() if home else Path.home() / ".fedledger"
    return f"local:{base / 'store'}"


def open_store(spec: str | None = None, *, timeout: float = 60.0) -> ContentStore:
    """Open a store from a spec: ``local:DIR`` (embedded) or ``kubo:MULTIADDR|URL`` (Kubo RPC API).

    A bare directory path is taken as ``local:``. ``timeout`` applies to Kubo RPC calls.
    """
    spec = (spec or default_store_spec()).strip()
    kind, sep, rest = spec.partition(":")
    if sep and kind == "local":
        if not rest:
            raise StoreError("store spec 'local:' needs a directory, e.g. local:./store")
        from fedledger.store.local import LocalStore

        return LocalStore(Path(rest))
    if sep and kind == "kubo":
        from fedledger.store.kubo import DEFAULT_API, KuboStore

        return KuboStore(rest or DEFAULT_API, timeout=timeout)
    if not sep or spec.startswith(("/", ".", "~")):
        from fedledger.store.local import LocalStore

        return LocalStore(Path(spec))
    raise StoreError(f"unknown store spec {spec!r}: use local:DIR or kubo:/ip4/127.0.0.1/tcp/5001")
