"""Label validation and classification (no database: the pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.errors import ApiError
from service.ledger.labels import classify, parse_labels
from service.ledger.model import Label

T0 = datetime(2018, 9, 1, tzinfo=UTC)


def lab(tx: str, value: str, hours: int = 0, source: str = "chargeback") -> Label:
    return Label(tx, value, T0 + timedelta(hours=hours), source)  # type: ignore[arg-type]


def test_each_label_sees_the_ones_before_it_in_the_same_call() -> None:
    statuses = classify(
        [
            lab("a", "fraud"),
            lab("a", "fraud"),
            lab("a", "genuine", 2),
            lab("a", "genuine", 3, "analyst"),
            lab("a", "fraud", 1, "analyst"),  # older than the latest (genuine): contradicts it
            lab("zz", "fraud"),
        ],
        known={"a"},
        history={},
    )
    assert statuses == [
        "new",
        "duplicate",
        "contradicting",
        "new",
        "contradicting",
        "unknown_transaction",
    ]


def test_existing_events_count_as_earlier() -> None:
    history = {"a": [("fraud", "chargeback", T0)]}
    assert classify([lab("a", "genuine", 1)], known={"a"}, history=history) == ["contradicting"]
    assert classify(
        [lab("a", "fraud")], known={"a"}, history={"a": [("fraud", "chargeback", T0)]}
    ) == ["duplicate"]


def test_json_labels_are_validated_with_named_fields() -> None:
    labels = parse_labels(
        [
            {
                "transaction_id": "a",
                "label": "fraud",
                "reported_at": "2018-09-01T00:00:00",
                "source": "x",
            }
        ]
    )
    assert labels[0].reported_at == T0
    with pytest.raises(ApiError) as caught:
        parse_labels(
            [
                {
                    "transaction_id": "a",
                    "label": "fraud",
                    "reported_at": "2018-09-01",
                    "source": "x",
                },
                {"transaction_id": "a", "label": "bad", "reported_at": "2018-09-01", "source": "x"},
                {"transaction_id": "a", "label": "fraud", "reported_at": "2018-09-01", "extra": 1},
            ]
        )
    assert caught.value.status == 422
    fields = {e["field"] for e in caught.value.errors}
    assert fields == {"labels.1.label", "labels.2.source", "labels.2.extra"}


def test_too_many_json_labels_is_a_413_naming_the_list() -> None:
    item = {"transaction_id": "a", "label": "fraud", "reported_at": "2018-09-01", "source": "x"}
    assert len(parse_labels([item] * 3, max_labels=3)) == 3
    with pytest.raises(ApiError) as caught:
        parse_labels([item] * 4, max_labels=3)
    assert caught.value.status == 413
    assert caught.value.errors[0]["field"] == "labels"
