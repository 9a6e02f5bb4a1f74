"""The replay shared by the Live tab and the load tests: data, pacing, counters, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from fraud_contract import Transaction
from ui.client import APIError
from ui.replay import (
    ID_PREFIX,
    RAW_FIELDS,
    Replay,
    default_path,
    endless,
    generate_rows,
    load_transactions,
    render_file,
)


@dataclass(frozen=True)
class Result:
    fraud_probability: float
    is_fraud: bool
    risk_band: str
    history: str | None


def rows(n: int, step_s: float, start: str = "2018-05-08T00:00:00") -> list[dict[str, Any]]:
    first = datetime.fromisoformat(start)
    return [
        {
            "transaction_id": f"TX{i}",
            "timestamp": (first + timedelta(seconds=i * step_s)).isoformat(),
            "customer_id": f"C{i % 3}",
            "terminal_id": f"T{i % 5}",
            "amount": 10.0 + i,
        }
        for i in range(n)
    ]


class Recorder:
    """A fake API: records every batch, answers from ``answer`` (or raises what it returns)."""

    def __init__(self, answer: Callable[[dict[str, Any]], Result] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail_with: Exception | None = None
        self.lock = threading.Lock()
        self.answer = answer or (lambda body: Result(0.1, body["amount"] > 12, "low", "used"))

    def __call__(self, batch: list[dict[str, Any]]) -> list[Result]:
        if self.fail_with is not None:
            raise self.fail_with
        with self.lock:
            self.sent.extend(batch)
        return [self.answer(body) for body in batch]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_bundled_file_is_what_the_simulator_generates() -> None:
    # Regenerate with `python -m ui.replay --write` when the simulator or its preset changes.
    assert render_file(generate_rows()) == default_path().read_bytes()


def test_bundled_transactions_are_raw_valid_and_in_time_order() -> None:
    loaded = load_transactions()
    assert len(loaded) > 5000
    assert all(tuple(row) == RAW_FIELDS for row in loaded[:100])
    Transaction.model_validate(loaded[0])
    times = [row["timestamp"] for row in loaded]
    assert times == sorted(times)


def test_endless_shifts_each_pass_by_whole_days_with_fresh_ids() -> None:
    source = rows(3, 3600.0)
    stream = endless(source)
    first_pass = [next(stream) for _ in range(3)]
    second_pass = [next(stream) for _ in range(3)]
    assert [body["transaction_id"] for _, body in first_pass] == [
        "LIVE-TX0",
        "LIVE-TX1",
        "LIVE-TX2",
    ]
    assert [body["transaction_id"] for _, body in second_pass] == [
        "LIVE-TX0-1",
        "LIVE-TX1-1",
        "LIVE-TX2-1",
    ]
    assert second_pass[0][0] - first_pass[0][0] == timedelta(days=1)
    assert first_pass[-1][0] < second_pass[0][0]
    assert all(body["transaction_id"].startswith(ID_PREFIX) for _, body in first_pass)


def test_replay_follows_simulated_time_at_the_chosen_speed_and_stop_pauses() -> None:
    api = Recorder()
    # One transaction every 1000 simulated seconds: at 1000x, one per wall-clock second.
    replay = Replay(api, rows(20, 1000.0))
    replay.start(speed=1000.0)
    wait_for(lambda: len(api.sent) >= 1)
    time.sleep(0.5)
    assert len(api.sent) == 1, "the second transaction is 1 s of wall-clock time away"
    replay.stop()
    snapshot = replay.snapshot()
    assert not snapshot.running
    assert snapshot.scored == 1
    # A start continues where the stop left it, and a higher speed plays the rest at once.
    replay.start(speed=1e6)
    wait_for(lambda: len(api.sent) >= 25)  # past the end: the stream goes on, shifted
    replay.stop()
    ids = [body["transaction_id"] for body in api.sent]
    assert ids[:2] == ["LIVE-TX0", "LIVE-TX1"]
    assert len(set(ids)) == len(ids)
    stamps = [body["timestamp"] for body in api.sent]
    assert stamps == sorted(stamps)
    assert set(api.sent[0]) == set(RAW_FIELDS), "raw fields only: the history is the API's"


def test_counters_rows_and_chart_data() -> None:
    def answer(body: dict[str, Any]) -> Result:
        i = int(body["transaction_id"].removeprefix("LIVE-TX").split("-")[0])
        history = {0: "used", 1: "unavailable", 2: "replayed"}[i % 3]
        return Result(i / 10, i >= 7, "high" if i >= 7 else "low", history)

    # Ten rows within 9 simulated seconds; the next pass starts a simulated day later.
    replay = Replay(Recorder(answer), rows(10, 1.0))
    replay.start(speed=1000.0)
    wait_for(lambda: replay.snapshot().scored >= 10)
    replay.stop()
    snapshot = replay.snapshot()
    assert snapshot.scored == 10
    assert snapshot.alerts == 3
    assert snapshot.history_unavailable == 3
    assert snapshot.scored_per_min == 10
    assert snapshot.rows[0].card == "C0" and snapshot.rows[0].probability == pytest.approx(0.9)
    assert snapshot.rows[-1].time == "2018-05-08 00:00:00"
    assert snapshot.probabilities == pytest.approx([i / 10 for i in range(10)])
    assert [rate for _, rate in snapshot.alert_rate] == pytest.approx([0.3])
    assert snapshot.simulated_time == "2018-05-08 00:00:09"
    replay.reset()
    assert replay.snapshot().scored == 0


def test_failures_are_counted_with_their_message_and_the_replay_recovers() -> None:
    api = Recorder()
    api.fail_with = APIError("The scoring API at http://x is unreachable.")
    replay = Replay(api, rows(50, 1.0))
    replay.start(speed=1e6)
    wait_for(lambda: replay.snapshot().failed_calls >= 1)
    assert replay.snapshot().last_error == "The scoring API at http://x is unreachable."
    api.fail_with = None
    wait_for(lambda: replay.snapshot().scored > 0)
    replay.stop()
    assert replay.snapshot().last_error is None


def test_an_unexpected_failure_is_logged_not_shown() -> None:
    api = Recorder()
    api.fail_with = RuntimeError("secret internals")
    replay = Replay(api, rows(5, 1.0))
    replay.start(speed=1e6)
    wait_for(lambda: replay.snapshot().failed_calls >= 1)
    replay.stop()
    message = replay.snapshot().last_error or ""
    assert "RuntimeError" in message and "secret internals" not in message


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Replay(Recorder(), rows(2, 1.0)).start(0)
