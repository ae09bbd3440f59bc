"""Item 2 and 5 of issue #10, the aggregator's side: its main loop never ends on one failed step.

A failing step (here: round 0 opened from a base CID that is not a CID, so every pass raises) is
logged once, shown with its reason in the API's status, and retried until stopped; only a
misconfiguration (this key is not the ledger's aggregator, no contract at the address) stops it at once.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from aggregator.driver import AggregatorMisconfigured, run_aggregator
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles
from tests.support.signing_session import SessionFixture, aggregator_context, session_fixture


@pytest.fixture
def fx(ledger: LedgerClient, dev_accounts: DevRoles) -> SessionFixture:
    return session_fixture(ledger, dev_accounts)  # round 0 is open from "bafkreibasemodel", not a CID


def test_a_step_that_keeps_failing_is_reported_in_the_status_and_retried_never_fatal(
    fx: SessionFixture, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = aggregator_context(fx, tmp_path)
    stop = threading.Event()
    outcome: list[object] = []

    def drive() -> None:
        try:
            outcome.append(run_aggregator(ctx, rounds=1, stop=stop))
        except BaseException as exc:
            outcome.append(exc)

    with caplog.at_level(logging.ERROR, logger="aggregator.driver"):
        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while ctx.board.status.get("state") != "retrying" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # several more failing passes
        assert thread.is_alive(), outcome
        assert ctx.board.status["state"] == "retrying" and "bafkreibasemodel" in ctx.board.status["reason"]
        stop.set()
        thread.join(10)
    assert outcome == [0]
    failures = [r for r in caplog.records if "bafkreibasemodel" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]


def test_an_aggregator_whose_key_is_not_the_ledgers_aggregator_stops_at_once(
    fx: SessionFixture, tmp_path: Path
) -> None:
    ctx = aggregator_context(fx, tmp_path, account=fx.roles.institutions[0])
    with pytest.raises(AggregatorMisconfigured, match="is not the aggregator"):
        run_aggregator(ctx, rounds=1)


def test_an_aggregator_pointed_at_no_contract_stops_at_once(fx: SessionFixture, tmp_path: Path) -> None:
    ctx = aggregator_context(fx, tmp_path)
    ctx.ledger = LedgerClient(fx.ledger.w3, fx.roles.outsider.address, fx.ledger.abi)
    with pytest.raises(AggregatorMisconfigured, match="no contract at"):
        run_aggregator(ctx, rounds=1)
