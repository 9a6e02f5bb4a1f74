"""Reading the API's Prometheus /metrics into throughput, error rate and latency percentiles."""

from __future__ import annotations

import pytest

from ui.service_stats import MetricsSnapshot, compute_stats, histogram_quantile, parse_metrics

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, float("inf"))


def exposition(score_ok: int, score_5xx: int, metrics_calls: int, lat: dict[float, int]) -> str:
    """Metrics text shaped like BentoML's, with the UI's own /metrics scrapes mixed in."""
    lines = [
        "# HELP bentoml_service_request_total Total requests",
        "# TYPE bentoml_service_request_total counter",
        f'bentoml_service_request_total{{endpoint="/v1/score",http_response_code="200",'
        f'service_name="FraudScoring"}} {score_ok}',
        f'bentoml_service_request_total{{endpoint="/v1/score",http_response_code="503",'
        f'service_name="FraudScoring"}} {score_5xx}',
        f'bentoml_service_request_total{{endpoint="/metrics",http_response_code="200",'
        f'service_name="FraudScoring"}} {metrics_calls}',
        "# HELP bentoml_service_request_duration_seconds Latency",
        "# TYPE bentoml_service_request_duration_seconds histogram",
    ]
    for bound in BUCKETS:
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(
            f'bentoml_service_request_duration_seconds_bucket{{endpoint="/v1/score",le="{le}"}} '
            f"{lat.get(bound, 0)}"
        )
        lines.append(
            f'bentoml_service_request_duration_seconds_bucket{{endpoint="/metrics",le="{le}"}} '
            f"{metrics_calls}"
        )
    lines += [
        "# HELP fraud_decisions_total Decisions",
        "# TYPE fraud_decisions_total counter",
        'fraud_decisions_total{endpoint="/v1/score",outcome="fraud"} 7',
    ]
    return "\n".join(lines) + "\n"


def test_parse_counts_only_scoring_endpoints() -> None:
    latency = {0.005: 50, 0.01: 80, 0.025: 100, 0.05: 100, 0.1: 100, float("inf"): 100}
    snapshot = parse_metrics(exposition(90, 10, 500, latency), taken_at=0.0)
    assert snapshot.requests_by_status == {"200": 90.0, "503": 10.0}
    assert snapshot.total_requests == 100
    assert snapshot.latency_buckets[float("inf")] == 100  # /metrics scrapes not added


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = {0.01: 50.0, 0.02: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.015)
    assert histogram_quantile(0.5, {}) is None
    assert histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_quantile_in_the_inf_bucket_reports_the_largest_finite_bound() -> None:
    assert histogram_quantile(0.99, {0.1: 10.0, float("inf"): 100.0}) == pytest.approx(0.1)


def test_stats_over_a_window_between_two_scrapes() -> None:
    first = MetricsSnapshot(
        taken_at=100.0,
        requests_by_status={"200": 100.0},
        latency_buckets={0.01: 100.0, 0.1: 100.0, float("inf"): 100.0},
    )
    second = MetricsSnapshot(
        taken_at=110.0,
        requests_by_status={"200": 180.0, "503": 20.0, "422": 0.0},
        latency_buckets={0.01: 100.0, 0.1: 200.0, float("inf"): 200.0},
    )
    stats = compute_stats(second, first)
    assert stats.basis == "window"
    assert stats.throughput_rps == pytest.approx(10.0)
    assert stats.error_rate == pytest.approx(0.2)
    assert stats.rejected_rate == pytest.approx(0.0)
    # All 100 requests of the window fell in (0.01, 0.1]: the median is mid-bucket.
    assert stats.p50_ms == pytest.approx(55.0)
    assert stats.total_requests == 200


def test_first_scrape_reports_totals_since_start_and_no_throughput() -> None:
    snapshot = MetricsSnapshot(
        taken_at=5.0,
        requests_by_status={"200": 3.0, "400": 1.0},
        latency_buckets={0.01: 4.0, float("inf"): 4.0},
    )
    stats = compute_stats(snapshot, None)
    assert stats.basis == "since start"
    assert stats.throughput_rps is None
    assert stats.rejected_rate == pytest.approx(0.25)
    assert stats.p50_ms is not None


def test_idle_window_gives_zero_throughput_and_an_api_restart_is_not_negative() -> None:
    before = MetricsSnapshot(taken_at=0.0, requests_by_status={"200": 50.0})
    idle = MetricsSnapshot(taken_at=5.0, requests_by_status={"200": 50.0})
    assert compute_stats(idle, before).throughput_rps == 0.0
    restarted = MetricsSnapshot(taken_at=10.0, requests_by_status={"200": 2.0})
    stats = compute_stats(restarted, idle)
    assert stats.throughput_rps is None
    assert stats.total_requests == 2


def test_text_that_is_not_prometheus_raises_value_error() -> None:
    with pytest.raises(ValueError):
        parse_metrics("<html>not metrics</html>", taken_at=0.0)
