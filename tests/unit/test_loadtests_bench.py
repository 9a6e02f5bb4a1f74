"""Benchmark logic: step statistics, the sustained-throughput rule, answer checks, target checks,
profile aggregation, soak memory growth and the run chart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")  # no gevent patching in the test process

from loadtests import bench, bench_client, bench_report, run_chart, soak
from loadtests.bench_client import Sample


def samples(latencies: list[float], failed: int = 0, status: int = 503) -> list[Sample]:
    out = [Sample(at=i * 0.01, latency_ms=v, status=200, ok=True) for i, v in enumerate(latencies)]
    out += [Sample(at=1.0, latency_ms=2.0, status=status, ok=False) for _ in range(failed)]
    return out


def test_summary_percentiles_are_exact_nearest_rank() -> None:
    step = bench_client.summarise(samples([float(v) for v in range(1, 101)]), 1.0, 100.0)
    assert step["p50_ms"] == 50.0
    assert step["p99_ms"] == 99.0
    assert step["max_ms"] == 100.0
    assert step["achieved_rps"] == 100.0
    assert step["errors"] == 0


def test_summary_counts_rejections_separately() -> None:
    step = bench_client.summarise(samples([1.0] * 10, failed=5), 1.0, 15.0)
    assert step["errors"] == 5
    assert step["error_statuses"] == {"503": 5}
    assert step["rejections"] == 5
    assert step["rejection_p99_ms"] == 2.0


@pytest.mark.parametrize(
    ("p99", "errors", "achieved", "passed"),
    [
        (10.0, 0, 1000.0, True),
        (16.0, 0, 1000.0, False),
        (10.0, 1, 1000.0, False),
        (10.0, 0, 900.0, True),  # served less than offered: the capacity at this concurrency
    ],
)
def test_a_step_is_sustained_only_with_zero_errors_and_low_p99(
    p99: float, errors: int, achieved: float, passed: bool
) -> None:
    step = {"p99_ms": p99, "errors": errors, "achieved_rps": achieved, "offered_rps": 1000.0}
    assert bench_client.step_passes(step, 15.0) is passed


def test_max_sustained_ignores_failing_steps() -> None:
    steps = [
        {"achieved_rps": 500, "passed": True},
        {"achieved_rps": 990, "passed": True},
        {"achieved_rps": 1300, "passed": False},
    ]
    assert bench.max_sustained(steps) == steps[1]
    assert bench.max_sustained([steps[2]]) is None


def test_answers_are_checked_against_the_in_process_probability() -> None:
    expected = {"id": "bench-1", "probability": 0.25}
    good = {
        "transaction_id": "bench-1",
        "fraud_probability": 0.25,
        "is_fraud": False,
        "threshold": 0.5,
    }
    assert bench_client.check_answer("score", good, expected) is None
    assert "probability" in (
        bench_client.check_answer("score", {**good, "fraud_probability": 0.3}, expected) or ""
    )
    assert bench_client.check_answer("score", {**good, "is_fraud": True}, expected)
    assert bench_client.check_answer("score", {**good, "transaction_id": "x"}, expected)
    v2 = {"outputs": [{"name": "predict", "data": [0.25001]}]}
    assert bench_client.check_answer("v2", v2, expected) is None
    assert bench_client.check_answer("v2", {"outputs": []}, expected)
    assert bench_client.check_answer("echo", {"transaction_id": "bench-1"}, expected) is None
    assert bench_client.check_answer("echo", {"transaction_id": "bench-2"}, expected)


def _doc(service: float, mlserver: float, stock: float, echo: float) -> dict[str, Any]:
    def target(rate: float) -> dict[str, Any]:
        return {"label": "x", "max_sustained_rps": rate, "steps": [], "rss_mb": {"end": 1.0}}

    return {
        "targets": {
            "service": target(service),
            "mlserver": target(mlserver),
            "stock-bentoml": target(stock),
            "starlette-echo": target(echo),
        }
    }


def test_target_checks_compare_capacity_with_the_peers() -> None:
    checks = {c["target"]: c for c in bench_report.target_checks(_doc(3000, 1400, 900, 8000))}
    assert checks["throughput vs MLServer >= 2x"]["met"] is True
    assert checks["throughput vs stock BentoML >= 3x"]["met"] is True
    assert checks["throughput vs Starlette ceiling >= 0.35x"]["met"] is True
    slow = {c["target"]: c for c in bench_report.target_checks(_doc(2000, 1400, 900, 8000))}
    assert slow["throughput vs MLServer >= 2x"]["met"] is False
    assert slow["throughput vs MLServer >= 2x"]["value"] == pytest.approx(2000 / 1400)
    assert slow["recovery <= 5 s after load drops"]["met"] is None  # not measured


def test_early_rejections_and_slow_bulk_fail_their_targets() -> None:
    doc = _doc(1000, 400, 300, 8000)
    doc["targets"]["service"]["steps"] = [{"offered_rps": 500, "rejections": 3}]
    doc["targets"]["service"]["bulk"] = {
        "file_vs_in_process": {"csv": 0.4, "parquet": 0.8},
        "batch_vs_in_process": 0.04,
        "batch_size": 1000,
    }
    checks = {c["target"]: c["met"] for c in bench_report.target_checks(doc)}
    assert checks["no 503/429 below capacity"] is False
    assert checks["file endpoint (csv) >= 50% of in-process"] is False
    assert checks["file endpoint (parquet) >= 50% of in-process"] is True
    assert checks["batch endpoint (1,000 rows per request) >= 50% of in-process"] is False
    doc["targets"]["service"]["bulk"]["batch_vs_in_process"] = 0.5
    checks = {c["target"]: c["met"] for c in bench_report.target_checks(doc)}
    assert checks["batch endpoint (1,000 rows per request) >= 50% of in-process"] is True


def test_no_batch_check_when_the_batch_endpoint_was_not_measured() -> None:
    doc = _doc(1000, 400, 300, 8000)
    doc["targets"]["service"]["bulk"] = {"file_vs_in_process": {"csv": 0.6}}
    targets = [c["target"] for c in bench_report.target_checks(doc)]
    assert not [t for t in targets if t.startswith("batch endpoint")]


def _report_doc() -> dict[str, Any]:
    """A complete bench document: one passing step per system, run metadata."""
    doc = _doc(1000, 400, 300, 8000)
    step = {
        "offered_rps": 500.0,
        "achieved_rps": 500.0,
        "p50_ms": 1.0,
        "p99_ms": 3.0,
        "errors": 0,
        "passed": True,
    }
    for result in doc["targets"].values():
        result["steps"] = [step]
        result["at_max"] = step
    doc.update(
        generated_at="now",
        command="make bench",
        model_tag="m:1",
        machine={"load_average_at_start": [0.1]},
        method={
            "server_core": 0,
            "client_core": 1,
            "client": "c",
            "step_seconds": 6,
            "sustained": "s",
            "p99_bound_ms": 15,
        },
    )
    return doc


def test_reports_are_written(tmp_path: Path) -> None:
    doc = _report_doc()
    doc["targets"]["service"]["bulk"] = {
        "rows": 20_000,
        "in_process_rows_per_s": 500_000.0,
        "batch_endpoint_rows_per_s": 300_000.0,
        "batch_size": 1000,
        "batch_vs_in_process": 0.6,
        "batch_endpoint": {
            "requests": 3000,
            "rows_per_request": 1000,
            "seconds": 10.0,
            "in_flight": 2,
        },
        "file_endpoint_rows_per_s": {"csv": 250_000.0},
        "file_vs_in_process": {"csv": 0.5},
    }
    bench_report.write_reports(doc, tmp_path)
    markdown = (tmp_path / "bench.md").read_text()
    assert "| x | 1,000 |" in markdown
    assert "| `/v1/score/batch` (1,000 rows per request) | 300,000 | 60% |" in markdown
    assert "3,000 requests of 1,000 rows in 10.0 s, 2 in flight" in markdown
    assert "| batch endpoint (1,000 rows per request) >= 50% of in-process | 0.60 | yes |" in (
        markdown
    )
    assert json.loads((tmp_path / "bench.json").read_text())["checks"]
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
    # The reports are the only output: no other file (a README, a doc) is rewritten.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.md", "bench.png"]


def test_the_report_renders_again_from_its_json(tmp_path: Path) -> None:
    doc = _report_doc()
    bench_report.write_reports(doc, tmp_path)
    first = (tmp_path / "bench.md").read_text()
    (tmp_path / "bench.md").unlink()
    bench_report.main([str(tmp_path / "bench.json")])
    assert (tmp_path / "bench.md").read_text() == first


def test_profile_aggregation_counts_self_and_inclusive_time() -> None:
    collapsed = "\n".join(
        [
            "main (a.py:1);handle (b.py:5);predict (x.py:9) 60",
            "main (a.py:1);handle (b.py:5);dumps (j.py:2) 30",
            "main (a.py:1);idle (c.py:3) 10",
        ]
    )
    top = bench.top_frames(collapsed)
    assert top["samples"] == 100
    assert top["top_self"][0] == {"function": "predict (x.py)", "share": 0.6}
    inclusive = {row["function"]: row["share"] for row in top["top_total"]}
    assert inclusive["handle (b.py)"] == pytest.approx(0.9)
    assert "main (a.py)" not in inclusive  # on every stack: scaffolding, not a cost
    assert inclusive["dumps (j.py)"] == pytest.approx(0.3)


def test_soak_memory_growth_is_measured_after_the_warm_up() -> None:
    samples_ = [(0.0, 50), (30.0, 90), (60.0, 100), (300.0, 103), (600.0, 104)]
    assert soak.rss_growth(samples_, 60.0) == pytest.approx(0.04)
    with pytest.raises(ValueError, match="samples"):
        soak.rss_growth(samples_[:3], 60.0)


def test_soak_reads_capacity_from_the_bench_report(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    assert soak.capacity_from_bench(path) is None
    path.write_text(json.dumps({"targets": {"service": {"max_sustained_rps": 1234.5}}}))
    assert soak.capacity_from_bench(path) == 1234.5


def test_run_chart_reads_locust_history(tmp_path: Path) -> None:
    header = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,95%,99%\n"
    rows = "".join(
        f"{1000 + i},{i},,Aggregated,{10 * i},0,{i},{2 * i},{3 * i}\n"
        f"{1000 + i},{i},POST,POST /v1/score,{10 * i},0,1,2,3\n"
        for i in range(5)
    )
    csv_path = tmp_path / "h.csv"
    csv_path.write_text(header + rows)
    history = run_chart.read_history(csv_path)
    assert history.seconds == [0, 1, 2, 3, 4]
    assert history.p99 == [0, 3, 6, 9, 12]
    out = run_chart.plot_history(history, tmp_path / "run.png", "t")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_peak_is_the_best_error_free_step_whatever_its_latency() -> None:
    steps = [
        {"achieved_rps": 400, "errors": 0, "p99_ms": 40.0},
        {"achieved_rps": 700, "errors": 0, "p99_ms": 90.0},
        {"achieved_rps": 900, "errors": 3, "p99_ms": 20.0},
    ]
    assert bench.peak(steps) == steps[1]
    assert bench.peak([steps[2]]) is None


@pytest.mark.parametrize(
    ("achieved", "errors", "is_saturated"),
    [(950.0, 0, False), (850.0, 0, True), (1000.0, 11, True), (1000.0, 10, False)],
)
def test_the_ladder_stops_climbing_only_when_the_target_saturates(
    achieved: float, errors: int, is_saturated: bool
) -> None:
    step = {"offered_rps": 1000.0, "achieved_rps": achieved, "errors": errors, "requests": 1000}
    assert bench_client.saturated(step) is is_saturated


def test_the_service_runs_in_production_mode_with_its_own_hash_key(tmp_path: Path) -> None:
    (service,) = bench.make_targets("m:1", tmp_path, 3000, ["service"])
    assert service.env["FRAUD_MODEL_TAG"] == "m:1"
    assert len(service.env["FRAUD_ID_HASH_KEY"]) >= 32
    assert "FRAUD_DEV_MODE" not in service.env
    (again,) = bench.make_targets("m:1", tmp_path, 3000, ["service"])
    assert again.env["FRAUD_ID_HASH_KEY"] != service.env["FRAUD_ID_HASH_KEY"]
