"""File scoring with the history store: what a file's rows get from it (a fake store)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from fraud_contract.schema import AGGREGATE_FIELDS
from service.errors import ApiError
from service.file_history import read_history
from service.history import Aggregates
from service.tables import model_columns

STORED = Aggregates(*[7] * len(AGGREGATE_FIELDS))  # type: ignore[arg-type]  # ints for floats


class Store:
    """Answers every row with ``STORED`` except the cards in ``down``; remembers the calls."""

    def __init__(self, down: frozenset[str] = frozenset()) -> None:
        self.down = down
        self.calls: list[tuple[list[Any], bool]] = []

    def update_and_read(self, rows: Sequence[Any], *, record: bool = True) -> list[Any]:
        self.calls.append((list(rows), record))
        return [None if row.customer_id in self.down else STORED for row in rows]


def _columns(**extra: list[Any]) -> dict[str, np.ndarray]:
    table = pa.table(
        {
            "transaction_id": ["t1", None, "t3"],
            "timestamp": ["2018-08-09T10:00:00", "2018-08-09T10:01:00", "2018-08-09T10:02:00"],
            "customer_id": [" C1 ", "C2", "C3"],
            "terminal_id": ["T1", "T2", "T3"],
            "amount": ["10", "20", "30"],
            **extra,
        }
    )
    return model_columns(table, max_rows=10, ids=True)


def test_missing_aggregates_come_from_the_store_and_sent_ones_win() -> None:
    columns = _columns(customer_nb_tx_1d=["", "99", ""])
    store = Store(down=frozenset({"C3"}))
    states = read_history(store, columns)  # type: ignore[arg-type]
    assert list(states) == ["used", "used", "unavailable"]
    assert columns["customer_nb_tx_1d"].tolist()[:2] == [7.0, 99.0]
    assert np.isnan(columns["customer_nb_tx_1d"][2])  # store down for that row: unknown
    assert columns["terminal_risk_7d"].tolist()[:2] == [7.0, 7.0]
    rows, record = store.calls[0]
    assert record is False  # a file never writes to the history
    assert [r.customer_id for r in rows] == ["C1", "C2", "C3"]  # trimmed as the contract reads
    assert [r.transaction_id for r in rows] == ["t1", None, "t3"]
    assert rows[0].timestamp.isoformat() == "2018-08-09T10:00:00"


def test_a_time_the_store_cannot_hold_is_a_422_naming_the_row() -> None:
    table = pa.table(
        {
            "timestamp": ["2018-08-09T10:00:00", "1969-12-31T23:59:59"],
            "customer_id": ["C1", "C2"],
            "terminal_id": ["T1", "T2"],
            "amount": ["1", "2"],
        }
    )
    with pytest.raises(ApiError) as info:
        read_history(Store(), model_columns(table, max_rows=10, ids=True))  # type: ignore[arg-type]
    assert info.value.status == 422
    assert [e["field"] for e in info.value.errors] == ["rows.1.timestamp"]


def test_without_ids_the_columns_are_what_the_model_reads() -> None:
    table = pa.table(
        {"timestamp": ["2018-08-09"], "customer_id": ["C1"], "terminal_id": ["T1"], "amount": [1]}
    )
    assert "customer_id" not in model_columns(table, max_rows=10)
    assert model_columns(table, max_rows=10, ids=True)["transaction_id"].tolist() == [None]
