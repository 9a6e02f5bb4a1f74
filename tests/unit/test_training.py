"""Training pieces: metrics on hand-made data, the delayed time split, the expected-cost
threshold, what a missing aggregate does to a score, and the tiny-model store helper."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fraud_contract import AGGREGATE_FIELDS, columns_from_records, compute_features
from fraud_contract.artifact import load_card
from testkit.models import train_tiny_model
from testkit.tools import REPO_ROOT
from training.evaluation import CostModel, card_precision_at_k, recall_at_fpr
from training.protocol import Period, clean_test, handbook_periods, select
from training.simulation_pipeline import simulate_with_aggregates
from training.simulator import preset
from training.train import (
    MAX_ROUNDS_BY_PRESET,
    TrainingResult,
    default_periods,
    evaluate,
    simulated_source,
)

EXAMPLES = {
    e["name"]: e for e in json.loads((REPO_ROOT / "fraud_contract" / "examples.json").read_text())
}


def test_card_precision_at_k_hand_made() -> None:
    # Day 0: cards A (fraud, 0.9), B (genuine, 0.8, two rows), C (fraud, 0.1).
    # Day 1: A again (already detected on day 0 -> dropped), D (fraud, 0.7), E (genuine, 0.6).
    day = np.array([0, 0, 0, 0, 1, 1, 1])
    card = np.array(["A", "B", "B", "C", "A", "D", "E"])
    label = np.array([1, 0, 0, 1, 1, 1, 0])
    score = np.array([0.9, 0.8, 0.2, 0.1, 0.99, 0.7, 0.6])
    # k=2: day 0 top = A, B -> 1/2; day 1 (A dropped) top = D, E -> 1/2.
    assert card_precision_at_k(day, card, label, score, k=2) == pytest.approx(0.5)
    # k=1: day 0 -> A (1/1); day 1 -> D (1/1), A was removed although it scores highest.
    assert card_precision_at_k(day, card, label, score, k=1) == pytest.approx(1.0)
    # A card's label is the max over its rows: B's low-score row changes nothing.
    assert card_precision_at_k(day[:4], card[:4], label[:4], score[:4], k=3) == pytest.approx(2 / 3)


def test_recall_at_fpr_hand_made() -> None:
    label = np.array([0] * 100 + [1] * 4)
    score = np.concatenate([np.linspace(0, 0.5, 99), [0.95], [0.9, 0.97, 0.3, 0.99]])
    # No false positive allowed: cut above the 0.95 genuine -> frauds 0.97, 0.99 caught.
    assert recall_at_fpr(label, score, 0.0) == pytest.approx(0.5)
    # 1% of 100 genuine = 1 false positive (the 0.95) allowed: the 0.9 fraud is caught too.
    assert recall_at_fpr(label, score, 0.01) == pytest.approx(0.75)
    # 50% allowed: the cut falls to 0.25, below the 0.3 fraud.
    assert recall_at_fpr(label, score, 0.5) == pytest.approx(1.0)


def test_expected_cost_threshold_hand_made() -> None:
    label = np.array([1, 0, 1, 0, 0])
    amount = np.array([100.0, 50.0, 3.0, 20.0, 20.0])
    score = np.array([0.9, 0.6, 0.5, 0.2, 0.1])
    threshold, cost = CostModel(review_cost=5.0).best_threshold(label, amount, score)
    # Alert on the top 1 costs 5 + 3 (missed small fraud) = 8; top 3 costs 15; none costs 103.
    assert threshold == pytest.approx(0.9)
    assert cost == pytest.approx(8.0)
    alert = score >= threshold
    assert CostModel(5.0).cost(label, amount, alert) == pytest.approx(cost)


def test_periods_keep_the_label_delay_and_never_overlap() -> None:
    periods = default_periods(preset("demo"))
    assert (periods.valid.start - periods.train.end).days == 7
    assert (periods.test.start - periods.valid.end).days == 7
    assert periods.train.start == date(2018, 5, 1)  # after the 30-day burn-in
    train, test = handbook_periods()
    assert (train.start, train.end, test.start, test.end) == (
        date(2018, 7, 25),
        date(2018, 8, 1),
        date(2018, 8, 8),
        date(2018, 8, 15),
    )


def test_test_cleaning_drops_cards_with_known_fraud() -> None:
    ts = pd.to_datetime
    frame = pd.DataFrame({
        "timestamp": ts(["2018-07-25 10:00", "2018-07-26 10:00", "2018-08-08 09:00",
                         "2018-08-08 09:00", "2018-08-09 09:00", "2018-08-09 11:00",
                         "2018-08-10 12:00"]),
        "customer_id": ["A", "B", "A", "C", "C", "D", "D"],
        "is_fraud": [1, 0, 0, 0, 1, 0, 0],
    })  # fmt: skip
    # D's fraud is known on 08-09 (pandas-stubs type a row assignment too narrowly).
    frame.loc[len(frame)] = [ts("2018-08-01 08:00"), "D", 1]  # type: ignore[assignment]
    train, test = Period(date(2018, 7, 25), 7), Period(date(2018, 8, 8), 7)
    kept = clean_test(frame, train, test)
    assert kept["customer_id"].tolist() == ["C", "C"]
    assert len(select(frame, train)) == 2


@pytest.fixture(scope="module")
def trained() -> TrainingResult:
    config = preset("test")
    frame = simulate_with_aggregates(config, progress=False)
    return evaluate(
        frame,
        default_periods(config),
        simulated_source(frame, config, "test"),
        max_rounds=MAX_ROUNDS_BY_PRESET["test"],
    )


def _score(result: TrainingResult, record: dict[str, object]) -> float:
    x = compute_features(columns_from_records([record]), result.model.feature_names)
    return float(result.model.predict_matrix(x)[0])


def test_model_card_is_complete(trained: TrainingResult) -> None:
    card = trained.card
    assert 0.0 < card.threshold < 1.0
    assert card.band_of(card.threshold) == "high"
    assert card.band_of(0.0) == "low"
    assert {"auc_roc", "average_precision", "card_precision_at_100", "recall_at_1pct_fpr",
            "brier_score", "expected_cost"} <= set(card.metrics)  # fmt: skip
    assert card.metrics["auc_roc"] > 0.75  # learns something real even on the tiny preset
    assert set(card.scenario_recall) <= {
        "amount_over_220",
        "compromised_terminal",
        "compromised_card",
    }
    assert len(card.training_data_fingerprint) == 64
    assert (
        card.dataset["periods"]["train"]["end_exclusive"]
        < card.dataset["periods"]["valid"]["start"]
    )
    # The data actually used: the simulator (older cards had only these two keys).
    assert card.dataset["preset"] == "test"
    assert card.dataset["simulator"]["seed"] == 0
    source = card.dataset["source"]
    assert source["kind"] == "simulator"
    assert source["has_fraud_scenario"] is True
    assert source["rows"] > 10_000
    assert source["period"]["first"].startswith("2018-04-01")


def test_missing_aggregates_change_the_score_as_expected(trained: TrainingResult) -> None:
    """What a missing aggregate does: the score falls back to what the record alone shows."""
    full = EXAMPLES["compromised_terminal"]["transaction"]
    no_terminal = {
        k: v for k, v in full.items() if not k.startswith("terminal_") or k == "terminal_id"
    }
    bare = {k: v for k, v in full.items() if k not in AGGREGATE_FIELDS}
    with_history, without_terminal, without_any = (
        _score(trained, full),
        _score(trained, no_terminal),
        _score(trained, bare),
    )
    for value in (with_history, without_terminal, without_any):
        assert 0.0 <= value <= 1.0
    # The delayed terminal history is the only evidence of scenario 2: without it the
    # transaction looks far less suspicious, but it is still scored (no error, no imputation).
    assert with_history > trained.card.threshold
    assert without_terminal < with_history / 2
    # A caller that sends the delayed windows but not the (newer) fraud run fields is scored
    # from the windows: still far more suspicious than with no terminal history at all.
    no_run = {k: v for k, v in full.items() if not k.startswith("terminal_fraud_run_")}
    assert 2 * without_terminal < _score(trained, no_run) < with_history
    # A stolen card's 5x amount is suspicious against the card's own averages; without the
    # card history only the raw amount is left, so the score drops.
    card_fraud = EXAMPLES["compromised_card"]["transaction"]
    card_bare = {k: v for k, v in card_fraud.items() if k not in AGGREGATE_FIELDS}
    assert _score(trained, card_bare) < _score(trained, card_fraud)


def test_train_tiny_model_saves_a_loadable_card(bentoml_home: Path) -> None:
    tag = train_tiny_model(bentoml_home)
    assert tag.startswith("fraud-detector:")
    name, version = tag.split(":")
    model_yaml = bentoml_home / "models" / name / version / "model.yaml"
    info = yaml.safe_load(model_yaml.read_text())
    card = load_card(info["metadata"])
    assert card.feature_names and card.threshold > 0
    assert info["labels"]["preset"] == "test"
