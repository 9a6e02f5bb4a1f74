"""Evaluation report of a trained model: JSON (machine-readable), Markdown summary, PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl

mpl.use("Agg")  # headless: files only
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from training.evaluation import reliability_curve
from training.simulator import SCENARIO_NAMES
from training.transactions_file import SCENARIO_COLUMN

if TYPE_CHECKING:
    from training.train import TrainingResult

PLOTS = ("pr_curve", "roc_curve", "reliability", "feature_importance", "score_by_scenario")


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_pr(label: np.ndarray, score: np.ndarray, threshold: float, path: Path) -> None:
    precision, recall, cuts = precision_recall_curve(label, score)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision, lw=1.5)
    at = np.searchsorted(cuts, threshold)
    if at < len(cuts):
        ax.scatter([recall[at]], [precision[at]], color="red", zorder=3, label="threshold")
        ax.legend()
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title="Precision-recall (test)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    _save(fig, path)


def _plot_roc(label: np.ndarray, score: np.ndarray, path: Path) -> None:
    fpr, tpr, _ = roc_curve(label, score)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fpr, tpr, lw=1.5)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.axvline(0.01, color="red", lw=0.8, ls=":", label="1% FPR")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (test)")
    ax.legend()
    _save(fig, path)


def _plot_reliability(curve: dict[str, list[float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    ax.plot(curve["mean_predicted"], curve["observed_rate"], marker="o", label="model")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed fraud rate",
        title="Reliability (test, quantile bins)",
        xscale="symlog",
        yscale="symlog",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend()
    _save(fig, path)


def _plot_importance(importance: dict[str, float], path: Path) -> None:
    names = sorted(importance, key=importance.__getitem__)
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(names) + 1.2))
    ax.barh(names, [importance[n] for n in names])
    ax.set(xlabel="total gain", title="Feature importance")
    _save(fig, path)


def _plot_scores(scenario: np.ndarray, score: np.ndarray, threshold: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.logspace(-5, 0, 60).tolist()
    for code, name in SCENARIO_NAMES.items():
        mask = scenario == code
        if mask.any():
            # Share of the scenario's rows per bin (density on log bins would hide the tail).
            ax.hist(
                np.clip(score[mask], 1e-5, 1),
                bins=bins,
                weights=np.full(int(mask.sum()), 1.0 / mask.sum()),
                histtype="step",
                lw=1.5,
                label=f"{name} ({mask.sum():,})",
            )
    ax.axvline(threshold, color="red", ls=":", label="threshold")
    ax.set(
        xscale="log",
        xlabel="fraud probability",
        ylabel="share of the scenario's transactions",
        title="Score distribution by scenario (test)",
    )
    ax.legend(fontsize=8)
    _save(fig, path)


def write_report(result: TrainingResult, out_dir: Path, title: str) -> dict[str, Any]:
    """Write ``evaluation.json``, ``evaluation.md`` and the PNG plots; return the JSON body."""
    out_dir.mkdir(parents=True, exist_ok=True)
    card = result.card
    label = result.test["is_fraud"].to_numpy()
    score = result.test_score
    curve = reliability_curve(label, score, n_bins=10)
    gain = result.model.booster.get_score(importance_type="total_gain")
    importance: dict[str, float] = {}
    for name in card.feature_names:
        value = gain.get(name, 0.0)
        importance[name] = float(value if isinstance(value, float | int) else sum(value))

    _plot_pr(label, score, card.threshold, out_dir / "pr_curve.png")
    _plot_roc(label, score, out_dir / "roc_curve.png")
    _plot_reliability(curve, out_dir / "reliability.png")
    _plot_importance(importance, out_dir / "feature_importance.png")
    plots = [name for name in PLOTS if name != "score_by_scenario"]
    if SCENARIO_COLUMN in result.test.columns:  # a user's file may have no scenario column
        scenario = result.test[SCENARIO_COLUMN].to_numpy()
        _plot_scores(scenario, score, card.threshold, out_dir / "score_by_scenario.png")
        plots.append("score_by_scenario")

    body = {
        "title": title,
        "metrics": card.metrics,
        "threshold": card.threshold,
        "threshold_rule": card.threshold_rule,
        "risk_bands": [band.model_dump() for band in card.risk_bands],
        "scenario_recall": card.scenario_recall,
        "reliability": curve,
        "feature_importance_total_gain": importance,
        "dataset": card.dataset,
        "code_version": card.code_version,
        "trained_at": card.trained_at,
        "plots": {name: f"{name}.png" for name in plots},
    }
    (out_dir / "evaluation.json").write_text(json.dumps(body, indent=2) + "\n")
    (out_dir / "evaluation.md").write_text(_markdown(body))
    return body


def _data_line(source: dict[str, Any]) -> str:
    """Which data the model was trained and measured on, in one sentence."""
    if not source:
        return "Data: not recorded."
    period = source.get("period", {})
    what = (
        f"file `{source.get('path')}` (SHA-256 {source.get('sha256')})"
        if source.get("kind") == "file"
        else f"simulator, preset {source.get('preset')}, seed "
        f"{(source.get('simulator') or {}).get('seed')}"
    )
    return (
        f"Data: {what}: {source.get('rows', 0):,} transactions, {source.get('frauds', 0):,} "
        f"frauds, {period.get('first', '?')} .. {period.get('last', '?')}."
    )


def _markdown(body: dict[str, Any]) -> str:
    m = body["metrics"]
    periods = body["dataset"].get("periods", {})
    lines = [
        f"# {body['title']}",
        "",
        f"Test period {periods.get('test', {}).get('start', '?')} .. "
        f"{periods.get('test', {}).get('end_exclusive', '?')} (exclusive), "
        f"{int(m['n_transactions']):,} transactions after the handbook's cleaning, "
        f"fraud rate {m['fraud_rate']:.2%}.",
        "",
        _data_line(body["dataset"].get("source", {})),
        "",
        "| metric | value |",
        "|---|---|",
        f"| AUC ROC | {m['auc_roc']:.3f} |",
        f"| Average precision | {m['average_precision']:.3f} |",
        f"| Card Precision@100 | {m['card_precision_at_100']:.3f} |",
        f"| Recall at 1% FPR | {m['recall_at_1pct_fpr']:.3f} |",
        f"| Brier score | {m['brier_score']:.5f} |",
        f"| Threshold | {body['threshold']:.4f} |",
        f"| Alerts / precision / recall at threshold | {int(m['alerts']):,} / "
        f"{m['precision_at_threshold']:.3f} / {m['recall_at_threshold']:.3f} |",
        f"| Expected cost at threshold (without model) | {m['expected_cost']:,.0f} "
        f"({m['cost_without_model']:,.0f}) |",
        "",
        f"Threshold rule: {body['threshold_rule']}.",
        "",
        (
            "Recall at the threshold by fraud scenario: "
            + ", ".join(f"{k} {v:.2f}" for k, v in body["scenario_recall"].items())
            + "."
        )
        if body["scenario_recall"]
        else "No fraud scenario column in the data: no recall by scenario.",
        "",
        "Plots: " + ", ".join(f"[{name}]({file})" for name, file in body["plots"].items()) + ".",
        "",
    ]
    return "\n".join(lines)
