"""A scored file's rows reach the ledger as the same decisions the JSON routes record.

The same transactions go through both paths of :class:`service.decisions.DecisionRecorder`:
``record`` (one ``Transaction`` per row, as ``/v1/score`` and ``/v1/score/batch``) and
``record_columns`` (the checked columns of ``/v1/score/file``). Every field but the time of
recording must be equal; rows without a transaction id are scored and not recorded.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any

import numpy as np
import pytest

from fraud_contract.schema import Transaction, example_transaction
from service.decisions import DecisionRecorder
from service.ledger.model import Decision
from service.logs import IdHasher
from service.scoring import Scorer
from service.tables import score_table
from testkit.api import load_tiny_model


class CapturingLedger:
    """Stands in for :class:`service.ledger.Ledger`: keeps what ``record`` receives."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    def record(self, decisions: list[Decision]) -> None:
        self.decisions.extend(decisions)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    return Scorer(load_tiny_model(tmp_path_factory.mktemp("bentoml")), threshold=None, top_k=0)


def transactions() -> list[dict[str, Any]]:
    """Rows with and without aggregates, a reference amount, a large amount, one without id."""
    return [
        example_transaction(transaction_id="F-0", customer_id="C-1", amount=12.5),
        example_transaction(
            transaction_id="F-1",
            customer_id="C-1",
            amount=950.0,
            customer_nb_tx_1d=3,
            customer_avg_amount_ref=40.0,
            terminal_risk_7d=0.25,
        ),
        example_transaction(
            transaction_id="F-2",
            customer_id="C-2",
            terminal_id="T-9",
            amount=30.25,
            timestamp="2018-08-10T23:59:59",
            customer_avg_amount_ref=20.0,
        ),
        example_transaction(transaction_id=None, customer_id="C-3"),
    ]


def as_csv(rows: list[dict[str, Any]]) -> bytes:
    names = sorted({name for row in rows for name in row})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=names)
    writer.writeheader()
    for row in rows:
        writer.writerow({name: "" if row.get(name) is None else row[name] for name in names})
    return out.getvalue().encode()


def comparable(decision: Decision) -> dict[str, Any]:
    fields = dataclasses.asdict(decision)
    fields.pop("recorded_at")
    fields["probability"] = pytest.approx(fields["probability"], abs=1e-12)
    return fields


def recorded_file(
    scorer: Scorer,
    rows: list[dict[str, Any]],
    hasher: IdHasher,
    request_id: str | None,
    history_states: np.ndarray | None = None,
) -> list[Decision]:
    """Score ``rows`` as an uploaded CSV and return what ``record_columns`` spools of it."""
    scored = score_table(
        as_csv(rows),
        filename="day.csv",
        content_type="text/csv",
        scorer=scorer,
        max_rows=100,
        with_columns=True,
    )
    assert scored.columns is not None
    ledger = CapturingLedger()
    DecisionRecorder(ledger, hasher).record_columns(  # type: ignore[arg-type]
        scored.columns,
        scored.decisions,
        threshold=scorer.threshold,
        model_tag=scorer.model_tag,
        request_id=request_id,
        history_states=history_states,
    )
    return ledger.decisions


def test_file_rows_are_recorded_as_the_json_routes_record_them(scorer: Scorer) -> None:
    rows = transactions()
    hasher = IdHasher(b"k" * 32, "k1")
    from_json = CapturingLedger()
    parsed = [Transaction.model_validate(row) for row in rows]
    results, _ = scorer.score_timed(parsed, None)
    for result in results:
        result["reasons"] = None  # files compute no reasons
    DecisionRecorder(from_json, hasher).record(  # type: ignore[arg-type]
        results, parsed, ["req-1"] * len(parsed), None
    )
    from_file = recorded_file(scorer, rows, hasher, request_id="req-1")
    assert [d.transaction_id for d in from_file] == ["F-0", "F-1", "F-2"]
    assert [comparable(d) for d in from_file] == [comparable(d) for d in from_json.decisions]
    f1 = from_file[1]
    assert f1.aggregates is not None and f1.aggregates["customer_nb_tx_1d"] == 3
    assert isinstance(f1.aggregates["customer_nb_tx_1d"], int)
    assert f1.plain_amount is False and from_file[2].plain_amount is True
    assert from_file[0].plain_amount is None
    assert f1.card_hash == hasher("C-1") and "C-1" not in f1.card_hash


def test_history_states_say_whether_history_was_used(scorer: Scorer) -> None:
    decisions = recorded_file(
        scorer,
        transactions()[:2],
        IdHasher(b"k" * 32, "k1"),
        request_id=None,
        history_states=np.array(["used", "unavailable"], dtype=object),
    )
    assert [d.history_used for d in decisions] == [True, False]


def test_without_the_ledger_the_columns_are_not_kept(scorer: Scorer) -> None:
    scored = score_table(
        as_csv(transactions()),
        filename="day.csv",
        content_type="text/csv",
        scorer=scorer,
        max_rows=100,
    )
    assert scored.columns is None and scored.rows == 4
