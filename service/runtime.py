"""What the routes need from a started worker, built once the model is loaded.

:func:`build_runtime` is the one place that turns settings and a loaded model into the
objects the front app (:mod:`service.app`) serves with; tests build one in-process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import orjson

from fraud_contract.api import ModelInfo
from fraud_contract.schema import Transaction
from service import bentoml_bridge
from service.decisions import DecisionRecorder
from service.enrichment import HistoryEnricher, annotate
from service.errors import ApiError, InvalidInput, Overloaded
from service.logs import IdHasher, request_id_var
from service.scoring import Scorer

if TYPE_CHECKING:
    from service.ledger import Ledger
    from service.metrics import ServiceMetrics
    from service.model import LoadedModel
    from service.settings import ServiceSettings

#: One queued single-score request: the transaction, whether reasons were asked for, and the
#: request's id (for the ledger).
ScoreJob = tuple[Transaction, bool, str | None]
ScoreOne = Callable[[Transaction, bool], Awaitable[dict[str, Any]]]


@dataclass
class Runtime:
    """The loaded model and everything the routes use, for one worker."""

    settings: ServiceSettings
    scorer: Scorer
    metrics: ServiceMetrics
    #: The ``GET /v1/model`` body, serialised once.
    model_info: bytes
    #: Score one transaction in the next adaptive batch (with reasons if asked).
    score_one: ScoreOne
    api_keys: tuple[bytes, ...]
    hasher: IdHasher
    #: Fills raw transactions' aggregates from the history store (None: history off).
    history: HistoryEnricher | None = None
    #: Records every decision in the ledger (None: no FRAUD_DATABASE_URL).
    ledger: DecisionRecorder | None = None


class AdaptiveScorer:
    """Single transactions -> BentoML's adaptive batcher -> one model call per batch.

    Each queued job is a ``(transaction, explain)`` pair; the whole batch is scored in a
    worker thread (one batch is in flight at a time, so one thread), so the event loop keeps
    parsing and shedding while XGBoost's C code runs without the GIL. Rows per model call
    are recorded as ``fraud_model_batch_size_rows{endpoint="single"}``.

    It also knows how long the oldest unanswered job has been waiting
    (:meth:`oldest_wait_s`): the admission rule sheds new single scores while that is over
    the queueing budget, so under overload the requests it does admit stay fast.
    """

    def __init__(
        self,
        scorer: Scorer,
        metrics: ServiceMetrics,
        settings: ServiceSettings,
        history: HistoryEnricher | None = None,
        ledger: DecisionRecorder | None = None,
    ) -> None:
        self.scorer = scorer
        self.metrics = metrics
        self.history = history
        self.ledger = ledger
        self.max_batch_size = settings.max_batch_size
        self.max_latency_ms = settings.max_latency_ms
        # Created on first use: BentoML's dispatcher binds the running event loop.
        self._submit: Callable[[ScoreJob], Awaitable[dict[str, Any] | ApiError]] | None = None
        #: Submit time of every unanswered job, oldest first (insertion order).
        self._waiting: dict[int, float] = {}
        self._next_job = 0

    def oldest_wait_s(self, now: float) -> float:
        """Seconds the oldest unanswered job has been in the batcher (0 when none)."""
        for submitted in self._waiting.values():
            return now - submitted
        return 0.0

    async def score_jobs(self, jobs: Sequence[ScoreJob]) -> list[dict[str, Any] | ApiError]:
        """Score one adaptive batch of jobs in one model call (a refused job gets its error)."""
        transactions = [job[0] for job in jobs]
        explain = [job[1] for job in jobs] if any(job[1] for job in jobs) else None
        request_ids = [job[2] for job in jobs]
        return await anyio.to_thread.run_sync(self._score, transactions, explain, request_ids)

    def _score(
        self,
        transactions: list[Transaction],
        explain: list[bool] | None,
        request_ids: list[str | None],
    ) -> list[dict[str, Any] | ApiError]:
        """In the worker thread: history (one round trip), one model call, the ledger.

        A transaction the store refuses (too late behind its card's or terminal's newest one)
        is answered with its 422; the others of the batch are scored and recorded as usual.
        """
        states = None
        refusals: dict[int, InvalidInput] = {}
        if self.history is not None:
            transactions, states = self.history.enrich("single", transactions, refusals=refusals)
        results, timings = self.scorer.score_timed(transactions, explain)
        if states is not None:
            annotate(results, transactions, states, explain)
        answered = results
        if refusals:
            keep = [i for i in range(len(results)) if i not in refusals]
            answered = [results[i] for i in keep]
            transactions = [transactions[i] for i in keep]
            request_ids = [request_ids[i] for i in keep]
            states = None if states is None else [states[i] for i in keep]
        if self.ledger is not None:
            self.ledger.record(answered, transactions, request_ids, states)
        self.metrics.observe_results("single", answered, timings)
        return [refusals.get(i, result) for i, result in enumerate(results)]

    async def __call__(self, transaction: Transaction, explain: bool = False) -> dict[str, Any]:
        """Score one transaction in the next adaptive batch (TreeSHAP reasons if ``explain``)."""
        if self._submit is None:
            self._submit = bentoml_bridge.adaptive_batcher(
                self.score_jobs,
                max_batch_size=self.max_batch_size,
                max_latency_ms=self.max_latency_ms,
                on_shed=_queue_full,
            )
        job = self._next_job
        self._next_job += 1
        self._waiting[job] = time.perf_counter()
        try:
            result = await self._submit((transaction, explain, request_id_var.get()))
        finally:
            del self._waiting[job]
        if isinstance(result, ApiError):
            raise result
        return result


def _queue_full() -> dict[str, Any]:
    raise Overloaded("The scoring queue is full; retry shortly.")


def model_info_body(model: LoadedModel, threshold: float) -> bytes:
    """The ``GET /v1/model`` body: tag, threshold, card metrics and the contract's schema."""
    card = model.card
    name, _, version = model.tag.partition(":")
    info = ModelInfo.model_validate(
        {
            "tag": model.tag,
            "name": name,
            "version": version,
            "trained_at": card.trained_at,
            "threshold": threshold,
            "model_threshold": card.threshold,
            "threshold_rule": card.threshold_rule,
            "risk_bands": card.risk_bands,
            "metrics": card.metrics,
            "scenario_recall": card.scenario_recall,
            "feature_names": card.feature_names,
            "dataset": card.dataset,
            "code_version": card.code_version,
            "schema": Transaction.model_json_schema(),
        }
    )
    return orjson.dumps(info.model_dump(mode="json", by_alias=True))


#: A realistic transaction scored once before readiness (features, contributions, reasons).
WARM_UP = {
    "timestamp": "2018-08-09T14:23:05",
    "customer_id": "warm-up",
    "terminal_id": "warm-up",
    "amount": 1.0,
}


def build_runtime(
    settings: ServiceSettings,
    model: LoadedModel,
    metrics: ServiceMetrics,
    *,
    score_one: ScoreOne | None = None,
    ledger: Ledger | None = None,
) -> Runtime:
    """Scorer, adaptive batcher, model info and keys for ``model`` under ``settings``.

    ``score_one`` replaces the adaptive batcher (tests that need no BentoML dispatcher);
    ``ledger`` (started by the caller) receives every decision that has a transaction id.
    The full request path runs once here, so the first real request pays no warm-up.
    """
    scorer = Scorer(
        model, threshold=settings.threshold, top_k=settings.reasons_top_k, reasons=settings.reasons
    )
    scorer.score([Transaction.model_validate(WARM_UP)], explain=[True])
    history = None
    if settings.history_url:
        from service.history import HistoryStore  # noqa: PLC0415  (only with history on)

        store = HistoryStore.from_url(
            settings.history_url,
            cluster=settings.history_cluster,
            timeout=settings.history_timeout_s,
            max_lateness=settings.history_max_lateness_s,
            refuse_late=settings.history_refuse_late,
        )
        history = HistoryEnricher(store, metrics, settings.history_max_future_s)
    hasher = settings.id_hasher()
    recorder = None
    if ledger is not None:
        recorder = DecisionRecorder(ledger, hasher)
    return Runtime(
        settings=settings,
        scorer=scorer,
        metrics=metrics,
        model_info=model_info_body(model, scorer.threshold),
        score_one=score_one or AdaptiveScorer(scorer, metrics, settings, history, recorder),
        api_keys=settings.accepted_api_keys(),
        hasher=hasher,
        history=history,
        ledger=recorder,
    )
