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


@dataclass(frozen=True)
class ScoredRows:
    """One model call's results as columns: ids, decisions and each row's reasons."""

    transaction_ids: Sequence[str | None]
    decisions: Decisions
    #: Each row's reasons (``[]`` when it has none), plain Python values.
    reasons: list[list[dict[str, Any]]]

    def __len__(self) -> int:
        return len(self.transaction_ids)

    def results(self, threshold: float, model_tag: str) -> list[dict[str, Any]]:
        """One :class:`fraud_contract.api.ScoreResult`-shaped dict per row, in order."""
        ids, reasons = self.transaction_ids, self.reasons
        probabilities = self.decisions.probabilities.tolist()
        flags = self.decisions.is_fraud.tolist()
        bands = self.decisions.bands
        return [
            {
                "transaction_id": ids[i],
                "fraud_probability": probabilities[i],
                "is_fraud": flags[i],
                "risk_band": bands[i],
                "threshold": threshold,
                "model_tag": model_tag,
                "reasons": reasons[i],
            }
            for i in range(len(probabilities))
        ]


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
        scored, times = self.score_columns_rows(batch, explain)
        started = time.perf_counter()
        results = scored.results(self.threshold, self.model_tag)
        built = time.perf_counter() - started
        return results, StepTimes(times.preprocess, times.predict, times.postprocess + built)

    def score_columns_rows(
        self, batch: TransactionColumns, explain: Sequence[bool] | np.ndarray | None = None
    ) -> tuple[ScoredRows, StepTimes]:
        """:meth:`score_columns` as columns: decisions and reasons, no per-row dict.

        For callers that serialise the results themselves (:mod:`service.batch_response`).
        """
        started = time.perf_counter()
        matrix = compute_features(batch.columns, self.feature_names) if len(batch) else None
        featured = time.perf_counter()
        if matrix is None:
            empty = self.decide(np.empty(0))
            return ScoredRows([], empty, []), StepTimes(featured - started, 0.0, 0.0)
        prediction, explained = self._predict(matrix, explain)
        predicted = time.perf_counter()
        scored = ScoredRows(
            batch.transaction_ids,
            self.decide(prediction.probabilities),
            self._reasons(matrix, prediction.contributions, explained),
        )
        done = time.perf_counter()
        return scored, StepTimes(featured - started, predicted - featured, done - predicted)

    def _score_matrix(
        self,
        ids: Sequence[str | None],
        matrix: np.ndarray,
        explain: Sequence[bool] | None,
        started: float,
    ) -> tuple[list[dict[str, Any]], StepTimes]:
        featured = time.perf_counter()
        prediction, explained = self._predict(matrix, explain)
        predicted = time.perf_counter()
        results = self.results(ids, matrix, prediction, explained)
        done = time.perf_counter()
        return results, StepTimes(featured - started, predicted - featured, done - predicted)

    def _predict(
        self, matrix: np.ndarray, explain: Sequence[bool] | np.ndarray | None
    ) -> tuple[Prediction, np.ndarray | None]:
        """The model call under the reasons policy: (prediction, rows explained or None)."""
        asked = np.asarray(explain, dtype=bool) if explain is not None else None
        if self.top_k == 0:
            return self.model.predict(matrix, explain=False), None
        if self.reasons == "all":
            return self.model.predict(matrix, explain=True), None
        return self._explain_selected(matrix, asked)

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
        reasons = self._reasons(matrix, prediction.contributions, explained)
        return ScoredRows(transaction_ids, decisions, reasons).results(
            self.threshold, self.model_tag
        )

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
