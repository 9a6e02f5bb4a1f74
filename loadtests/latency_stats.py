"""Per-request samples and their exact statistics, shared by the benchmark's clients.

Kept free of Locust (whose import patches the standard library with gevent) so that the Go
client's results (:mod:`loadtests.overload`) are summarised the same way without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Sample:
    """One request as seen by the client."""

    at: float
    latency_ms: float
    status: int
    ok: bool


def summarise(samples: list[Sample], seconds: float, offered: float) -> dict[str, Any]:
    """Throughput, error counts and exact latency percentiles of one step."""
    latencies = sorted(s.latency_ms for s in samples)
    failures = [s for s in samples if not s.ok]
    statuses: dict[str, int] = {}
    for sample in failures:
        statuses[str(sample.status)] = statuses.get(str(sample.status), 0) + 1
    rejected = sorted(s.latency_ms for s in failures if s.status in (429, 503))

    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]

    return {
        "offered_rps": offered,
        "achieved_rps": len(samples) / seconds if seconds else 0.0,
        "requests": len(samples),
        "errors": len(failures),
        "error_statuses": statuses,
        "p50_ms": pct(latencies, 0.50),
        "p90_ms": pct(latencies, 0.90),
        "p95_ms": pct(latencies, 0.95),
        "p99_ms": pct(latencies, 0.99),
        "p999_ms": pct(latencies, 0.999),
        "max_ms": latencies[-1] if latencies else None,
        "rejections": len(rejected),
        "rejection_p99_ms": pct(rejected, 0.99),
    }
