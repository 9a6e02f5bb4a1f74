"""The model benchmark's judgement over several simulated worlds: means, spreads, tolerances.

The full protocol (1.8M transactions per seed) runs in ``make model-benchmark``; here the
combination is fed per-seed results whose right answers are known.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from training import benchmark


def _part(auc: float, ap: float, cp: float, se: float | None = None) -> dict[str, Any]:
    metrics: dict[str, Any] = {"auc_roc": auc, "average_precision": ap, "card_precision_at_100": cp}
    if se is not None:
        metrics["standard_error"] = dict.fromkeys(metrics, se)
    return metrics


def _per_seed(values: dict[int, tuple[float, float, float]]) -> dict[int, dict[str, Any]]:
    return {
        seed: {
            "models": {
                name: _part(*v, se=0.02)
                for name in ("xgboost_defaults", "logistic_regression", "decision_tree_depth2")
            }
            | {"project_model": _part(*v)}
        }
        for seed, v in values.items()
    }


def test_combine_averages_each_metric_and_keeps_every_seed() -> None:
    models = benchmark.combine(_per_seed({0: (0.88, 0.74, 0.33), 1: (0.90, 0.76, 0.31)}))
    project = models["project_model"]
    assert project["auc_roc"] == pytest.approx(0.89)
    assert project["average_precision"] == pytest.approx(0.75)
    assert project["per_seed"]["average_precision"] == {"0": 0.74, "1": 0.76}
    # Spread of the mean of two values 0.02 apart: std (ddof=1) 0.01414 / sqrt(2) = 0.01.
    assert project["standard_error_of_mean"]["average_precision"] == pytest.approx(0.01)
    assert "standard_error" not in project
    assert models["xgboost_defaults"]["standard_error"]["auc_roc"] == pytest.approx(0.02)


def test_targets_are_judged_on_the_mean() -> None:
    models = benchmark.combine(_per_seed({0: (0.88, 0.74, 0.33), 1: (0.91, 0.77, 0.33)}))
    targets = benchmark._targets(models["project_model"])
    assert targets["average_precision"]["ok"]  # mean 0.755 although seed 0 alone is 0.74
    assert not benchmark._targets(_part(0.88, 0.74, 0.33))["average_precision"]["ok"]


def test_reproduction_tolerance_adds_the_published_weeks_own_error() -> None:
    published = benchmark.PUBLISHED["xgboost_defaults"]["auc_roc"]
    # 5 seeds, one-week error 0.02: tolerance 3 * 0.02 * sqrt(1 + 1/5) = 0.0657.
    tol = 3 * 0.02 * math.sqrt(1.2)
    inside = dict.fromkeys(range(5), (published + tol - 0.001, 0.6, 0.3))
    outside = dict.fromkeys(range(5), (published + tol + 0.001, 0.6, 0.3))
    ok = benchmark._reproduction(benchmark.combine(_per_seed(inside)), 5)
    assert ok["xgboost_defaults"]["auc_roc"]["tolerance"] == pytest.approx(tol)
    assert ok["xgboost_defaults"]["auc_roc"]["ok"] is True
    bad = benchmark._reproduction(benchmark.combine(_per_seed(outside)), 5)
    assert bad["xgboost_defaults"]["auc_roc"]["ok"] is False


def test_no_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one seed"):
        benchmark.run(())
