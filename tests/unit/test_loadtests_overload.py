"""The open-loop overload measurement: vegeta targets, sample parsing and the recovery rule.

The attack itself needs the vegeta binary and a server; ``make bench`` runs it. Here the
analysis is fed hand-made timelines whose right answers are known.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from loadtests import overload
from loadtests.latency_stats import Sample
from loadtests.overload import Phase

PHASES = [Phase(100, 5), Phase(400, 10), Phase(100, 10)]


def timeline(bad_seconds: dict[int, tuple[int, float]], seconds: int = 25) -> list[Sample]:
    """Ten requests a second at 2 ms; ``bad_seconds`` maps a second to (rejections, their ms)."""
    out = []
    for second in range(seconds):
        out += [Sample(1000.0 + second + i / 10, 2.0, 200, True) for i in range(10)]
        rejected, latency = bad_seconds.get(second, (0, 0.0))
        out += [Sample(1000.0 + second + 0.05, latency, 503, False) for _ in range(rejected)]
    return sorted(out, key=lambda s: s.at)


def test_clean_run_recovers_at_once() -> None:
    result = overload.analyse(timeline({}), PHASES, p99_bound_ms=15.0)
    assert result["recovery_s_after_drop"] == 0
    assert result["rejections"] == 0
    assert result["rejection_p99_ms"] is None
    assert result["plan"] == "100:5,400:10,100:10"


def test_rejections_after_the_drop_delay_recovery() -> None:
    # Overload 5-14 s rejects fast; the last rejection after the drop (at 15) is at 17.
    bad = dict.fromkeys(range(5, 15), (5, 3.0)) | {16: (1, 4.0), 17: (2, 4.0)}
    result = overload.analyse(timeline(bad), PHASES, p99_bound_ms=15.0)
    assert result["recovery_s_after_drop"] == 3
    assert result["rejections"] == 53
    assert result["other_errors"] == 0
    assert result["errors_before_overload"] == 0
    assert result["rejection_p99_ms"] == 4.0


def test_slow_seconds_count_as_not_recovered() -> None:
    samples = timeline({})
    slow = [Sample(1000.0 + 20.5, 40.0, 200, True)]  # one answer over the bound at second 20
    result = overload.analyse(sorted(samples + slow, key=lambda s: s.at), PHASES, 15.0)
    assert result["recovery_s_after_drop"] == 6


def test_never_recovered_is_none() -> None:
    result = overload.analyse(timeline({24: (1, 3.0)}), PHASES, p99_bound_ms=15.0)
    assert result["recovery_s_after_drop"] is None


def test_errors_before_the_overload_are_counted() -> None:
    result = overload.analyse(timeline({1: (2, 3.0)}), PHASES, p99_bound_ms=15.0)
    assert result["errors_before_overload"] == 2


def test_plan_is_half_double_half() -> None:
    assert overload.plan_for(3000.0) == [Phase(1500, 5), Phase(6000, 10), Phase(1500, 10)]
    assert overload.plan_for(10.0)[1].rate == 200  # floors keep a tiny capacity measurable


def test_targets_carry_each_body_base64_encoded(tmp_path: Path) -> None:
    spec = {"path": "/score", "check": "score", "requests": [{"body": '{"a": 1}'}, {"body": "{}"}]}
    requests_file = tmp_path / "requests.json"
    requests_file.write_text(json.dumps(spec))
    out = overload.write_targets(requests_file, "http://127.0.0.1:3000/", tmp_path / "t.jsonl")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [t["url"] for t in lines] == ["http://127.0.0.1:3000/score"] * 2
    assert base64.b64decode(lines[0]["body"]) == b'{"a": 1}'
    assert lines[0]["header"] == {"Content-Type": ["application/json"]}


def _csv_row(sent_ns: int, status: int, latency_ns: int, body: bytes) -> str:
    encoded = base64.b64encode(body).decode()
    return f"{sent_ns},{status},{latency_ns},120,80,,{encoded},,0,POST,http://h/score,"


def test_results_parse_and_judge_the_body() -> None:
    text = "\n".join(
        [
            _csv_row(2_000_000_000, 200, 3_000_000, b'{"fraud_probability": 0.1}'),
            _csv_row(1_000_000_000, 503, 1_500_000, b'{"error": "overloaded"}'),
            _csv_row(3_000_000_000, 200, 2_000_000, b'{"unexpected": true}'),
        ]
    )
    samples = overload.parse_results(text, "score")
    assert [s.at for s in samples] == [1.0, 2.0, 3.0]  # sorted by send time
    assert [s.latency_ms for s in samples] == [1.5, 3.0, 2.0]
    assert [(s.status, s.ok) for s in samples] == [(503, False), (200, True), (200, False)]


def test_admitted_p99_counts_only_the_answers_let_in_during_the_overload() -> None:
    # Rejections at 50 ms during the overload must not show in the admitted requests' p99.
    bad = dict.fromkeys(range(5, 15), (5, 50.0))
    result = overload.analyse(timeline(bad), PHASES, p99_bound_ms=15.0)
    assert result["admitted_p99_ms"] == 2.0
    assert result["overload_p99_ms"] == 50.0
