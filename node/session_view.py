"""Reading the aggregator's session view as untrusted input: every field the node relies on is
checked for shape here, so a malformed view costs one poll (SessionViewError), never the node."""

from __future__ import annotations

from typing import Any

import httpx

from fedledger.errors import FedLedgerError
from fedledger.sm9 import Signature, SM9Error
from fedledger.sm9.threshold import Commitment

SESSION_PHASES = frozenset({"commit", "sign", "approve", "ready", "failed"})
__all__ = ["SessionViewError", "frozen_commitments", "parse_session_view", "threshold_signature"]


class SessionViewError(FedLedgerError):
    """The aggregator's session view is malformed; the node skips it and looks again next poll."""


def parse_session_view(response: httpx.Response) -> tuple[dict[str, Any], str, str]:
    """The view, its session id and phase; SessionViewError unless they have the shapes the node relies on."""
    try:
        view = response.json()
    except ValueError:
        raise SessionViewError("the aggregator's session view is not JSON") from None
    if not isinstance(view, dict):
        raise SessionViewError("the aggregator's session view is not a JSON object")
    sid, phase = view.get("session_id"), view.get("phase")
    if not isinstance(sid, str) or not 0 < len(sid) <= 256:
        raise SessionViewError("the session view has no valid session_id")
    if not isinstance(phase, str) or phase not in SESSION_PHASES:
        raise SessionViewError(f"the session view has an unknown phase {str(phase)[:40]!r}")
    excluded = view.get("excluded", [])
    if not isinstance(excluded, list) or not all(isinstance(i, int) for i in excluded):
        raise SessionViewError("the session view's excluded list is not a list of share indices")
    return view, sid, str(phase)


def frozen_commitments(view: dict[str, Any]) -> list[Commitment]:
    raw = view.get("commitments")
    if not isinstance(raw, list):
        raise SessionViewError("the session view in phase sign has no commitment list")
    try:
        return [Commitment.from_dict(c) for c in raw]
    except (SM9Error, AttributeError, TypeError) as exc:
        raise SessionViewError(f"the session view carries a malformed commitment: {exc}") from None


def threshold_signature(view: dict[str, Any]) -> tuple[bytes, Signature]:
    raw = view.get("signature_der")
    try:
        der = bytes.fromhex(str(raw))
        return der, Signature.from_der(der)
    except (ValueError, SM9Error) as exc:
        raise SessionViewError(f"the session view's threshold signature is malformed: {exc}") from None
