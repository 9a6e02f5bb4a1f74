"""Evaluation metrics of the handbook plus the operational ones (cost, recall at fixed FPR).

Card Precision@k is implemented exactly as the handbook defines it: per test day, one row
per card carrying the maximum score and the maximum label of its transactions that day; the
cards are ranked by score; the share of truly compromised cards among the top k is that day's
value; compromised cards found in the top k are removed from the later days; the result is
the mean over days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

#: Default alert cost model (documented in the README and the model card): reviewing one
#: alert costs an analyst's few minutes; a missed fraud loses the transaction amount.
REVIEW_COST: Final = 5.0


def card_precision_at_k(
    day: np.ndarray, card: np.ndarray, label: np.ndarray, score: np.ndarray, k: int = 100
) -> float:
    """Mean daily Card Precision@k with detected cards removed from later days (handbook)."""
    frame = pd.DataFrame({"day": day, "card": card, "label": label, "score": score})
    detected: set[object] = set()
    daily: list[float] = []
    for _, day_rows in frame.groupby("day", sort=True):
        rows = day_rows[~day_rows["card"].isin(detected)]
        per_card = rows.groupby("card", sort=False).agg(
            score=("score", "max"), label=("label", "max")
        )
        top = per_card.sort_values("score", ascending=False, kind="stable").head(k)
        found = top.index[top["label"] > 0]
        daily.append(len(found) / k)
        detected.update(found)
    return float(np.mean(daily)) if daily else float("nan")


def recall_at_fpr(label: np.ndarray, score: np.ndarray, max_fpr: float = 0.01) -> float:
    """Share of frauds caught when at most ``max_fpr`` of genuine transactions are flagged."""
    genuine = np.sort(score[label == 0])
    if genuine.size == 0 or not np.any(label == 1):
        return float("nan")
    # The smallest threshold whose false-positive share stays <= max_fpr.
    allowed = int(np.floor(max_fpr * genuine.size))
    cut = genuine[genuine.size - allowed - 1] if allowed < genuine.size else -np.inf
    return float(np.mean(score[label == 1] > cut))


@dataclass(frozen=True)
class CostModel:
    """Expected cost of an alerting policy: review cost per alert, amount lost per miss."""

    review_cost: float = REVIEW_COST

    def cost(self, label: np.ndarray, amount: np.ndarray, alert: np.ndarray) -> float:
        """Total cost: every alert is reviewed; a missed fraud loses its amount."""
        missed = (label == 1) & ~alert
        return float(self.review_cost * alert.sum() + amount[missed].sum())

    def best_threshold(
        self, label: np.ndarray, amount: np.ndarray, score: np.ndarray
    ) -> tuple[float, float]:
        """Threshold minimising the cost on a labelled period, and that cost (one pass, sorted)."""
        order = np.argsort(-score, kind="stable")
        s, y, a = score[order], label[order], amount[order]
        # Alerting on the top i rows: cost = review * i + fraud amount not in the top i.
        lost_if_missed = np.concatenate([[0.0], np.cumsum(a * (y == 1))])
        total_fraud = lost_if_missed[-1]
        i = np.arange(s.size + 1)
        cost = self.review_cost * i + (total_fraud - lost_if_missed)
        # Only cut between distinct scores (ties are alerted together).
        valid = np.concatenate([[True], s[1:] != s[:-1], [True]])
        best = int(np.argmin(np.where(valid, cost, np.inf)))
        threshold = 1.0 + 1e-9 if best == 0 else float(s[best - 1])
        return min(threshold, 1.0), float(cost[best])


def reliability_curve(
    label: np.ndarray, score: np.ndarray, n_bins: int = 10
) -> dict[str, list[float]]:
    """Observed fraud rate against mean predicted probability, in quantile bins of the score."""
    edges = np.unique(np.quantile(score, np.linspace(0, 1, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, score, side="right") - 1, 0, max(len(edges) - 2, 0))
    predicted, observed, counts = [], [], []
    for b in range(max(len(edges) - 1, 1)):
        mask = which == b
        if mask.any():
            predicted.append(float(score[mask].mean()))
            observed.append(float(label[mask].mean()))
            counts.append(float(mask.sum()))
    return {"mean_predicted": predicted, "observed_rate": observed, "count": counts}


def ranking_metrics(
    label: np.ndarray, score: np.ndarray, day: np.ndarray, card: np.ndarray
) -> dict[str, float]:
    """The handbook's three metrics: AUC ROC, average precision and CP@100."""
    return {
        "auc_roc": float(roc_auc_score(label, score)),
        "average_precision": float(average_precision_score(label, score)),
        "card_precision_at_100": card_precision_at_k(day, card, label, score, k=100),
    }


def full_metrics(  # noqa: PLR0917 (parallel arrays of one evaluation set)
    label: np.ndarray,
    score: np.ndarray,
    day: np.ndarray,
    card: np.ndarray,
    amount: np.ndarray,
    threshold: float,
    cost_model: CostModel | None = None,
) -> dict[str, float]:
    """Ranking metrics plus recall at 1% FPR, Brier score and the cost/alerts at a threshold."""
    cost_model = cost_model or CostModel()
    alert = score >= threshold
    frauds = max(int(label.sum()), 1)
    return {
        **ranking_metrics(label, score, day, card),
        "recall_at_1pct_fpr": recall_at_fpr(label, score, 0.01),
        "brier_score": float(brier_score_loss(label, score)),
        "expected_cost": cost_model.cost(label, amount, alert),
        "cost_without_model": float(amount[label == 1].sum()),
        "alerts": float(alert.sum()),
        "precision_at_threshold": float(label[alert].mean()) if alert.any() else 0.0,
        "recall_at_threshold": float(label[alert].sum() / frauds),
        "fraud_rate": float(label.mean()),
        "n_transactions": float(label.size),
    }
