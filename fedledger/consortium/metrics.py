"""Per-round federated metrics without moving data: each site scores every posted global model on
its own validation split and reports the number, signed with its Ethereum key, to the aggregator.

A report names the ledger, the round, the member, the metric, its value and the sample count; the
aggregator keeps the reports it can verify (signer = a roster member = the report's institution)
and serves them; whoever reads them (``consortium metrics``) verifies every signature again, so the
aggregator cannot invent or alter a site's number. The federated value of a round is the
sample-weighted mean of the sites' values.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedledger.errors import FedLedgerError
from fedledger.fileio import atomic_write_text
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.session_auth import payload_signer, sign_payload

KIND = "fedledger/metric/v1"


class MetricRejected(FedLedgerError):
    """A metric report is malformed or not signed by the member it names."""


def make_report(
    chain_id: int, contract: str, round_index: int, institution: str, metric: str, value: float, samples: int
) -> dict[str, Any]:
    return {
        "kind": KIND,
        "chain_id": chain_id,
        "contract": contract.lower(),
        "round": round_index,
        "institution": institution.lower(),
        "metric": metric,
        "value": round(float(value), 6),
        "samples": int(samples),
    }


def signed(private_key: bytes, report: dict[str, Any]) -> dict[str, Any]:
    return {"payload": report, "auth": sign_payload(private_key, report)}


@dataclass(frozen=True)
class Signers:
    """Who may report for which ledger: member addresses (lower case) and the names to show."""

    chain_id: int
    contract: str
    names: dict[str, str]

    @classmethod
    def of_roster(cls, roster: Consortium) -> Signers:
        return cls(roster.chain_id, roster.contract, {m.address.lower(): m.name for m in roster.members})

    @classmethod
    def of_ledger(cls, ledger: Any) -> Signers:
        """Every institution the ledger ever registered (a removed member's past reports still count)."""
        return cls(ledger.chain_id, ledger.address, {i.address.lower(): i.sm9_id for i in ledger.institutions()})


def verify(body: dict[str, Any], signers: Signers | Consortium) -> dict[str, Any]:
    """The report if its signer is the member it names, of the signers' ledger; else MetricRejected."""
    if isinstance(signers, Consortium):
        signers = Signers.of_roster(signers)
    try:
        report, auth = dict(body["payload"]), str(body["auth"])
        signer = payload_signer(report, auth).lower()
        ok = (
            report.get("kind") == KIND
            and int(report["chain_id"]) == signers.chain_id
            and str(report["contract"]).lower() == signers.contract.lower()
            and signer == str(report["institution"]).lower()
            and signer in signers.names
            and 0.0 <= float(report["value"]) <= 1.0
            and int(report["samples"]) > 0
            and int(report["round"]) >= 0
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MetricRejected(f"malformed or foreign metric report: {exc}") from None
    if not ok:
        raise MetricRejected(f"metric report from {signer} does not check out")
    return {**report, "name": signers.names[signer]}


class MetricBoard:
    """The aggregator's verified reports, one per (round, member), kept in a JSON file across restarts."""

    def __init__(self, roster: Consortium, path: Path | None = None) -> None:
        self.roster = roster
        self.path = path
        self._lock = threading.Lock()
        self._bodies: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            self._bodies = json.loads(path.read_text(encoding="utf-8"))

    def add(self, body: dict[str, Any]) -> dict[str, Any]:
        report = verify(body, self.roster)
        with self._lock:
            self._bodies[f"{report['round']}:{report['institution']}"] = body
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.path, json.dumps(self._bodies, indent=1))
        return report

    def count(self, round_index: int) -> int:
        """How many sites reported on ``round_index``."""
        with self._lock:
            return sum(1 for key in self._bodies if key.startswith(f"{round_index}:"))

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._bodies.values())


def per_round(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per round: each site's value and the sample-weighted federated value."""
    rounds: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for report in reports:
        rounds[int(report["round"])].append(report)
    out = []
    for round_index in sorted(rounds):
        items = rounds[round_index]
        total = sum(int(r["samples"]) for r in items)
        out.append(
            {
                "round": round_index,
                "metric": items[0]["metric"],
                "federated": sum(float(r["value"]) * int(r["samples"]) for r in items) / total,
                "samples": total,
                "sites": {r.get("name", r["institution"]): float(r["value"]) for r in items},
            }
        )
    return out


def plot(rounds: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["round"] for r in rounds]
    sites = sorted({name for r in rounds for name in r["sites"]})
    for site in sites:
        points = [(r["round"], r["sites"][site]) for r in rounds if site in r["sites"]]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", alpha=0.6, label=site)
    ax.plot(xs, [r["federated"] for r in rounds], marker="o", linewidth=2.5, color="black", label="federated")
    metric = rounds[0]["metric"] if rounds else "metric"
    ax.set_xlabel("round (global model after it)")
    ax.set_ylabel(f"{metric} on local validation splits")
    ax.set_ylim(0, 1)
    ax.set_xticks(xs)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fetch_verified(
    aggregator_url: str, roster: Signers | Consortium, saved: Path | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The aggregator's reports that verify against the roster, and how many did not.

    When the aggregator is not running, the reports it saved (``saved``, in its kit) are read instead.
    """
    import httpx

    try:
        response = httpx.get(f"{aggregator_url}/metrics", timeout=30.0)
        response.raise_for_status()
        bodies = list(response.json()["reports"])
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        if saved is None or not saved.is_file():
            raise MetricRejected(f"cannot read metrics from the aggregator at {aggregator_url}: {exc}") from None
        bodies = list(json.loads(saved.read_text(encoding="utf-8")).values())
    reports, bad = [], 0
    for body in bodies:
        try:
            reports.append(verify(body, roster))
        except MetricRejected:
            bad += 1
    return reports, bad
