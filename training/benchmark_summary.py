"""The benchmark's judgement over its worlds: means, worst worlds, tolerances and targets.

A *world* is one dataset the whole protocol ran on: one simulator seed, or the user's file.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

#: The handbook's published test-week results (AUC ROC, AP, CP@100).
PUBLISHED: Final[dict[str, dict[str, float]]] = {
    "decision_tree_depth2": {
        "auc_roc": 0.763,
        "average_precision": 0.496,
        "card_precision_at_100": 0.241,
    },
    "logistic_regression": {
        "auc_roc": 0.871,
        "average_precision": 0.606,
        "card_precision_at_100": 0.291,
    },
    "xgboost_defaults": {
        "auc_roc": 0.862,
        "average_precision": 0.639,
        "card_precision_at_100": 0.273,
    },
    "book_best_after_selection": {
        "auc_roc": 0.879,
        "average_precision": 0.694,
        "card_precision_at_100": 0.305,
    },
}
#: The project's targets for the mean over the worlds; the worst world must beat the book's
#: best after model selection on every metric.
MEAN_TARGETS: Final[dict[str, float]] = {
    "auc_roc": 0.90,
    "average_precision": 0.77,
    "card_precision_at_100": 0.33,
}
METRICS: Final = ("auc_roc", "average_precision", "card_precision_at_100")
#: Rows reported for every world but not judged against a published number.
REPRODUCED: Final = ("xgboost_defaults", "logistic_regression", "decision_tree_depth2")
TOLERANCE_SE: Final = 3.0
TOLERANCE_FLOOR: Final = 0.02


def combine(per_world: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and worst world of every model's metrics, with each world's value and the spread.

    Baselines also get the mean one-week standard error (for the reproduction tolerance);
    the Brier score (lower is better) is averaged too when the worlds report it.
    """
    worlds = list(per_world)
    names = per_world[worlds[0]]["models"]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        runs = [per_world[w]["models"][name] for w in worlds]
        entry: dict[str, Any] = {"per_world": {}, "worst": {}, "standard_error_of_mean": {}}
        for metric in METRICS:
            values = np.array([r[metric] for r in runs], dtype=np.float64)
            entry[metric] = float(values.mean())
            entry["per_world"][metric] = dict(zip(worlds, values.tolist(), strict=True))
            worst = int(np.argmin(values))
            entry["worst"][metric] = {"value": float(values[worst]), "world": worlds[worst]}
            spread = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else 0.0
            entry["standard_error_of_mean"][metric] = spread
            if "standard_error" in runs[0]:
                week = float(np.mean([r["standard_error"][metric] for r in runs]))
                entry.setdefault("standard_error", {})[metric] = week
        if all("brier_score" in r for r in runs):
            brier = np.array([r["brier_score"] for r in runs], dtype=np.float64)
            entry["brier_score"] = float(brier.mean())
            entry["per_world"]["brier_score"] = dict(zip(worlds, brier.tolist(), strict=True))
        for key in ("settings",):
            if key in runs[0]:
                entry[key] = runs[0][key]
        out[name] = entry
    return out


def reproduction(results: dict[str, dict[str, Any]], n_worlds: int) -> dict[str, Any]:
    """Is each published baseline within tolerance of our mean over the worlds?

    Tolerance: 3 standard errors of the difference between one published week and the mean
    of ``n_worlds`` weeks, ``3 * se * sqrt(1 + 1/n)``, and at least 0.02.
    """
    out: dict[str, Any] = {}
    for name in REPRODUCED:
        checks = {}
        for metric in METRICS:
            week_se = results[name]["standard_error"][metric]
            tol = max(TOLERANCE_SE * week_se * math.sqrt(1 + 1 / n_worlds), TOLERANCE_FLOOR)
            diff = results[name][metric] - PUBLISHED[name][metric]
            checks[metric] = {"difference": diff, "tolerance": tol, "ok": bool(abs(diff) <= tol)}
        out[name] = checks
    return out


def targets(project: dict[str, Any]) -> dict[str, Any]:
    """The mean targets and "the worst world beats the book's best", metric by metric."""
    best = PUBLISHED["book_best_after_selection"]
    out: dict[str, Any] = {}
    for metric, target in MEAN_TARGETS.items():
        worst = project["worst"][metric]
        out[metric] = {
            "mean": {"target": target, "value": project[metric], "ok": project[metric] >= target},
            "worst_world": {
                "must_beat": best[metric],
                "value": worst["value"],
                "world": worst["world"],
                "ok": worst["value"] > best[metric],
            },
        }
    return out


def all_targets_met(judged: dict[str, Any]) -> bool:
    """True when every mean target and every worst-world target is met."""
    return all(v["mean"]["ok"] and v["worst_world"]["ok"] for v in judged.values())


def table(body: dict[str, Any]) -> str:
    """The comparison as plain text: mean (and worst world) next to the published numbers."""
    rows = [
        f"{'model':<30} {'AUC ROC':>22} {'AP':>22} {'CP@100':>22} {'Brier':>8}",
        f"{'':<30} {'mean / worst / book':>22} {'mean / worst / book':>22} "
        f"{'mean / worst / book':>22}",
    ]
    for name, metrics in body["models"].items():
        book = PUBLISHED.get(name, PUBLISHED["book_best_after_selection"])
        cells = [
            f"{metrics[m]:.3f} / {metrics['worst'][m]['value']:.3f} / {book[m]:.3f}"
            for m in METRICS
        ]
        brier = f"{metrics['brier_score']:.5f}" if "brier_score" in metrics else ""
        rows.append(f"{name:<30} " + " ".join(f"{c:>22}" for c in cells) + f" {brier:>8}")
    project = body["models"]["project_model"]
    for world in project["per_world"]["auc_roc"]:
        cells = [f"{project['per_world'][m][world]:.3f}" for m in METRICS]
        rows.append(f"{'  project, world ' + world:<30} " + " ".join(f"{c:>22}" for c in cells))
    rows.append(
        f"(over {len(project['per_world']['auc_roc'])} world(s); the project rows are compared "
        "with the book's best after model selection)"
    )
    return "\n".join(rows)
