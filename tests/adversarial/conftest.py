"""Shared fixtures of the adversarial suite: a federation on its own Anvil, one per test module.

Tests in a module share the consortium and play their rounds one after another (each test opens
the next round), so a module pays for one chain, one deployment and one set of keys.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from demo.in_process import InProcessConsortium
from fedledger.chain.localchain import LocalChain


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    """Five institutions (widths 1 .. 1/8, one local epoch), k = 3, round 0 already posted honestly."""
    with LocalChain("anvil") as chain:
        consortium = InProcessConsortium.create(tmp_path_factory.mktemp("federation"), chain, epochs=1)
        consortium.run_rounds(1)
        yield consortium
