"""Transactions later than max_lateness: what the enricher answers for each endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from fraud_contract.schema import Transaction, example_transaction
from service.enrichment import HistoryEnricher
from service.errors import InvalidInput
from service.history import Aggregates, HistorySettings, HistoryStore, LateTransactionError

T0 = datetime(2018, 8, 9, 10, 0, 0)
AGGREGATES = Aggregates(1, 1, 1, 10.0, 10.0, 10.0, 0.0, 10.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


class Metrics:
    def observe_history_step(self, endpoint: str, seconds: float) -> None:
        pass

    def observe_history(self, endpoint: str, states: Sequence[str]) -> None:
        self.states = list(states)


class LateStore:
    """Refuses the rows at the given indices as the store does (the others recorded)."""

    def __init__(self, late: set[int]) -> None:
        self.late = late
        self.strict: bool | None = None

    def update_and_read(
        self, rows: Sequence[Any], *, record: bool = True, strict: bool = False
    ) -> list[Aggregates | None]:
        self.strict = strict
        refused = dict.fromkeys(self.late, "card")
        if strict:
            refused.update({i: "batch" for i in range(len(rows)) if i not in self.late})
        results = [None if i in refused else AGGREGATES for i in range(len(rows))]
        raise LateTransactionError(refused, results, recorded=not strict, max_lateness=86_400)


def _rows(n: int) -> list[Transaction]:
    return [
        Transaction.model_validate(
            {
                "transaction_id": f"t{i}",
                "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
                "customer_id": "C1",
                "terminal_id": "T1",
                "amount": 10.0,
            }
        )
        for i in range(n)
    ]


def _enricher(store: LateStore) -> HistoryEnricher:
    return HistoryEnricher(store, Metrics())  # type: ignore[arg-type]


def test_a_batch_with_a_late_row_is_a_422_naming_each_late_row() -> None:
    store = LateStore({1, 3})
    with pytest.raises(InvalidInput) as info:
        _enricher(store).enrich("batch", _rows(4))
    assert store.strict is True  # all or nothing: the store recorded none of the batch
    assert [e["field"] for e in info.value.errors] == [
        "transactions.1.timestamp",
        "transactions.3.timestamp",
    ]
    assert "behind the newest transaction of its card" in info.value.errors[0]["reason"]
    assert info.value.status == 422


def test_a_single_late_transaction_is_a_422_naming_timestamp() -> None:
    with pytest.raises(InvalidInput) as info:
        _enricher(LateStore({0})).enrich("single", _rows(1))
    assert [e["field"] for e in info.value.errors] == ["timestamp"]


def test_late_singles_among_others_go_to_refusals_or_degrade() -> None:
    refusals: dict[int, InvalidInput] = {}
    enricher = _enricher(LateStore({1}))
    rows, states = enricher.enrich("single", _rows(3), refusals=refusals)
    assert list(refusals) == [1] and refusals[1].errors[0]["field"] == "timestamp"
    assert states == ["used", "unavailable", "used"]
    assert rows[0].customer_nb_tx_1d == 1 and rows[1].customer_nb_tx_1d is None
    # Without a refusals dict the late one is scored without history.
    _, states = enricher.enrich("single", _rows(3))
    assert states == ["used", "unavailable", "used"]


def test_late_rows_are_refused_unless_switched_off() -> None:
    assert HistorySettings().refuse_late is True
    off = HistoryStore(client=None, settings=HistorySettings(refuse_late=False))
    on = HistoryStore(client=None, settings=HistorySettings(refuse_late=True, max_lateness=60))
    # Script arguments after the six spans and TTLs: max_lateness (-1: off), paired ops.
    assert off._static_args[6:] == ["-1", "1"]
    assert on._static_args[6:] == ["60", "1"]
    cluster = HistoryStore(client=None, settings=HistorySettings(refuse_late=True, cluster=True))
    assert cluster._static_args[7] == "0"


def test_a_future_check_still_comes_first() -> None:
    future = Transaction.model_validate(example_transaction(timestamp="2100-01-01T00:00:00"))
    with pytest.raises(InvalidInput) as info:
        _enricher(LateStore(set())).check([future])
    assert "in the future" in info.value.errors[0]["reason"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_adaptive_batcher_answers_a_late_single_with_its_422_and_the_rest_as_usual(
    bentoml_home: Any,
) -> None:
    """One late request in an adaptive batch: its caller gets the 422, nothing of it is kept."""
    from service.runtime import AdaptiveScorer  # noqa: PLC0415
    from service.scoring import Scorer  # noqa: PLC0415
    from service.settings import ServiceSettings  # noqa: PLC0415
    from testkit.api import load_tiny_model  # noqa: PLC0415

    class Recorder:
        def record(self, results: Any, transactions: Any, request_ids: Any, states: Any) -> None:
            self.ids = [r["transaction_id"] for r in results]
            self.states = list(states)

    class Counting:
        def observe_results(self, endpoint: str, results: Any, timings: Any) -> None:
            self.rows = len(results)

    scorer = Scorer(load_tiny_model(bentoml_home), threshold=0.5, top_k=3)
    recorder, metrics = Recorder(), Counting()
    batcher = AdaptiveScorer(
        scorer,
        metrics,  # type: ignore[arg-type]
        ServiceSettings(dev_mode=True),
        _enricher(LateStore({1})),
        recorder,  # type: ignore[arg-type]
    )
    answers = await batcher.score_jobs([(row, False, f"r{i}") for i, row in enumerate(_rows(3))])
    assert isinstance(answers[1], InvalidInput)
    assert answers[1].errors[0]["field"] == "timestamp"
    assert [a["transaction_id"] for a in (answers[0], answers[2])] == ["t0", "t2"]  # type: ignore[index]
    assert recorder.ids == ["t0", "t2"] and recorder.states == ["used", "used"]
    assert metrics.rows == 2
