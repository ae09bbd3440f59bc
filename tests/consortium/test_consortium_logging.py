"""Roles log one readable line per step without -v, and JSON lines with --log-json; libraries stay quiet."""

from __future__ import annotations

import json
import logging

import pytest

from fedledger.cli.common import setup_logging


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("node", "aggregator", "fedledger"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_steps_are_logged_without_verbose_and_library_chatter_is_not(capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    logging.getLogger("node.participant").info("hospital-1: submitted round 0 update Qm1")
    logging.getLogger("web3.providers").info("a library's detail")
    logging.getLogger("aggregator.driver").debug("detail only with -v")
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("node.participant: hospital-1: submitted round 0 update Qm1")


def test_log_json_writes_one_object_per_line(capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging(log_json=True)
    logging.getLogger("aggregator.driver").info("round %d: waiting for %s", 2, "hospital-3")
    line = json.loads(capfd.readouterr().err.strip())
    assert line["message"] == "round 2: waiting for hospital-3" and line["level"] == "info"
    assert line["logger"] == "aggregator.driver" and line["time"].endswith("Z")
