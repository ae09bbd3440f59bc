"""The SM9 test vectors, vendored in the repository so the suite needs nothing outside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SM9_VECTORS_PATH = Path(__file__).parent / "vectors" / "sm9_vectors.json"


@pytest.fixture(scope="session")
def sm9_vectors() -> dict[str, Any]:
    """GM/T 0044 curve constants, the signature worked example and the encryption key example (GmSSL-checked)."""
    return json.loads(SM9_VECTORS_PATH.read_text(encoding="utf-8"))
