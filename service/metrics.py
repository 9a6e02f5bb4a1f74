"""The service's own Prometheus metrics (BentoML's request metrics are exported beside them).

``prometheus_client`` is imported only when :func:`create_metrics` runs inside a worker:
BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` at worker start-up, and prometheus_client picks
its (multi-process) value store at import time. That is what makes ``/metrics`` add up the
samples of every worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Buckets for fraud probabilities (dense near 0 where most genuine traffic lands).
PROBABILITY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


@dataclass(frozen=True)
class ServiceMetrics:
    """Handles to the metric families; labelled children are bound once and reused.

    ``.labels(...)`` locks and hashes on every call (2-3% of the single-score path in the
    profile, see the README), so each label combination is looked up only the first time.
    """

    score: Any
    decisions: Any
    batch_size: Any
    model_info: Any
    rejections: Any
    _children: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)

    def _child(self, family: str, *labels: str) -> Any:
        key = (family, *labels)
        child = self._children.get(key)
        if child is None:
            child = getattr(self, family).labels(*labels)
            self._children[key] = child
        return child

    def observe_scores(
        self, endpoint: str, probabilities: np.ndarray, is_fraud: np.ndarray
    ) -> None:
        """Record a scored batch: histogram of scores, decisions by outcome, rows per call."""
        observe_many(self._child("score", endpoint), probabilities)
        frauds = int(np.count_nonzero(is_fraud))
        if frauds:
            self._child("decisions", endpoint, "fraud").inc(frauds)
        if len(is_fraud) - frauds:
            self._child("decisions", endpoint, "genuine").inc(len(is_fraud) - frauds)

    def observe_batch(self, endpoint: str, rows: int) -> None:
        """Rows passed to one model call."""
        self._child("batch_size", endpoint).observe(rows)

    def reject(self, endpoint: str, reason: str) -> None:
        """Count an input rejection (4xx) by reason."""
        self._child("rejections", endpoint, reason).inc()


#: Below this many values, plain ``observe`` calls are cheaper than the numpy set-up.
_BULK_OBSERVE_MIN = 32


def observe_many(histogram: Any, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for every value, as one update per bucket.

    prometheus_client has no bulk observe, and each call takes a lock and (multi-process
    mode) writes to a memory-mapped file: observing a 20,000-row file one value at a time
    cost more than scoring it. This adds the per-bucket counts and the sum to the same
    value objects ``observe`` updates (it falls back to ``observe`` if they are not there).
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if values.size < _BULK_OBSERVE_MIN or bounds is None or buckets is None or total is None:
        for value in values.tolist():
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose upper bound is >= it (the last
    # bound is +Inf); NaN lands in no bucket (index len(bounds), dropped) but in the sum.
    index = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    counts = np.bincount(index, minlength=len(bounds) + 1)[: len(bounds)]
    total.inc(float(np.sum(values, dtype=np.float64)))
    for bucket, count in zip(buckets, counts.tolist(), strict=True):
        if count:
            bucket.inc(count)


def create_metrics(model_tag: str, threshold: float) -> ServiceMetrics:
    """Register the metric families (call once per worker, after BentoML set it up)."""
    import prometheus_client as prom  # noqa: PLC0415  (see the module docstring)

    name, _, version = model_tag.partition(":")
    info = prom.Gauge(
        "fraud_model_info",
        "The model being served (value 1); labels identify it.",
        ["model_name", "model_version", "model_tag", "threshold"],
        multiprocess_mode="max",
    )
    info.labels(
        model_name=name, model_version=version, model_tag=model_tag, threshold=f"{threshold:g}"
    ).set(1)
    return ServiceMetrics(
        score=prom.Histogram(
            "fraud_score_probability",
            "Fraud probabilities returned, per endpoint.",
            ["endpoint"],
            buckets=PROBABILITY_BUCKETS,
        ),
        decisions=prom.Counter(
            "fraud_decisions",
            "Scored transactions by decision outcome (fraud/genuine), per endpoint.",
            ["endpoint", "outcome"],
        ),
        batch_size=prom.Histogram(
            "fraud_model_batch_size_rows",
            "Rows per model call (adaptive batches for single scoring).",
            ["endpoint"],
            buckets=BATCH_SIZE_BUCKETS,
        ),
        model_info=info,
        rejections=prom.Counter(
            "fraud_input_rejections",
            "Requests rejected with a 4xx because of their input, by reason.",
            ["endpoint", "reason"],
        ),
    )
