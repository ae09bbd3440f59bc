"""``fedledger bench crypto`` runs end to end on a small file and reports what the goals are judged on."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fedledger.cli import app
from fedledger.envelope.bench import run_crypto_bench
from fedledger.envelope.errors import EnvelopeFormatError


def test_bench_crypto_prints_ratios_as_json() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--size-mib", "2", "--no-fsync", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["file_mib"] == 2 and figures["durable"] is False
    assert set(figures["encrypted"]) == {"AES-256-GCM", "SM4-GCM"}
    for aead in figures["encrypted"].values():
        assert aead["put_get_ratio_to_plain"] > 0 and isinstance(aead["meets_goal"], bool)
    wrapping = figures["wrapping"]
    assert wrapping["wrap_ms_per_recipient"] > 0 and wrapping["unwrap_ms_per_recipient"] > 0
    assert set(wrapping["parts_ms"]) == {
        "sm9_kem_encapsulate",
        "sm9_kem_decapsulate",
        "mlkem768_encapsulate",
        "mlkem768_decapsulate",
    }


def test_bench_refuses_bad_parameters() -> None:
    with pytest.raises(EnvelopeFormatError):
        run_crypto_bench(0)
    with pytest.raises(EnvelopeFormatError):
        run_crypto_bench(1, aeads=["ROT13"])
