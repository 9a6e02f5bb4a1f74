"""The bench's stateful target: raw-field requests, metric deltas, the store probe's sizes,
the store's share and the issue 17 checks in the report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")  # no gevent patching in the test process

from fraud_contract.schema import AGGREGATE_FIELDS
from loadtests import bench, bench_client, bench_report, bench_stateful

POOL = [
    {
        "transaction_id": "TX1",
        "timestamp": "2018-05-09T09:18:26",
        "customer_id": "C1",
        "terminal_id": "T1",
        "amount": 26.07,
        "customer_nb_tx_1d": 3,
        "terminal_risk_7d": 0.5,
    },
    {
        "transaction_id": "TX2",
        "timestamp": "2018-05-09T09:19:00",
        "customer_id": "C2",
        "terminal_id": "T2",
        "amount": 5.0,
    },
]


def test_stateful_requests_carry_only_raw_fields_with_an_id_unique_per_copy() -> None:
    spec = bench_stateful.request_spec(POOL, passes=3)
    assert spec["check"] == "echo" and spec["path"] == "/v1/score"
    bodies = [json.loads(r["body"]) for r in spec["requests"]]
    assert len(bodies) == 6
    assert all(set(b) == {"transaction_id", *bench_stateful.RAW_FIELDS} for b in bodies)
    assert not any(name in b for b in bodies for name in AGGREGATE_FIELDS)
    ids = [b["transaction_id"] for b in bodies]
    assert len(set(ids)) == 6 and ids == [r["id"] for r in spec["requests"]]
    assert bodies[2]["amount"] == 26.07 and bodies[2]["customer_id"] == "C1"
    # The client's echo check accepts exactly the answer with the request's id.
    item = spec["requests"][0]
    assert bench_client.check_answer("echo", {"transaction_id": item["id"]}, item) is None
    assert bench_client.check_answer("echo", {"transaction_id": "other"}, item) is not None


def test_every_card_sees_time_move_forward_through_the_copies_and_after_the_backfill() -> None:
    pool, source = bench_stateful.load_payloads()
    spec = bench_stateful.request_spec(pool, passes=3)
    assert spec["order"] == "shared"  # the users walk one sequence, in the file's order
    times = [json.loads(r["body"])["timestamp"] for r in spec["requests"]]
    assert times == sorted(times) and len(set(times)) > len(pool)
    backfill_end = bench_stateful.history_frame(source, pool)["timestamp"].max()
    assert pd.Timestamp(times[0]) > backfill_end
    assert pd.Timestamp(times[-1]) < pd.Timestamp.now()  # not refused as in the future
    # The probe's rows come after everything the load sent.
    probe = bench_stateful.time_ordered_copy(pool, 3)
    assert probe[0][2].isoformat() > times[-1]
    # Even the default number of copies, and the probe after them, stay in the past.
    last = bench_stateful.time_ordered_copy(pool, bench_stateful.DEFAULT_PASSES + 1)
    assert pd.Timestamp(last[-1][2]) < pd.Timestamp.now()
    assert pd.Timestamp(backfill_end).year >= 1970  # the store holds epoch seconds


def test_users_share_one_sequence_when_the_file_says_so() -> None:
    class User:
        _index = 0

    next_index = bench_client.BenchUser._next_index
    saved = (bench_client.REQUESTS, bench_client.ORDER, bench_client.NEXT_SHARED)
    try:
        bench_client.REQUESTS = [{}] * 5
        bench_client.ORDER, bench_client.NEXT_SHARED = "shared", 0
        first, second = User(), User()
        seen = [next_index(u) for u in (first, second, first, second, first, second)]  # type: ignore[arg-type]
        assert seen == [0, 1, 2, 3, 4, 0]
        bench_client.ORDER = "per-user"
        assert [next_index(first), next_index(second)] == [1, 1]  # type: ignore[arg-type]
    finally:
        bench_client.REQUESTS, bench_client.ORDER, bench_client.NEXT_SHARED = saved


def test_the_history_frame_leaves_out_the_pool_and_the_labels_not_known_yet() -> None:
    pool, source = bench_stateful.load_payloads()
    frame = bench_stateful.history_frame(source, pool[:50])
    assert not set(frame["transaction_id"]) & {t["transaction_id"] for t in pool[:50]}
    assert set(frame["transaction_id"]) & {t["transaction_id"] for t in pool[50:]}
    newest = frame["timestamp"].max()
    recent = frame["timestamp"] > newest - pd.Timedelta(days=bench_stateful.LABEL_DELAY_DAYS)
    assert frame.loc[recent, "is_fraud"].isna().all()
    assert frame.loc[~recent, "is_fraud"].notna().all()


METRICS_BEFORE = """
# TYPE fraud_model_batch_size_rows histogram
fraud_model_batch_size_rows_bucket{endpoint="single",le="1.0"} 10.0
fraud_model_batch_size_rows_bucket{endpoint="single",le="2.0"} 10.0
fraud_model_batch_size_rows_bucket{endpoint="single",le="4.0"} 10.0
fraud_model_batch_size_rows_bucket{endpoint="single",le="+Inf"} 10.0
fraud_model_batch_size_rows_count{endpoint="single"} 10.0
fraud_model_batch_size_rows_sum{endpoint="single"} 10.0
# TYPE fraud_model_step_duration_seconds histogram
fraud_model_step_duration_seconds_sum{endpoint="single",model_name="m",step="predict"} 0.01
fraud_model_step_duration_seconds_count{endpoint="single",model_name="m",step="predict"} 10.0
# TYPE fraud_history_rows counter
fraud_history_rows_total{endpoint="single",outcome="used"} 10.0
"""

METRICS_AFTER = """
# TYPE fraud_model_batch_size_rows histogram
fraud_model_batch_size_rows_bucket{endpoint="single",le="1.0"} 70.0
fraud_model_batch_size_rows_bucket{endpoint="single",le="2.0"} 90.0
fraud_model_batch_size_rows_bucket{endpoint="single",le="4.0"} 110.0
fraud_model_batch_size_rows_bucket{endpoint="single",le="+Inf"} 110.0
fraud_model_batch_size_rows_count{endpoint="single"} 110.0
fraud_model_batch_size_rows_sum{endpoint="single"} 190.0
fraud_model_batch_size_rows_count{endpoint="batch"} 5.0
# TYPE fraud_model_step_duration_seconds histogram
fraud_model_step_duration_seconds_sum{endpoint="single",model_name="m",step="preprocess"} 0.02
fraud_model_step_duration_seconds_sum{endpoint="single",model_name="m",step="predict"} 0.06
fraud_model_step_duration_seconds_sum{endpoint="single",model_name="m",step="postprocess"} 0.02
# TYPE fraud_history_rows counter
fraud_history_rows_total{endpoint="single",outcome="used"} 185.0
fraud_history_rows_total{endpoint="single",outcome="unavailable"} 5.0
"""


def test_the_batch_profile_is_the_difference_between_two_scrapes() -> None:
    before = bench_stateful.scrape(METRICS_BEFORE)
    after = bench_stateful.scrape(METRICS_AFTER)
    profile = bench_stateful.batch_profile(before, after)
    assert profile["batches"] == 100 and profile["rows"] == 180
    assert profile["mean_batch_rows"] == pytest.approx(1.8)
    assert profile["model_seconds_per_batch"] == pytest.approx(0.09 / 100)
    assert profile["history_rows"] == {"used": 175.0, "replayed": 0.0, "unavailable": 5.0}
    assert profile["batch_size_buckets"] == {1: 60.0, 2: 20.0, 4: 20.0}


def test_probe_sizes_follow_the_service_batch_sizes() -> None:
    sizes = bench_stateful.probe_sizes({1: 60.0, 2: 20.0, 4: 20.0}, 5_000)
    assert set(sizes) == {1, 2, 4}
    assert sizes.count(1) / len(sizes) == pytest.approx(0.6, abs=0.03)
    assert bench_stateful.probe_sizes({}, 3) == [1, 1, 1]


def test_script_cpu_and_the_store_share() -> None:
    before = {"evalsha": {"calls": 10.0, "usec": 1_000.0}}
    after = {"evalsha": {"calls": 110.0, "usec": 11_000.0}, "eval": {"calls": 0.0, "usec": 0.0}}
    cpu = bench_stateful.script_cpu(before, after)
    assert cpu == {"calls": 100.0, "cpu_seconds": 0.01, "cpu_us_per_call": 100.0}
    share = bench_stateful.store_share({"model_seconds_per_batch": 0.0003}, {"mean_ms": 0.1})
    assert share == pytest.approx(0.25)
    assert bench_stateful.store_share({}, {}) is None
    assert bench_stateful.degraded_rows({"used": 5.0, "unavailable": 2.0}) == 2.0
    assert bench_stateful.degraded_rows({"used": 5.0, "unavailable": 0.0}) == 0.0
    assert bench_stateful.degraded_rows({"used": 0.0, "unavailable": 0.0}) is None


def _doc(stateless: float, stateful: float, degraded: float, errors: int = 0) -> dict[str, Any]:
    def target(rps: float, step_errors: int) -> dict[str, Any]:
        step = {"offered_rps": 500.0, "achieved_rps": rps, "errors": step_errors, "passed": True}
        return {
            "label": "x",
            "max_sustained_rps": rps,
            "steps": [step],
            "at_max": step,
            "rss_mb": {"end": 100.0},
        }

    stateful_target = target(stateful, errors)
    stateful_target["stateful"] = {
        "backfill": {"rows": 40_000.0, "rows_per_second": 100_000.0},
        "service": {
            "rows": 1000.0,
            "batches": 800.0,
            "mean_batch_rows": 1.25,
            "model_seconds_per_batch": 0.0004,
            "history_rows": {"used": 1000.0 - degraded, "unavailable": degraded},
        },
        "valkey_script_cpu": {"calls": 800.0, "cpu_seconds": 0.08, "cpu_us_per_call": 100.0},
        "store_round_trip": {
            "calls": 2000.0,
            "mean_batch_rows": 1.25,
            "mean_ms": 0.2,
            "p50_ms": 0.18,
            "p99_ms": 0.6,
        },
        "store_share_of_batch": 0.2 / 0.6,
        "degraded_rows": degraded,
    }
    return {"targets": {"service": target(stateless, 0), bench.STATEFUL: stateful_target}}


def _checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["target"]: c for c in bench_report.stateful_checks(doc)}


def test_the_stateful_target_must_reach_60_percent_without_errors_or_degraded_rows() -> None:
    good = _checks(_doc(1000.0, 700.0, 0.0))
    ratio = next(c for name, c in good.items() if name.startswith("stateful / stateless"))
    assert ratio["value"] == pytest.approx(0.7) and ratio["met"] is True
    assert all(c["met"] in (True, None) for c in good.values())
    slow = _checks(_doc(1000.0, 500.0, 0.0))
    assert any(c["met"] is False for c in slow.values())
    degraded = _checks(_doc(1000.0, 700.0, 3.0))
    assert [c["value"] for c in degraded.values() if c["met"] is False] == [3.0]
    failing = _checks(_doc(1000.0, 700.0, 0.0, errors=2))
    assert [c["value"] for c in failing.values() if c["met"] is False] == [2]
    assert bench_report.stateful_checks({"targets": {"service": {}}}) == []


def test_the_report_shows_where_a_stateful_batch_spends_its_time() -> None:
    text = "\n".join(bench_report.stateful_section(_doc(1000.0, 700.0, 0.0)))
    assert "0.400 |" in text  # model steps, ms per batch
    assert "0.200 / 0.180 / 0.600" in text  # store round trip mean / p50 / p99
    assert "33.3%" in text
    assert "20.0% of (its CPU" in text  # 0.1 ms Valkey CPU vs 0.4 ms model steps


def test_the_stateful_target_is_the_service_with_its_own_requests(tmp_path: Path) -> None:
    service, stateful = bench.make_targets("m:1", tmp_path, 3000, ["service", bench.STATEFUL])
    assert stateful.command == service.command
    assert stateful.protocol == "stateful"
    assert "FRAUD_HISTORY_URL" not in stateful.env  # added once the store runs
    run = bench_stateful.StatefulRun("valkey://127.0.0.1:1/0", [], {})
    assert run.service_env == {"FRAUD_HISTORY_URL": "valkey://127.0.0.1:1/0"}


def test_a_pinned_valkey_answers_the_probe_and_counts_its_script_calls(tmp_path: Path) -> None:
    """Against a real embedded Valkey (starts in well under a second)."""
    ours = os.sched_getaffinity(0)
    core = min(ours)
    with bench_stateful.pinned_valkey(core, tmp_path / "valkey") as url:
        stats = bench_stateful.command_stats(url)
        pid = int(_info(url)["process_id"])
        for task in Path(f"/proc/{pid}/task").iterdir():
            status = (task / "status").read_text()
            assert f"Cpus_allowed_list:\t{core}\n" in status
        probe = bench_stateful.probe_round_trips(url, POOL, [1, 2, 3])
        cpu = bench_stateful.script_cpu(stats, bench_stateful.command_stats(url))
    assert probe["calls"] == 3 and probe["unavailable_rows"] == 0
    assert 0 < probe["p50_ms"] <= probe["p99_ms"]
    assert cpu["calls"] >= 3 and cpu["cpu_us_per_call"] > 0  # one script call per batch at least
    assert os.sched_getaffinity(0) == ours  # restored after the start


def _info(url: str) -> dict[str, Any]:
    import valkey  # noqa: PLC0415

    client = valkey.Valkey.from_url(url.replace("valkey://", "redis://", 1))
    try:
        return dict(client.info("server"))  # type: ignore[arg-type]
    finally:
        client.close()
