"""Labels into the history store: round trips, per-label results, the enricher's states."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest

from fraud_contract.schema import Transaction, example_transaction
from service.decisions import plain_amount
from service.enrichment import HistoryEnricher, history_labels
from service.history import HistoryUnavailableError, Label, LabelReport, scripts
from service.history.codec import Keys
from service.history.labels import record_labels
from service.ledger.model import LabelTarget

T0 = datetime(2018, 6, 1, 12, 0, 0)


class FakeRun:
    """Answers the scripts like a store holding one record per terminal key: plain cards."""

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def __call__(self, script: Any, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]) -> list:
        self.scripts.append("PLAIN" if script is scripts.PLAIN else "LABEL")
        return [[1 if "T-held" in key else 0 for key in keys] for keys, _ in calls]


def test_labels_that_carry_their_plain_flag_cost_one_round_trip() -> None:
    run = FakeRun()
    items = [Label("T-held", T0, True, "tx-1", plain=True), Label("T-gone", T0, False, "tx-2")]
    report = record_labels(run, Keys("ns"), items, cluster=False)
    assert run.scripts == ["LABEL"]
    assert report == LabelReport(labels=2, matched=1, found=(1, 0))


def test_a_fraud_label_without_its_flag_reads_the_card_first() -> None:
    run = FakeRun()
    record_labels(run, Keys("ns"), [Label("T-held", T0, True, "tx-1", "C1")], cluster=True)
    assert run.scripts == ["PLAIN", "LABEL"]


class FakeStore:
    def __init__(self, found: tuple[int, ...] | None) -> None:
        self.found = found
        self.labels: list[Label] = []

    def record_labels(self, labels: list[Label]) -> LabelReport:
        self.labels = labels
        if self.found is None:
            raise HistoryUnavailableError("down")
        return LabelReport(len(labels), sum(1 for f in self.found if f), self.found)


TARGETS = [
    LabelTarget("tx-1", "T1", T0, fraud=True, plain_amount=True),
    LabelTarget("tx-2", "T1", T0, fraud=True, plain_amount=None),
]


@pytest.mark.parametrize(
    ("found", "states"),
    [((1, 0), ["updated", "not_found"]), (None, ["unavailable", "unavailable"])],
)
def test_the_enricher_reports_each_labels_state(
    found: tuple[int, ...] | None, states: list[str]
) -> None:
    store = FakeStore(found)
    enricher = HistoryEnricher(store, metrics=None)  # type: ignore[arg-type]
    assert list(enricher.apply_labels(TARGETS).values()) == states
    assert enricher.apply_labels([]) == {}


def test_ledger_targets_become_store_labels_without_the_card() -> None:
    labels = history_labels(TARGETS)
    assert [(x.transaction_id, x.fraud, x.plain, x.customer_id) for x in labels] == [
        ("tx-1", True, True, None),
        ("tx-2", True, False, None),  # unknown counts as not plain
    ]


def test_plain_amount_follows_the_contract_rule_on_the_scored_reference() -> None:
    scored = Transaction.model_validate(example_transaction())
    ordinary = scored.model_copy(update={"amount": 20.0, "customer_avg_amount_ref": 10.0})
    high = scored.model_copy(update={"amount": 20.01, "customer_avg_amount_ref": 10.0})
    blank = scored.model_copy(update={"customer_avg_amount_ref": None})
    assert (plain_amount(ordinary), plain_amount(high), plain_amount(blank)) == (True, False, None)
