"""Scoring logic: validated transactions or an uploaded table -> decisions and reasons.

Everything here works on whole batches with numpy (no per-row DataFrame, no per-row model
call); the HTTP layer only parses, validates once and serialises.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fraud_contract.features import columns_from_records, compute_features
from fraud_contract.schema import Transaction
from service.model import LoadedModel, Prediction

if TYPE_CHECKING:
    from service.json_input import TransactionColumns


@dataclass(frozen=True)
class Decisions:
    """Vectorised decisions for ``n`` rows."""

    probabilities: np.ndarray
    is_fraud: np.ndarray
    #: Index into ``band_names`` of each row's risk band.
    band_index: np.ndarray
    #: The model's risk band names, lowest first (an object array).
    band_names: np.ndarray

    @cached_property
    def bands(self) -> list[str]:
        """Each row's risk band name (built on first use: file scoring writes the index)."""
        return self.band_names[self.band_index].tolist()


@dataclass(frozen=True)
class StepTimes:
    """Seconds spent in each step of one model call."""

    preprocess: float
    predict: float
    postprocess: float


class Scorer:
    """Turns transactions into :class:`fraud_contract.api.ScoreResult`-shaped dicts."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        threshold: float | None,
        top_k: int,
        reasons: Literal["all", "flagged", "none"] = "all",
    ) -> None:
        self.model = model
        self.reasons = reasons
        self.model_tag = model.tag
        self.threshold = model.card.threshold if threshold is None else threshold
        self.top_k = min(top_k, len(model.feature_names))
        self.feature_names = model.feature_names
        self._band_lowers = np.array([band.lower for band in model.card.risk_bands])
        self._band_names = np.array([band.name for band in model.card.risk_bands], dtype=object)

    def decide(self, probabilities: np.ndarray) -> Decisions:
        """Threshold decision and risk band for each probability."""
        index = np.searchsorted(self._band_lowers, probabilities, side="right") - 1
        band_index = np.clip(index, 0, len(self._band_names) - 1)
        return Decisions(
            probabilities, probabilities >= self.threshold, band_index, self._band_names
        )

    def features(self, transactions: Sequence[Transaction]) -> np.ndarray:
        """The model matrix for already-validated transactions."""
        return compute_features(columns_from_records(transactions), self.feature_names)

    def score(
        self, transactions: Sequence[Transaction], explain: Sequence[bool] | None = None
    ) -> list[dict[str, Any]]:
        """Score validated transactions; one result dict per transaction, in order."""
        return self.score_timed(transactions, explain)[0]

    def score_timed(
        self, transactions: Sequence[Transaction], explain: Sequence[bool] | None = None
    ) -> tuple[list[dict[str, Any]], StepTimes]:
        """Score in one model call; also return how long each step took.

        Which results carry TreeSHAP reasons: those the ``reasons`` policy selects ("all",
        "flagged" = at or above the threshold, "none"), plus those whose ``explain`` flag is
        set (a caller asked for them). ``top_k == 0`` switches reasons off altogether.
        """
        started = time.perf_counter()
        if not transactions:
            return [], StepTimes(0.0, 0.0, 0.0)
        matrix = self.features(transactions)
        ids = [t.transaction_id for t in transactions]
        return self._score_matrix(ids, matrix, explain, started)

    def score_columns(
        self, batch: TransactionColumns, explain: Sequence[bool] | None = None
    ) -> tuple[list[dict[str, Any]], StepTimes]:
        """:meth:`score_timed` for a batch decoded into columns (:func:`decode_batch`).

        Same results in the same order (``transaction_id`` echoed), same reasons policy.
        """
        started = time.perf_counter()
        if not len(batch):
            return [], StepTimes(0.0, 0.0, 0.0)
        matrix = compute_features(batch.columns, self.feature_names)
        return self._score_matrix(batch.transaction_ids, matrix, explain, started)

    def _score_matrix(
        self,
        ids: Sequence[str | None],
        matrix: np.ndarray,
        explain: Sequence[bool] | None,
        started: float,
    ) -> tuple[list[dict[str, Any]], StepTimes]:
        featured = time.perf_counter()
        asked = np.asarray(explain, dtype=bool) if explain is not None else None
        if self.top_k == 0:
            prediction, explained = self.model.predict(matrix, explain=False), None
        elif self.reasons == "all":
            prediction, explained = self.model.predict(matrix, explain=True), None
        else:
            prediction, explained = self._explain_selected(matrix, asked)
        predicted = time.perf_counter()
        results = self.results(ids, matrix, prediction, explained)
        done = time.perf_counter()
        return results, StepTimes(featured - started, predicted - featured, done - predicted)

    def _explain_selected(
        self, matrix: np.ndarray, asked: np.ndarray | None
    ) -> tuple[Prediction, np.ndarray]:
        """Plain prediction for every row; TreeSHAP (the expensive part) only where needed."""
        plain = self.model.predict(matrix, explain=False)
        wanted = (
            plain.probabilities >= self.threshold
            if self.reasons == "flagged"
            else np.zeros(matrix.shape[0], dtype=bool)
        )
        if asked is not None:
            wanted |= asked
        rows = np.flatnonzero(wanted)
        if not rows.size:  # the common case: no reasons, no contribution matrix
            return plain, wanted
        contributions = np.zeros(matrix.shape, dtype=np.float32)
        contributions[rows] = self.model.predict(matrix[rows], explain=True).contributions
        return Prediction(plain.probabilities, contributions), wanted

    def results(
        self,
        transaction_ids: Sequence[str | None],
        matrix: np.ndarray,
        prediction: Prediction,
        explained: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Build result dicts (plain Python values, ready for orjson).

        ``explained`` marks the rows whose contributions are real (None: every row, when
        there are contributions); the others get no reasons.
        """
        decisions = self.decide(prediction.probabilities)
        probabilities = prediction.probabilities.tolist()
        flags = decisions.is_fraud.tolist()
        reasons = self._reasons(matrix, prediction.contributions, explained)
        return [
            {
                "transaction_id": transaction_ids[i],
                "fraud_probability": probabilities[i],
                "is_fraud": flags[i],
                "risk_band": decisions.bands[i],
                "threshold": self.threshold,
                "model_tag": self.model_tag,
                "reasons": reasons[i],
            }
            for i in range(len(probabilities))
        ]

    def _reasons(
        self, matrix: np.ndarray, contributions: np.ndarray | None, explained: np.ndarray | None
    ) -> list[list[dict[str, Any]]]:
        """Top-k features by absolute contribution, largest first, for the explained rows."""
        n_rows = matrix.shape[0]
        out: list[list[dict[str, Any]]] = [[] for _ in range(n_rows)]
        if contributions is None or self.top_k == 0:
            return out
        selected = np.arange(n_rows) if explained is None else np.flatnonzero(explained)
        if not selected.size:
            return out
        k = self.top_k
        rows = selected[:, None]
        order = np.argsort(-np.abs(contributions[selected]), axis=1, kind="stable")[:, :k]
        values = _significant(matrix[rows, order].astype(np.float64))
        picked = np.round(contributions[rows, order].astype(np.float64), 6).tolist()
        names = self.feature_names
        value_lists = values.tolist()
        missing = np.isnan(values).tolist()
        order_lists = order.tolist()
        for i, row in enumerate(selected.tolist()):
            out[row] = [
                {
                    "feature": names[order_lists[i][j]],
                    "value": None if missing[i][j] else value_lists[i][j],
                    "contribution": picked[i][j],
                }
                for j in range(k)
            ]
        return out


def _significant(values: np.ndarray, digits: int = 7) -> np.ndarray:
    """Round float32-derived values to the digits float32 holds (236.94, not 236.940002)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(values)))
        scale = np.where(np.isfinite(magnitude), 10.0 ** (digits - 1 - magnitude), 1.0)
        return np.where(values == 0, 0.0, np.round(values * scale) / scale)
