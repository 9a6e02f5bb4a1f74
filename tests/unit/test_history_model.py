"""The history store's types, keys and scripts (no server needed)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from valkey.crc import key_slot

from fraud_contract.schema import AGGREGATE_FIELDS
from service.history import (
    AGGREGATE_NAMES,
    HistorySettings,
    HistoryStore,
    InvalidHistoryRowError,
    check_row,
    event_seconds,
    scripts,
)
from service.history.store import transaction_tag


def test_aggregates_map_one_to_one_onto_the_contract_fields() -> None:
    assert AGGREGATE_NAMES == AGGREGATE_FIELDS


def test_event_seconds_floor_fractions_and_ignore_the_offset() -> None:
    base = datetime(2018, 4, 1)
    assert event_seconds(base) == 1522540800
    assert event_seconds(base + timedelta(microseconds=999_999)) == 1522540800
    shifted = base.replace(tzinfo=timezone(timedelta(hours=5)))
    assert event_seconds(shifted) == 1522540800  # wall-clock time as written


@pytest.mark.parametrize("moment", [datetime(1969, 12, 31), datetime(2107, 1, 1)])
def test_event_seconds_reject_times_the_history_cannot_hold(moment: datetime) -> None:
    with pytest.raises(InvalidHistoryRowError) as info:
        event_seconds(moment)
    assert info.value.field == "timestamp"


def test_settings_derive_spans_and_ttls_from_the_windows() -> None:
    settings = HistorySettings(max_lateness=3600)
    assert settings.card_keep == 44 * 86_400 + 3600
    assert settings.terminal_keep == 37 * 86_400 + 3600
    assert settings.card_ttl_s == settings.card_keep
    assert HistorySettings(card_ttl=5).card_ttl_s == 5
    with pytest.raises(ValueError, match="max_lateness"):
        HistorySettings(max_lateness=15 * 86_400)


def test_each_entity_keys_share_one_cluster_slot_and_cards_differ_from_terminals() -> None:
    store = HistoryStore(client=None, settings=HistorySettings(namespace="ns"))
    card = store.card_keys("C00042")
    terminal = store.terminal_keys("C00042")
    assert card == ("ns:{c:C00042}:h", "ns:{c:C00042}:i")
    assert key_slot(card[0].encode()) == key_slot(card[1].encode())
    assert key_slot(terminal[0].encode()) == key_slot(terminal[1].encode())
    assert card[0] != terminal[0]


def test_tags_fit_the_record_bits() -> None:
    assert transaction_tag(None) == 0
    tags = {transaction_tag(f"TX{i}") for i in range(5000)}
    assert max(tags) < 2**scripts.TAG_BITS and len(tags) > 3000


def test_scripts_are_rendered_with_the_window_spans() -> None:
    for script in scripts.ALL_SCRIPTS:
        assert "{D" not in script.source and "{REF" not in script.source
        assert len(script.sha) == 40
    assert "local D1, D7, D30 = 86400, 604800, 2592000" in scripts.UPDATE.source
    assert "local DELAY = 604800" in scripts.UPDATE.source


def test_binary_layouts_have_the_documented_sizes() -> None:
    assert struct.calcsize(scripts.OP_FORMAT) == 17
    assert struct.calcsize("<IdH") == scripts.CARD_RECORD
    assert struct.calcsize("<IH") == scripts.TERMINAL_RECORD
    assert struct.calcsize(scripts.CARD_RESULT_FORMAT) == 61
    assert struct.calcsize(scripts.TERMINAL_RESULT_FORMAT) == 37


@dataclass(frozen=True)
class _Row:
    transaction_id: str | None
    timestamp: datetime
    customer_id: str
    terminal_id: str
    amount: float


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (_Row("x", datetime(1900, 1, 1), "C1", "T1", 1.0), "timestamp"),
        (_Row("x", datetime(2018, 1, 1), "C1", "T1", float("nan")), "amount"),
        (_Row("x", datetime(2018, 1, 1), "C1", "T1", -1.0), "amount"),
        (_Row("x", datetime(2018, 1, 1), "C1", "T1", float("inf")), "amount"),
    ],
)
def test_rows_the_history_cannot_hold_are_refused_before_the_store_is_touched(
    row: _Row, field: str
) -> None:
    store = HistoryStore(client=None, settings=HistorySettings())  # no server: never reached
    with pytest.raises(InvalidHistoryRowError) as info:
        check_row(row)
    assert info.value.field == field
    with pytest.raises(InvalidHistoryRowError):
        store.update_and_read([row])
