"""Read the scoring API's Prometheus ``/metrics`` into what an audience cares about.

Throughput, error rate and latency percentiles are computed over the window between two
scrapes (as Prometheus' ``rate`` and ``histogram_quantile`` would), falling back to the
totals since the API started when nothing happened in the window.

Only scoring endpoints (paths under ``/v1/``) are counted, so health checks and the UI's own
``/metrics`` scrapes do not inflate the numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

#: Label names that carry the HTTP route / status in common instrumentations (BentoML's first).
_ENDPOINT_LABELS = ("endpoint", "path", "route", "handler")
_STATUS_LABELS = ("http_response_code", "status", "status_code", "code")
_SCORING_PREFIX = "/v1/"


@dataclass(frozen=True)
class MetricsSnapshot:
    """Counters read from one scrape."""

    taken_at: float
    #: Requests by HTTP status code (scoring endpoints only).
    requests_by_status: Mapping[str, float] = field(default_factory=dict)
    #: Cumulative latency histogram: upper bound (seconds) -> requests at or below it.
    latency_buckets: Mapping[float, float] = field(default_factory=dict)
    #: Requests being processed right now (scoring endpoints), if the API exports it.
    in_progress: float | None = None

    @property
    def total_requests(self) -> float:
        """All scoring requests counted so far."""
        return sum(self.requests_by_status.values())


@dataclass(frozen=True)
class ServiceStats:
    """What the Service tab shows."""

    throughput_rps: float | None
    error_rate: float | None
    rejected_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    total_requests: float
    in_progress: float | None
    window_s: float | None
    #: "window" when computed between two scrapes, "since start" when from totals.
    basis: str


def _label(labels: Mapping[str, str], names: Iterable[str]) -> str | None:
    for name in names:
        if name in labels:
            return labels[name]
    return None


def _is_scoring(labels: Mapping[str, str]) -> bool:
    endpoint = _label(labels, _ENDPOINT_LABELS)
    return endpoint is None or endpoint.startswith(_SCORING_PREFIX)


def _pick_family(names: Iterable[str], wanted_suffix: str) -> str | None:
    """The BentoML family if present, else any family whose name ends with the suffix."""
    candidates = sorted(name for name in names if name.endswith(wanted_suffix))
    preferred = [name for name in candidates if name.startswith("bentoml_service_")]
    chosen = preferred or candidates
    return chosen[0] if chosen else None


def parse_metrics(text: str, taken_at: float) -> MetricsSnapshot:
    """Parse Prometheus exposition text into a :class:`MetricsSnapshot`.

    Raises ``ValueError`` when the text is not Prometheus exposition format.
    """
    families = {family.name: family for family in text_string_to_metric_families(text)}
    counter_name = _pick_family([n for n, f in families.items() if f.type == "counter"], "request")
    histogram_name = _pick_family(
        [n for n, f in families.items() if f.type == "histogram"], "request_duration_seconds"
    )
    gauge_name = _pick_family(
        [n for n, f in families.items() if f.type == "gauge"], "request_in_progress"
    )

    by_status: dict[str, float] = defaultdict(float)
    if counter_name is not None:
        for sample in families[counter_name].samples:
            if sample.name.endswith("_total") and _is_scoring(sample.labels):
                status = _label(sample.labels, _STATUS_LABELS) or "unknown"
                by_status[status] += sample.value

    buckets: dict[float, float] = defaultdict(float)
    if histogram_name is not None:
        for sample in families[histogram_name].samples:
            if sample.name.endswith("_bucket") and _is_scoring(sample.labels):
                buckets[float(sample.labels["le"])] += sample.value

    in_progress: float | None = None
    if gauge_name is not None:
        in_progress = sum(s.value for s in families[gauge_name].samples if _is_scoring(s.labels))
    return MetricsSnapshot(taken_at, dict(by_status), dict(buckets), in_progress)


def histogram_quantile(quantile: float, buckets: Mapping[float, float]) -> float | None:
    """Quantile (seconds) of a cumulative histogram, interpolating linearly inside a bucket.

    Same rule as Prometheus: a quantile that lands in the ``+Inf`` bucket is reported as the
    largest finite bound. ``None`` when the histogram is empty.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            in_bucket = count - lower_count
            if in_bucket <= 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket
        lower_bound, lower_count = bound, count
    return lower_bound


def _delta(current: Mapping[float, float], previous: Mapping[float, float]) -> dict[float, float]:
    return {bound: max(0.0, count - previous.get(bound, 0.0)) for bound, count in current.items()}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _server_error_share(by_status: Mapping[str, float], total: float) -> tuple[float, float]:
    server = sum(v for k, v in by_status.items() if k.startswith("5"))
    client = sum(v for k, v in by_status.items() if k.startswith("4"))
    return server / total, client / total


def compute_stats(current: MetricsSnapshot, previous: MetricsSnapshot | None) -> ServiceStats:
    """Throughput, error rate and latency percentiles between two scrapes.

    A counter that went down means the API restarted: the previous scrape is then ignored.
    """
    throughput: float | None = None
    window: float | None = None
    restarted = previous is not None and current.total_requests < previous.total_requests
    if previous is not None and not restarted and current.taken_at > previous.taken_at:
        window = current.taken_at - previous.taken_at
        statuses = {
            code: max(0.0, count - previous.requests_by_status.get(code, 0.0))
            for code, count in current.requests_by_status.items()
        }
        buckets = _delta(current.latency_buckets, previous.latency_buckets)
        window_total = sum(statuses.values())
        throughput = window_total / window
        if window_total > 0:
            window_errors, window_rejected = _server_error_share(statuses, window_total)
            return ServiceStats(
                throughput_rps=throughput,
                error_rate=window_errors,
                rejected_rate=window_rejected,
                p50_ms=_ms(histogram_quantile(0.50, buckets)),
                p95_ms=_ms(histogram_quantile(0.95, buckets)),
                p99_ms=_ms(histogram_quantile(0.99, buckets)),
                total_requests=current.total_requests,
                in_progress=current.in_progress,
                window_s=window,
                basis="window",
            )
    # Nothing in the window (or first scrape): rates are 0/unknown, latency since start.
    total = current.total_requests
    errors: float | None = None
    rejected: float | None = None
    if total > 0:
        errors, rejected = _server_error_share(current.requests_by_status, total)
    return ServiceStats(
        throughput_rps=throughput,
        error_rate=errors,
        rejected_rate=rejected,
        p50_ms=_ms(histogram_quantile(0.50, current.latency_buckets)),
        p95_ms=_ms(histogram_quantile(0.95, current.latency_buckets)),
        p99_ms=_ms(histogram_quantile(0.99, current.latency_buckets)),
        total_requests=total,
        in_progress=current.in_progress,
        window_s=window,
        basis="since start",
    )
