"""The locustfile's own logic: response validation, load shapes, the SLO gate, the pool."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# Locust monkey-patches the whole interpreter with gevent on import; unit tests only need its
# classes, and patching would leak into every other test in this process.
os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")

from locust.env import Environment

from fraud_contract import api
from fraud_contract.api import BatchResult, Reason, ScoreResult
from fraud_contract.schema import Transaction
from loadtests import locustfile as lf

CARD = {
    "tag": "fraud-detector:abc",
    "threshold": 0.5,
    "risk_bands": [{"name": "low", "lower": 0.0}, {"name": "high", "lower": 0.5}],
}
EXPECT = lf.ModelExpectations.from_card(CARD)


def result(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": "tx-1",
        "fraud_probability": 0.8,
        "is_fraud": True,
        "risk_band": "high",
        "threshold": 0.5,
        "model_tag": "fraud-detector:abc",
        "reasons": [{"feature": "amount", "value": 300.0, "contribution": 1.2}],
    }
    body.update(overrides)
    return body


# ---- validation ---------------------------------------------------------------------------


def test_a_well_formed_result_passes_and_matches_the_contract_model() -> None:
    assert lf.validate_score_result(result(), "tx-1", EXPECT) is None
    ScoreResult.model_validate(result())  # the fixture itself obeys the real contract


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"transaction_id": "tx-2"}, "transaction_id"),
        ({"fraud_probability": 1.5}, "not a probability"),
        ({"fraud_probability": True}, "not a probability"),
        ({"fraud_probability": float("nan")}, "not a probability"),
        ({"is_fraud": False}, "disagrees"),
        ({"fraud_probability": 0.2}, "disagrees"),
        ({"risk_band": "purple"}, "risk_band"),
        ({"threshold": 0.3, "fraud_probability": 0.4}, "model card"),
        ({"model_tag": "fraud-detector:old"}, "model_tag"),
        ({"reasons": [{"feature": "amount"}]}, "reason"),
        ({"reasons": "amount"}, "not a list"),
    ],
)
def test_a_200_with_a_wrong_body_is_rejected(overrides: dict[str, Any], fragment: str) -> None:
    problem = lf.validate_score_result(result(**overrides), "tx-1", EXPECT)
    assert problem is not None
    assert fragment in problem


def test_missing_keys_and_non_objects_are_rejected() -> None:
    body = result()
    del body["risk_band"]
    assert "risk_band" in (lf.validate_score_result(body, "tx-1") or "")
    assert "not an object" in (lf.validate_score_result([body], "tx-1") or "")


def test_without_a_model_card_validation_still_checks_internal_consistency() -> None:
    loose = lf.ModelExpectations()
    assert lf.validate_score_result(result(risk_band="anything"), "tx-1", loose) is None
    assert lf.validate_score_result(result(is_fraud=False), "tx-1", loose) is not None


def test_batch_results_must_match_the_sent_ids_in_order() -> None:
    body = {
        "model_tag": "fraud-detector:abc",
        "results": [result(transaction_id="a"), result(transaction_id="b")],
    }
    assert lf.validate_batch_response(body, ["a", "b"], EXPECT) is None
    assert "results[0]" in (lf.validate_batch_response(body, ["b", "a"], EXPECT) or "")
    assert "2 results for 3" in (lf.validate_batch_response(body, ["a", "b", "c"]) or "")
    assert lf.validate_batch_response({"results": None}, ["a"]) is not None
    stale = {**body, "model_tag": "fraud-detector:old"}
    assert "model_tag" in (lf.validate_batch_response(stale, ["a", "b"], EXPECT) or "")


def test_a_result_without_reasons_passes_whether_flagged_or_not() -> None:
    """By default only flagged results carry reasons (``FRAUD_REASONS``; no ``?explain``)."""
    genuine = result(fraud_probability=0.1, is_fraud=False, risk_band="low", reasons=[])
    assert lf.validate_score_result(genuine, "tx-1", EXPECT) is None
    ScoreResult.model_validate(genuine)
    # FRAUD_REASONS=none (or top_k 0) leaves even flagged results without reasons.
    assert lf.validate_score_result(result(reasons=[]), "tx-1", EXPECT) is None
    body = {"model_tag": "fraud-detector:abc", "results": [genuine, result(transaction_id="b")]}
    assert lf.validate_batch_response(body, ["tx-1", "b"], EXPECT) is None
    BatchResult.model_validate(body)


def test_a_result_must_still_carry_the_reasons_key() -> None:
    body = result()
    del body["reasons"]
    assert "reasons" in (lf.validate_score_result(body, "tx-1", EXPECT) or "")


def test_batch_body_keys_are_required() -> None:
    problem = lf.validate_batch_response({"results": [result()]}, ["tx-1"])
    assert "model_tag" in (problem or "")


# ---- the contract the locustfile re-declares (it runs without the project installed) --------


def test_routes_and_header_match_the_api_contract() -> None:
    assert lf.SCORE_PATH == api.SCORE_PATH
    assert lf.BATCH_PATH == api.SCORE_BATCH_PATH
    assert lf.MODEL_PATH == api.MODEL_PATH
    assert lf.API_KEY_HEADER == api.API_KEY_HEADER
    # The statistics names the SLO files refer to are built from the same routes.
    assert f"POST {api.SCORE_PATH}" == lf.SCORE_NAME
    assert f"POST {api.SCORE_BATCH_PATH}" == lf.BATCH_NAME


def test_response_keys_match_the_contract_models() -> None:
    # The keys every result has (history and aggregates come only with the history store).
    required = {name for name, field in ScoreResult.model_fields.items() if field.is_required()}
    assert required == lf.RESULT_KEYS
    assert set(Reason.model_fields) == lf.REASON_KEYS
    assert set(BatchResult.model_fields) == lf.BATCH_KEYS


def test_every_contract_literal_in_the_locustfile_is_checked() -> None:
    """A new route or key constant in the locustfile must be added to the two tests above."""
    checked = {
        "SCORE_PATH",
        "BATCH_PATH",
        "MODEL_PATH",
        "API_KEY_HEADER",
        "SCORE_NAME",
        "BATCH_NAME",
        "RESULT_KEYS",
        "REASON_KEYS",
        "BATCH_KEYS",
    }
    declared = {
        name
        for name in vars(lf)
        if name.isupper() and name.endswith(("_PATH", "_KEYS", "_HEADER", "_PARAM"))
    }
    assert declared <= checked, f"not checked against fraud_contract.api: {declared - checked}"
    # The paths the test requests are all contract routes (nothing else hard-coded).
    routes = {value for name, value in vars(api).items() if name.endswith("_PATH")}
    assert {lf.SCORE_PATH, lf.BATCH_PATH, lf.MODEL_PATH} <= routes


# ---- shapes -------------------------------------------------------------------------------


def test_step_shape_climbs_in_four_equal_steps_then_stops() -> None:
    stages = lf.build_stages("step", peak_users=20, duration=40)
    users = [lf.stage_at(stages, t) for t in (0, 9.9, 10, 25, 39.9)]
    assert [u[0] for u in users if u] == [5, 5, 10, 15, 20]
    assert lf.stage_at(stages, 40) is None


def test_spike_returns_to_baseline_after_the_peak() -> None:
    stages = lf.build_stages("spike", peak_users=40, duration=100)
    levels = [lf.stage_at(stages, t) for t in (10, 50, 80)]
    assert [level[0] for level in levels if level] == [10, 40, 10]


def test_ramp_spawns_gradually_and_soak_holds() -> None:
    ramp = lf.stage_at(lf.build_stages("ramp", 30, 100), 0)
    assert ramp == (30, pytest.approx(30 / 40))
    soak = lf.build_stages("soak", 10, 600)
    assert lf.stage_at(soak, 599) == (10, pytest.approx(10 / 30))
    assert lf.stage_at(soak, 600) is None


@pytest.mark.parametrize(
    ("kind", "users", "duration"), [("wave", 5, 10), ("step", 0, 10), ("ramp", 5, 0)]
)
def test_bad_shape_settings_are_refused(kind: str, users: int, duration: float) -> None:
    with pytest.raises(ValueError, match="shape"):
        lf.build_stages(kind, users, duration)


# ---- SLO gate -----------------------------------------------------------------------------

SLO = {
    "objectives": [
        {"request": "Aggregated", "metric": "error_ratio", "max": 0.01},
        {"request": "POST /v1/score", "metric": "p99_ms", "max": 50},
        {"request": "Aggregated", "metric": "throughput_rps", "min": 1},
    ]
}


def observation(**overrides: Any) -> lf.Observation:
    values: dict[str, Any] = {
        "requests": 1000,
        "failures": 0,
        "p50_ms": 3,
        "p95_ms": 8,
        "p99_ms": 12,
        "throughput_rps": 200,
    }
    values.update(overrides)
    return lf.Observation(**values)


def test_slo_passes_when_every_objective_holds() -> None:
    verdicts = lf.evaluate_slo(
        lf.parse_slo(SLO), {"Aggregated": observation(), "POST /v1/score": observation()}
    )
    assert all(v.passed for v in verdicts)


def test_slo_misses_on_latency_errors_or_absent_traffic() -> None:
    objectives = lf.parse_slo(SLO)
    slow = lf.evaluate_slo(
        objectives, {"Aggregated": observation(), "POST /v1/score": observation(p99_ms=51)}
    )
    assert [v.passed for v in slow] == [True, False, True]
    errors = lf.evaluate_slo(
        objectives, {"Aggregated": observation(failures=11), "POST /v1/score": observation()}
    )
    assert not errors[0].passed
    assert errors[0].observed == pytest.approx(0.011)
    absent = lf.evaluate_slo(objectives, {"Aggregated": observation()})
    assert not absent[1].passed
    assert absent[1].observed is None
    assert "MISS" in absent[1].line()


def test_an_empty_run_never_passes() -> None:
    assert observation(requests=0).error_ratio == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"objectives": []},
        {"objectives": [{"metric": "p42_ms", "max": 1}]},
        {"objectives": [{"metric": "p99_ms", "max": 1, "min": 0}]},
        {"objectives": [{"metric": "p99_ms"}]},
    ],
)
def test_malformed_slo_documents_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="objective"):
        lf.parse_slo(bad)


def test_committed_slo_files_parse() -> None:
    slo_dir = Path(lf.HERE) / "slo"
    for path in sorted(slo_dir.glob("*.json")):
        assert lf.load_slo(path), path


def _environment_with(latency_ms: int, count: int, failures: int) -> Environment:
    env = Environment(user_classes=[], events=lf.events)
    for i in range(count):
        env.stats.log_request("POST", lf.SCORE_NAME, latency_ms, 100)
        if i < failures:
            env.stats.log_error("POST", lf.SCORE_NAME, "HTTP 500")
    return env


@pytest.mark.parametrize(
    ("latency", "failures", "exit_code"), [(10, 0, 0), (80, 0, 1), (10, 20, 1)]
)
def test_quitting_hook_sets_the_exit_code_and_writes_the_verdict(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    latency: int,
    failures: int,
    exit_code: int,
) -> None:
    slo_file = tmp_path / "slo.json"
    slo_file.write_text(json.dumps(SLO))
    verdict_file = tmp_path / "verdict.json"
    monkeypatch.setenv("FRAUD_LOADTEST_SLO", str(slo_file))
    monkeypatch.setenv("FRAUD_LOADTEST_SLO_RESULT", str(verdict_file))
    env = _environment_with(latency, count=200, failures=failures)
    lf._enforce_slo(env)
    assert env.process_exit_code == exit_code
    verdict = json.loads(verdict_file.read_text())
    assert verdict["passed"] is (exit_code == 0)
    assert len(verdict["objectives"]) == 3


# ---- payload pool -------------------------------------------------------------------------


def test_committed_pool_is_valid_contract_traffic_that_fits_a_configmap() -> None:
    path = Path(lf.HERE) / "payloads.json"
    assert path.stat().st_size < 1_000_000  # a ConfigMap holds at most 1 MiB
    pool = lf.load_transactions(path)
    assert len(pool) >= 500
    for tx in pool:
        Transaction.model_validate(tx)
    scenarios = json.loads(path.read_text())["source"]["scenarios"]
    assert scenarios["genuine"] < len(pool)  # frauds are in the mix
    assert len({tx["customer_id"] for tx in pool}) > 50


def test_examples_file_format_is_accepted(tmp_path: Path) -> None:
    tx = {
        "timestamp": "2018-08-09T14:23:05",
        "customer_id": "C1",
        "terminal_id": "T1",
        "amount": 5.0,
    }
    path = tmp_path / "examples.json"
    path.write_text(json.dumps([{"name": "genuine", "description": "x", "transaction": tx}]))
    assert lf.load_transactions(path) == [tx]
    path.write_text("[]")
    with pytest.raises(ValueError, match="no transactions"):
        lf.load_transactions(path)


def test_transaction_source_gives_unique_ids_without_touching_the_pool() -> None:
    pool = [{"transaction_id": "orig", "amount": 1.0}]
    source = lf.TransactionSource(pool, prefix="u1", seed=1)
    ids = [tx["transaction_id"] for tx in source.batch(50)]
    assert len(set(ids)) == 50
    assert all(i.startswith("u1-") for i in ids)
    assert pool[0]["transaction_id"] == "orig"
