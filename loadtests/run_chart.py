"""PNG chart of a Locust run: throughput and p50/p95/p99 latency over time.

Reads Locust's ``<prefix>_stats_history.csv`` (written with ``--csv-full-history``); its
``Aggregated`` rows hold, once a second, the current requests/s and the latency percentiles
over Locust's recent window.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


@dataclass
class History:
    """Time series of one Locust run (seconds since start)."""

    seconds: list[float] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    failures_per_s: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p95: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "", "N/A") else float("nan")
    except ValueError:
        return float("nan")


def read_history(path: Path) -> History:
    """The ``Aggregated`` rows of a stats-history CSV."""
    history = History()
    start: float | None = None
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") != "Aggregated":
                continue
            stamp = _number(row["Timestamp"])
            start = stamp if start is None else start
            history.seconds.append(stamp - start)
            history.users.append(int(_number(row.get("User Count")) or 0))
            history.rps.append(_number(row.get("Requests/s")))
            history.failures_per_s.append(_number(row.get("Failures/s")))
            history.p50.append(_number(row.get("50%")))
            history.p95.append(_number(row.get("95%")))
            history.p99.append(_number(row.get("99%")))
    return history


def plot_history(history: History, out: Path, title: str) -> Path:
    """Two stacked panels (throughput + users, latency percentiles) written to ``out``."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    top.plot(history.seconds, history.rps, label="requests/s", color="tab:blue")
    top.plot(history.seconds, history.failures_per_s, label="failures/s", color="tab:red")
    top.set_ylabel("requests/s")
    users_axis = top.twinx()
    users_axis.plot(history.seconds, history.users, label="users", color="tab:gray", ls="--")
    users_axis.set_ylabel("users")
    top.legend(loc="upper left")
    top.set_title(title)
    for series, label in ((history.p50, "p50"), (history.p95, "p95"), (history.p99, "p99")):
        bottom.plot(history.seconds, series, label=label)
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds since start")
    bottom.legend(loc="upper left")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
