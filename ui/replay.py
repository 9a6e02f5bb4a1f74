"""Replay simulated raw transactions through the scoring API at a chosen simulated-time speed.

One module for the Live tab and the load tests. The transactions come from a bundled file,
``ui/replay_transactions.csv.gz``: two simulated days of ``training.simulator`` (the demo
preset, seed 7, the days right after the ones ``make demo`` warms the history store with, so
the same cards and terminals continue). The UI image cannot run the simulator itself (it needs
pandas with pyarrow and the training package), so the file is generated with the simulator and
committed; ``python -m ui.replay --write`` regenerates it and a unit test checks it is current.

Only the raw fields are sent (``transaction_id, timestamp, customer_id, terminal_id, amount``):
the history comes from the API's store. Transaction ids are prefixed with ``LIVE-`` so they
never collide with the ids the demo warmed the store with.

    replay = Replay(send=client.score_batch)   # any callable: list of bodies -> list of results
    replay.start(speed=100.0)                  # background thread, returns at once
    replay.snapshot()                          # counters, recent rows, score distribution
    replay.stop()
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Final, Protocol

logger = logging.getLogger("fraud_ui.replay")

DATA_FILE: Final = "replay_transactions.csv.gz"
RAW_FIELDS: Final[tuple[str, ...]] = (
    "transaction_id",
    "timestamp",
    "customer_id",
    "terminal_id",
    "amount",
)
ID_PREFIX: Final = "LIVE-"
#: How the bundled file is made (see scripts/demo_history.py: it warms days 0-36 of this run).
SOURCE_PRESET: Final = "demo"
SOURCE_SEED: Final = 7
SOURCE_FIRST_DAY: Final = 37
SOURCE_DAYS: Final = 2
#: Speeds offered by the Live tab (simulated seconds per wall-clock second).
SPEEDS: Final[tuple[float, ...]] = (1.0, 10.0, 100.0, 1000.0)
#: At most this many transactions per API call (the batch endpoint allows more).
MAX_BATCH: Final = 200
#: Rows kept for the stream table, probabilities kept for the distribution chart.
RECENT_ROWS: Final = 50
RECENT_SCORES: Final = 1000
#: Alert-rate chart: one point per bucket of wall-clock seconds, this many buckets kept.
RATE_BUCKET_S: Final = 5.0
RATE_POINTS: Final = 60
TICK_S: Final = 0.2


class ScoreLike(Protocol):
    """What the replay reads from one result (``fraud_contract.api.ScoreResult`` fits)."""

    @property
    def fraud_probability(self) -> float: ...
    @property
    def is_fraud(self) -> bool: ...
    @property
    def risk_band(self) -> str: ...
    @property
    def history(self) -> str | None: ...


#: Scores a batch of raw transactions; results in the same order. Raises on failure.
SendBatch = Callable[[list[dict[str, Any]]], Sequence[ScoreLike]]


def load_transactions(path: Path | None = None) -> list[dict[str, Any]]:
    """The bundled raw transactions (or those of ``path``), in time order."""
    if path is None:
        data = resources.files("ui").joinpath(DATA_FILE).read_bytes()
    else:
        data = path.read_bytes()
    with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(data)), encoding="utf-8") as text:
        return [
            {
                "transaction_id": row["transaction_id"],
                "timestamp": row["timestamp"],
                "customer_id": row["customer_id"],
                "terminal_id": row["terminal_id"],
                "amount": float(row["amount"]),
            }
            for row in csv.DictReader(text)
        ]


def parse_time(value: str) -> datetime:
    """A transaction timestamp (ISO 8601, as in the file)."""
    return datetime.fromisoformat(value)


def endless(transactions: Sequence[dict[str, Any]]) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """The transactions forever: each pass shifted by whole days and with fresh ids.

    A later pass continues the same cards and terminals in time (never earlier than the last
    pass), so the history store sees an ordinary stream rather than duplicates or late rows.
    """
    if not transactions:
        return
    first = parse_time(transactions[0]["timestamp"])
    last = parse_time(transactions[-1]["timestamp"])
    span = timedelta(days=(last - first).days + 1)
    loop = 0
    while True:
        shift = span * loop
        suffix = f"-{loop}" if loop else ""
        for row in transactions:
            at = parse_time(row["timestamp"]) + shift
            yield (
                at,
                {
                    **row,
                    "transaction_id": f"{ID_PREFIX}{row['transaction_id']}{suffix}",
                    "timestamp": at.isoformat(),
                },
            )
        loop += 1


@dataclass(frozen=True)
class StreamRow:
    """One scored transaction as the Live tab lists it."""

    time: str
    card: str
    terminal: str
    amount: float
    probability: float
    band: str
    alert: bool
    history: str


@dataclass(frozen=True)
class ReplaySnapshot:
    """What the replay did so far (a copy: safe to read while the replay runs)."""

    running: bool
    speed: float
    scored: int
    alerts: int
    history_unavailable: int
    history_missing: int
    failed_calls: int
    scored_per_min: float
    last_error: str | None
    simulated_time: str | None
    rows: list[StreamRow]
    probabilities: list[float]
    alert_rate: list[tuple[str, float]]


@dataclass
class _Counters:
    scored: int = 0
    alerts: int = 0
    history_unavailable: int = 0
    history_missing: int = 0
    failed_calls: int = 0
    last_error: str | None = None
    simulated_time: str | None = None
    rows: deque[StreamRow] = field(default_factory=lambda: deque(maxlen=RECENT_ROWS))
    probabilities: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_SCORES))
    #: (wall-clock time scored, count) for scored/min over the last minute.
    recent: deque[tuple[float, int]] = field(default_factory=deque)
    #: bucket start -> [scored, alerts]
    buckets: dict[float, list[int]] = field(default_factory=dict)


class Replay:
    """A background replay of simulated transactions through ``send``.

    Simulated time runs ``speed`` times faster than the wall clock from where the last run
    stopped (a stop is a pause: the next start continues the stream). Failures of ``send``
    are counted and the message kept (``str(exc)``, or ``exc.message`` when there is one); the
    replay keeps trying, so it resumes by itself when the API comes back.
    """

    def __init__(
        self,
        send: SendBatch,
        transactions: Sequence[dict[str, Any]] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._send = send
        self._stream = endless(transactions if transactions is not None else load_transactions())
        self._clock = clock
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._speed = SPEEDS[-1]
        self._counters = _Counters()
        self._pending: tuple[datetime, dict[str, Any]] | None = None

    @property
    def running(self) -> bool:
        """Whether the background thread is replaying."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self, speed: float) -> None:
        """Start (or change the speed of) the replay; returns at once."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        with self._lock:
            self._speed = float(speed)
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fraud-replay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the replay and wait for the batch in flight."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def reset(self) -> None:
        """Zero the counters (the stream position is kept)."""
        with self._lock:
            self._counters = _Counters()

    def _next(self) -> tuple[datetime, dict[str, Any]]:
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        return next(self._stream)

    def _run(self) -> None:
        wall_start = self._clock()
        sim_start, first = self._next()
        self._pending = (sim_start, first)
        sim_offset = 0.0  # simulated seconds already played at the current speed
        speed = self._speed
        while not self._stop.is_set():
            with self._lock:
                if self._speed != speed:  # re-anchor so the stream does not jump
                    sim_offset += (self._clock() - wall_start) * speed
                    wall_start, speed = self._clock(), self._speed
            played = sim_offset + (self._clock() - wall_start) * speed
            now_sim = sim_start + timedelta(seconds=played)
            batch: list[dict[str, Any]] = []
            while len(batch) < self._max_batch:
                at, body = self._next()
                if at > now_sim:
                    self._pending = (at, body)
                    break
                batch.append(body)
            if batch:
                self._score(batch)
            else:
                self._stop.wait(TICK_S)

    def _score(self, batch: list[dict[str, Any]]) -> None:
        try:
            results = self._send(batch)
        except Exception as exc:
            # Any failure is counted and the replay keeps going; a readable message (the UI
            # client's APIError has one) is shown as is, anything else goes to the log.
            message = getattr(exc, "message", None)
            if not isinstance(message, str) or not message:
                logger.exception("a replay batch failed")
                message = f"A replay batch failed ({type(exc).__name__}); see the UI's log."
            with self._lock:
                self._counters.failed_calls += 1
                self._counters.last_error = message
            # The rows are dropped (a live stream moves on); back off before the next batch.
            self._stop.wait(1.0)
            return
        now = self._clock()
        bucket = now - now % RATE_BUCKET_S
        with self._lock:
            counters = self._counters
            counters.last_error = None
            for body, result in zip(batch, results, strict=True):
                history = result.history or "none"
                counters.scored += 1
                counters.alerts += int(result.is_fraud)
                counters.history_unavailable += int(history == "unavailable")
                counters.history_missing += int(result.history is None)
                counters.probabilities.append(result.fraud_probability)
                counters.rows.append(
                    StreamRow(
                        time=body["timestamp"].replace("T", " "),
                        card=body["customer_id"],
                        terminal=body["terminal_id"],
                        amount=body["amount"],
                        probability=result.fraud_probability,
                        band=result.risk_band,
                        alert=result.is_fraud,
                        history=history,
                    )
                )
            counters.simulated_time = batch[-1]["timestamp"].replace("T", " ")
            counters.recent.append((now, len(batch)))
            counts = counters.buckets.setdefault(bucket, [0, 0])
            counts[0] += len(batch)
            counts[1] += sum(int(r.is_fraud) for r in results)
            for old in sorted(counters.buckets)[:-RATE_POINTS]:
                del counters.buckets[old]

    def snapshot(self) -> ReplaySnapshot:
        """A copy of the counters, recent rows and chart data."""
        now = self._clock()
        with self._lock:
            counters = self._counters
            while counters.recent and counters.recent[0][0] < now - 60.0:
                counters.recent.popleft()
            return ReplaySnapshot(
                running=self.running and not self._stop.is_set(),
                speed=self._speed,
                scored=counters.scored,
                alerts=counters.alerts,
                history_unavailable=counters.history_unavailable,
                history_missing=counters.history_missing,
                failed_calls=counters.failed_calls,
                scored_per_min=float(sum(n for _, n in counters.recent)),
                last_error=counters.last_error,
                simulated_time=counters.simulated_time,
                rows=list(reversed(counters.rows)),
                probabilities=list(counters.probabilities),
                alert_rate=[
                    (
                        time.strftime("%H:%M:%S", time.gmtime(start)),
                        alerts / scored if scored else 0.0,
                    )
                    for start, (scored, alerts) in sorted(counters.buckets.items())
                ],
            )


def generate_rows() -> list[dict[str, Any]]:
    """The bundled file's rows, from ``training.simulator`` (needs the training dependencies)."""
    from dataclasses import replace  # noqa: PLC0415

    import pandas as pd  # noqa: PLC0415

    from training.simulator import preset, simulate  # noqa: PLC0415  (dev only)

    config = replace(preset(SOURCE_PRESET), n_days=SOURCE_FIRST_DAY + SOURCE_DAYS, seed=SOURCE_SEED)
    frame = simulate(config)
    cut = pd.Timestamp(config.start_date) + pd.Timedelta(days=SOURCE_FIRST_DAY)
    recent = frame[frame["timestamp"] >= cut]
    return [
        {
            "transaction_id": str(tx_id),
            "timestamp": pd.Timestamp(at).isoformat(),
            "customer_id": str(card),
            "terminal_id": str(terminal),
            "amount": f"{float(amount):.2f}",
        }
        for tx_id, at, card, terminal, amount in zip(
            recent["transaction_id"],
            recent["timestamp"],
            recent["customer_id"],
            recent["terminal_id"],
            recent["amount"],
            strict=True,
        )
    ]


def render_file(rows: Sequence[dict[str, Any]]) -> bytes:
    """The gzip CSV bytes of ``rows`` (byte-for-byte reproducible: no gzip timestamp)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(RAW_FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return gzip.compress(text.getvalue().encode("utf-8"), compresslevel=9, mtime=0)


def default_path() -> Path:
    """Where the bundled file lives in a source checkout."""
    return Path(__file__).resolve().parent / DATA_FILE


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ui.replay --write``: regenerate the bundled file from the simulator."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--write", action="store_true", help="write ui/" + DATA_FILE)
    args = parser.parse_args(argv)
    rows = generate_rows()
    if args.write:
        path = default_path()
        path.write_bytes(render_file(rows))
        print(f"wrote {len(rows)} transactions to {path}")
    else:
        print(f"{len(rows)} transactions (use --write to update {default_path()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
