"""The one definition of the history windows (fraud_contract.windows) and its offline use."""

from __future__ import annotations

import numpy as np
import pytest

from fraud_contract import windows as w
from training import aggregates

DAY = w.SECONDS_PER_DAY


def test_card_windows_end_at_and_include_the_transaction() -> None:
    window = w.customer_window(7)
    assert window.contains(0) and window.contains(7 * DAY - 1)
    assert not window.contains(7 * DAY)  # (t - 7 days, t]: exactly 7 days old is out
    ages = np.array([0, 7 * DAY - 1, 7 * DAY])
    assert window.contains(ages).tolist() == [True, True, False]


def test_terminal_windows_are_delayed_by_the_label_delay() -> None:
    window = w.terminal_window(1)
    assert not window.contains(7 * DAY - 1)  # too recent: its label is not known yet
    assert window.contains(7 * DAY) and window.contains(8 * DAY - 1)
    assert not window.contains(8 * DAY)


def test_reference_window_is_the_30_days_ending_14_days_before() -> None:
    assert w.REFERENCE_WINDOW.contains(14 * DAY) and w.REFERENCE_WINDOW.contains(44 * DAY - 1)
    assert not w.REFERENCE_WINDOW.contains(14 * DAY - 1)
    assert not w.REFERENCE_WINDOW.contains(44 * DAY)


def test_history_spans_cover_every_window() -> None:
    assert w.CARD_HISTORY_SECONDS == 44 * DAY
    assert w.TERMINAL_HISTORY_SECONDS == 37 * DAY


def test_known_means_older_than_the_label_delay() -> None:
    assert not w.is_known(7 * DAY - 1)
    assert w.is_known(7 * DAY)


def test_high_and_plain_amount_rules() -> None:
    assert w.is_high(30.01, 10.0) and not w.is_high(30.0, 10.0)
    assert w.is_plain(20.0, 10.0) and not w.is_plain(20.01, 10.0)
    got = w.is_high(np.array([29.0, 31.0]), np.array([10.0, 10.0]))
    assert got.tolist() == [False, True]


@pytest.mark.parametrize(
    ("values", "expected_std"),
    [([5.0], 0.0), ([0.1, 0.1, 0.1], 0.0), ([1.0, 3.0], 1.0)],
)
def test_population_variance_reports_float_noise_as_zero(
    values: list[float], expected_std: float
) -> None:
    a = np.array(values)
    mean, var = w.population_variance(float(a.sum()), float((a * a).sum()), float(a.size))
    assert mean == pytest.approx(a.mean())
    assert np.sqrt(var) == pytest.approx(expected_std)
    _, var_vec = w.population_variance(
        np.array([a.sum()]), np.array([(a * a).sum()]), np.array([float(a.size)])
    )
    assert np.sqrt(var_vec[0]) == pytest.approx(expected_std)


def test_offline_aggregates_take_their_constants_from_the_shared_definition() -> None:
    assert aggregates.LABEL_DELAY_DAYS is w.LABEL_DELAY_DAYS
    assert aggregates.CUSTOMER_WINDOWS is w.CUSTOMER_WINDOWS
    assert aggregates.PLAIN_AMOUNT_FACTOR is w.PLAIN_AMOUNT_FACTOR


def test_offline_windows_follow_the_window_edges() -> None:
    # One card: rows exactly 1 day apart; the 1-day window holds only the row itself.
    card = np.zeros(3, dtype=np.int64)
    seconds = np.array([0, DAY, 2 * DAY])
    out = aggregates.customer_aggregates(card, seconds, np.array([1.0, 2.0, 4.0]))
    assert out["customer_nb_tx_1d"].tolist() == [1, 1, 1]
    assert out["customer_nb_tx_7d"].tolist() == [1, 2, 3]
