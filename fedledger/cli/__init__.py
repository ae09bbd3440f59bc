"""The ``fedledger`` command line: ``fedledger.cli.app`` (the root app) and ``main`` (the script).

The root app lives in ``root.py`` and is built on first use, not when this package is imported:
the role packages' command modules import ``fedledger.cli.common``, and building the root loads
those modules, so building it here would make importing a role's CLI first circular.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fedledger.cli import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
