"""The model benchmark's judgement over several worlds: means, worst worlds, tolerances, targets.

The full protocol (1.8M transactions per world) runs in ``make model-benchmark``; here the
combination is fed per-world results whose right answers are known, and the protocol's
periods and baseline settings are checked directly.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pytest

from training import benchmark
from training import benchmark_summary as summary
from training.protocol import handbook_periods


def _part(auc: float, ap: float, cp: float, se: float | None = None) -> dict[str, Any]:
    metrics: dict[str, Any] = {"auc_roc": auc, "average_precision": ap, "card_precision_at_100": cp}
    if se is not None:
        metrics["standard_error"] = dict.fromkeys(metrics, se)
    return metrics


def _per_world(values: dict[int, tuple[float, float, float]]) -> dict[str, dict[str, Any]]:
    return {
        str(seed): {
            "models": {name: _part(*v, se=0.02) for name in summary.REPRODUCED}
            | {"project_model": _part(*v)}
        }
        for seed, v in values.items()
    }


def test_combine_averages_each_metric_and_keeps_every_world() -> None:
    models = summary.combine(_per_world({0: (0.88, 0.74, 0.33), 1: (0.90, 0.76, 0.31)}))
    project = models["project_model"]
    assert project["auc_roc"] == pytest.approx(0.89)
    assert project["average_precision"] == pytest.approx(0.75)
    assert project["per_world"]["average_precision"] == {"0": 0.74, "1": 0.76}
    # Spread of the mean of two values 0.02 apart: std (ddof=1) 0.01414 / sqrt(2) = 0.01.
    assert project["standard_error_of_mean"]["average_precision"] == pytest.approx(0.01)
    assert "standard_error" not in project
    assert models["xgboost_defaults"]["standard_error"]["auc_roc"] == pytest.approx(0.02)


def test_worst_world_is_found_per_metric() -> None:
    models = summary.combine(
        _per_world({0: (0.88, 0.78, 0.33), 1: (0.91, 0.74, 0.35), 2: (0.90, 0.77, 0.31)})
    )
    worst = models["project_model"]["worst"]
    assert worst["auc_roc"] == {"value": 0.88, "world": "0"}
    assert worst["average_precision"] == {"value": 0.74, "world": "1"}
    assert worst["card_precision_at_100"] == {"value": 0.31, "world": "2"}


def test_targets_need_the_mean_and_the_worst_world() -> None:
    # Mean 0.905 / 0.775 / 0.335, worst 0.89 / 0.76 / 0.31: everything met.
    good = summary.combine(_per_world({0: (0.89, 0.76, 0.31), 1: (0.92, 0.79, 0.36)}))
    judged = summary.targets(good["project_model"])
    assert summary.all_targets_met(judged)
    assert judged["average_precision"]["mean"]["value"] == pytest.approx(0.775)
    # Same mean AUC, but one world below the book's best 0.879: not met.
    bad = summary.combine(_per_world({0: (0.875, 0.76, 0.31), 1: (0.935, 0.79, 0.36)}))
    judged = summary.targets(bad["project_model"])
    assert judged["auc_roc"]["mean"]["ok"]
    assert not judged["auc_roc"]["worst_world"]["ok"]
    assert judged["auc_roc"]["worst_world"]["world"] == "0"
    assert not summary.all_targets_met(judged)


def test_reproduction_tolerance_adds_the_published_weeks_own_error() -> None:
    published = summary.PUBLISHED["xgboost_defaults"]["auc_roc"]
    # 5 worlds, one-week error 0.02: tolerance 3 * 0.02 * sqrt(1 + 1/5) = 0.0657.
    tol = 3 * 0.02 * math.sqrt(1.2)
    inside = dict.fromkeys(range(5), (published + tol - 0.001, 0.6, 0.3))
    outside = dict.fromkeys(range(5), (published + tol + 0.001, 0.6, 0.3))
    ok = summary.reproduction(summary.combine(_per_world(inside)), 5)
    assert ok["xgboost_defaults"]["auc_roc"]["tolerance"] == pytest.approx(tol)
    assert ok["xgboost_defaults"]["auc_roc"]["ok"] is True
    bad = summary.reproduction(summary.combine(_per_world(outside)), 5)
    assert bad["xgboost_defaults"]["auc_roc"]["ok"] is False


def test_no_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one seed"):
        benchmark.run(())


def test_ten_worlds_fixed_in_advance() -> None:
    assert tuple(range(10)) == benchmark.SEEDS


def test_book_xgboost_settings_are_the_pre_2_defaults() -> None:
    models = benchmark.baseline_models()
    book, settings = models["xgboost_defaults"]
    params = book.get_params()
    assert params["tree_method"] == "exact"
    assert params["base_score"] == 0.5
    assert (params["n_estimators"], params["learning_rate"], params["max_depth"]) == (100, 0.3, 6)
    assert settings["params"]["tree_method"] == "exact"
    assert settings["library"].startswith("xgboost ")
    current, _ = models["xgboost_current_defaults"]
    assert current.get_params()["tree_method"] is None  # today's default (hist)


def test_protocol_periods_on_the_simulation_are_the_books() -> None:
    book_train, book_test = handbook_periods()
    periods = benchmark.benchmark_periods(date(2018, 4, 1), book_test.start)
    assert periods.book_train == book_train
    assert periods.test == book_test
    project = periods.project
    assert project.train.start == date(2018, 5, 1)  # after the 30-day burn-in
    assert project.train.end == date(2018, 7, 18)  # 7 days before the validation week
    assert project.valid == book_train
