"""The service's Prometheus metrics: request metrics under BentoML's names, plus its own.

BentoML's HTTP metrics middleware is switched off (see ``service.service``): it looks up four
labelled children on every request and cost ~40% of a single-score request's CPU in the
in-process profile. The ``/v1`` app records the same families instead
(``bentoml_service_request_total``, ``..._request_duration_seconds``,
``..._request_in_progress``, same labels), with children bound once, so dashboards, the
prometheus-adapter rule and the UI read them unchanged. The ``endpoint`` label is one of the
contract's routes or ``other`` (an unknown path never creates a new series).

``prometheus_client`` is imported only when :func:`create_metrics` runs inside a worker:
BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` at worker start-up, and prometheus_client picks
its (multi-process) value store at import time. That is what makes ``/metrics`` add up the
samples of every worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from service.ledger.model import LedgerStats
    from service.scoring import StepTimes

#: Buckets for fraud probabilities (dense near 0 where most genuine traffic lands).
PROBABILITY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)
#: Request latency buckets, seconds: dense around the 15 ms single-score objective.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: Per-step model-call latency buckets, seconds (one observation per batch).
STEP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5)
#: Namespace of the request families (BentoML's, so existing dashboards keep working).
REQUEST_NAMESPACE = "bentoml_service"


@dataclass(frozen=True)
class ServiceMetrics:
    """Handles to the metric families; labelled children are bound once and reused.

    ``.labels(...)`` locks and hashes on every call (2-3% of the single-score path in the
    profile, docs/performance.md), so each label combination is looked up only the first time.
    """

    score: Any
    decisions: Any
    batch_size: Any
    model_info: Any
    rejections: Any
    requests: Any
    request_duration: Any
    in_progress: Any
    step_duration: Any
    history: Any = None
    ledger_spool: Any = None
    ledger_errors: Any = None
    ledger_dropped: Any = None
    ledger_rejected: Any = None
    ledger_last_write: Any = None
    #: Constant label values of this process: service name, version and runner name.
    service_labels: tuple[str, str, str] = ("", "", "")
    model_name: str = ""
    _children: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)
    #: The ledger's totals at the last report (the counters grow by the difference).
    _ledger_seen: dict[str, int] = field(default_factory=dict, repr=False)

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

    def observe_results(
        self, endpoint: str, results: list[dict[str, Any]], timings: StepTimes
    ) -> None:
        """Record one model call: rows, scores, decisions and step durations."""
        self.observe_batch(endpoint, len(results))
        self.observe_scores(
            endpoint,
            np.fromiter((r["fraud_probability"] for r in results), dtype=np.float64),
            np.fromiter((r["is_fraud"] for r in results), dtype=bool),
        )
        self.observe_steps(endpoint, timings)

    def observe_history(self, endpoint: str, states: Sequence[str]) -> None:
        """Rows scored with the history store on, by outcome (used/replayed/unavailable)."""
        if self.history is None:
            return
        counts: dict[str, int] = {}
        for state in states:
            counts[state] = counts.get(state, 0) + 1
        for state, count in counts.items():
            self._child("history", endpoint, state).inc(count)

    def observe_ledger(self, stats: LedgerStats) -> None:
        """The ledger's queue, writer errors, drops, rejections and time of the last write.

        ``stats`` holds this worker's totals since it started; the drop and rejection
        counters grow by the difference to the previous report, so Prometheus's multi-process
        sum keeps the counts of workers that have exited.
        """
        if self.ledger_spool is None:
            return
        self.ledger_spool.set(stats.spool_depth)
        self.ledger_errors.set(stats.writer_errors_total)
        for name, counter, total in (
            ("dropped", self.ledger_dropped, stats.spool_dropped_total),
            ("rejected", self.ledger_rejected, stats.rejected_total),
        ):
            grown = total - self._ledger_seen.get(name, 0)
            if grown > 0:
                counter.inc(grown)
            self._ledger_seen[name] = total
        if stats.last_write_unix is not None:
            self.ledger_last_write.set(stats.last_write_unix)

    def observe_history_step(self, endpoint: str, seconds: float) -> None:
        """Duration of one history-store round trip (``step="history"``, one per batch)."""
        self._child("step_duration", endpoint, "history", self.model_name).observe(seconds)

    def observe_batch(self, endpoint: str, rows: int) -> None:
        """Rows passed to one model call."""
        self._child("batch_size", endpoint).observe(rows)

    def reject(self, endpoint: str, reason: str) -> None:
        """Count an input rejection (4xx) by reason."""
        self._child("rejections", endpoint, reason).inc()

    def request_started(self, route: str) -> None:
        """A request to ``route`` (a contract path or ``other``) is being handled."""
        name, version, runner = self.service_labels
        self._child("in_progress", route, name, version, runner).inc()

    def request_finished(self, route: str, status: int, seconds: float) -> None:
        """The request to ``route`` was answered with ``status`` after ``seconds``."""
        name, version, runner = self.service_labels
        self._child("in_progress", route, name, version, runner).dec()
        code = str(status)
        self._child("requests", route, name, version, code, runner).inc()
        self._child("request_duration", route, name, version, code, runner).observe(seconds)

    def observe_steps(self, endpoint: str, timings: StepTimes) -> None:
        """Per-step duration of one model call (KServe-style preprocess/predict/postprocess)."""
        model = self.model_name
        self._child("step_duration", endpoint, "preprocess", model).observe(timings.preprocess)
        self._child("step_duration", endpoint, "predict", model).observe(timings.predict)
        self._child("step_duration", endpoint, "postprocess", model).observe(timings.postprocess)


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


def create_metrics(
    model_tag: str, threshold: float, service_labels: tuple[str, str, str] = ("", "", "")
) -> ServiceMetrics:
    """Register the metric families (call once per worker, after BentoML set it up).

    ``service_labels`` are BentoML's ``service_name``, ``service_version`` and
    ``runner_name`` label values for the request families.
    """
    import prometheus_client as prom  # noqa: PLC0415  (see the module docstring)

    name, _, version = model_tag.partition(":")
    request_labels = ["endpoint", "service_name", "service_version", "http_response_code"]
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
        requests=prom.Counter(
            "request_total",
            "Requests answered, by route and HTTP status.",
            [*request_labels, "runner_name"],
            namespace=REQUEST_NAMESPACE,
        ),
        request_duration=prom.Histogram(
            "request_duration_seconds",
            "Time from the request reaching the /v1 app to its answer, by route and status.",
            [*request_labels, "runner_name"],
            namespace=REQUEST_NAMESPACE,
            buckets=DURATION_BUCKETS,
        ),
        in_progress=prom.Gauge(
            "request_in_progress",
            "Requests being handled now, by route (summed over live workers).",
            ["endpoint", "service_name", "service_version", "runner_name"],
            namespace=REQUEST_NAMESPACE,
            multiprocess_mode="livesum",
        ),
        step_duration=prom.Histogram(
            "fraud_model_step_duration_seconds",
            "Duration of each step of one model call: history (the store's round trip, with "
            "the history store on), preprocess (features), predict (XGBoost, TreeSHAP "
            "included) and postprocess (decisions, reasons, results).",
            ["endpoint", "step", "model_name"],
            buckets=STEP_BUCKETS,
        ),
        history=prom.Counter(
            "fraud_history_rows",
            "Transactions scored with the history store on, by outcome: used (aggregates from "
            "the store), replayed (a retried transaction id) or unavailable (scored without).",
            ["endpoint", "outcome"],
        ),
        ledger_spool=prom.Gauge(
            "fraud_ledger_spool_rows",
            "Decisions waiting in the local spool for PostgreSQL (summed over live workers).",
            multiprocess_mode="livesum",
        ),
        ledger_errors=prom.Gauge(
            "fraud_ledger_writer_errors",
            "Failed writes of the ledger writer since the worker started.",
            multiprocess_mode="livesum",
        ),
        ledger_dropped=prom.Counter(
            "fraud_ledger_spool_dropped",
            "Decisions dropped because the ledger spool was at its bound (never recorded).",
        ),
        ledger_rejected=prom.Counter(
            "fraud_ledger_rejected",
            "Decisions PostgreSQL refused; set aside in the spool's quarantine table.",
        ),
        ledger_last_write=prom.Gauge(
            "fraud_ledger_last_write_timestamp_seconds",
            "Unix time of the ledger writer's last successful write to PostgreSQL (latest "
            "over live workers; 0 before the first).",
            multiprocess_mode="livemax",
        ),
        service_labels=service_labels,
        model_name=name,
    )
