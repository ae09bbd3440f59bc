"""How the role commands log: one readable line per step by default, JSON lines with --log-json.

The roles' own loggers (``node``, ``aggregator``, ``fedledger``) speak at INFO without ``-v``;
libraries stay at WARNING so their chatter does not bury the steps. ``-v`` lowers both to DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
import time

ROLE_LOGGERS = ("node", "aggregator", "fedledger")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        level = record.levelname.lower()
        body = {"time": moment, "level": level, "logger": record.name, "message": record.getMessage()}
        return json.dumps(body, ensure_ascii=False)


def setup_role_logging(*, verbose: bool = False, log_json: bool = False) -> None:
    """Configure the root handler for a long-running role (node, aggregator)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_json:
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in ROLE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
