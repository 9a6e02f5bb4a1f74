"""Offline behavioural aggregates: fills every aggregate field of the transaction contract.

This is the "history store" of the simulated card processor. Serving never recomputes these;
callers send them with each transaction (see :mod:`fraud_contract.schema`).

* Customer windows of n days end at and include the transaction: rows of the same card with
  time in ``(t - n days, t]`` up to and including the row itself (as a time-indexed rolling
  window does).
* Terminal windows are delayed by ``delay_days`` because fraud labels arrive a week late: the
  n-day window holds the terminal's rows with time in ``(t - delay - n days, t - delay]``;
  risk is the fraud share there, 0 when the window is empty (the handbook's convention).
* The terminal's fraud run uses the same labelled rows (time <= t - delay): the frauds after
  the terminal's last labelled genuine row, how many of them were ordinary amounts for their
  card, and how old the run is. A compromise makes *every* transaction of a terminal fraud
  for 28 days, so a long, recent run of ordinary-amount frauds means "still compromised",
  where the delayed windows mix it with genuine rows from before the compromise.

All windows are computed with one sort and binary searches over a composite
``(entity, time)`` key, so 1.75M rows take a few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fraud_contract.schema import AGGREGATE_FIELDS, is_whole_number
from fraud_contract.windows import (
    CUSTOMER_STD_WINDOWS,
    CUSTOMER_WINDOWS,
    HIGH_AMOUNT_FACTOR,
    HIGH_AMOUNT_WINDOWS,
    LABEL_DELAY_DAYS,
    PLAIN_AMOUNT_FACTOR,
    REFERENCE_DAYS,
    REFERENCE_FALLBACK_DAYS,
    REFERENCE_LAG_DAYS,
    SECONDS_PER_DAY,
    TERMINAL_WINDOWS,
    Window,
    customer_window,
    is_high,
    is_plain,
    label_delay_seconds,
    population_variance,
    terminal_window,
)
from training.simulator import entity_index

#: Window spans, factors and the label delay: defined once, in :mod:`fraud_contract.windows`
#: (the online history store uses the same definitions).
__all__ = [
    "CUSTOMER_WINDOWS",
    "HIGH_AMOUNT_FACTOR",
    "HIGH_AMOUNT_WINDOWS",
    "LABEL_DELAY_DAYS",
    "PLAIN_AMOUNT_FACTOR",
    "REFERENCE_DAYS",
    "REFERENCE_LAG_DAYS",
    "TERMINAL_WINDOWS",
    "add_aggregates",
    "customer_aggregates",
    "customer_reference_aggregates",
    "terminal_aggregates",
    "terminal_fraud_run",
]


def _sorted_keys(entity: np.ndarray, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable order by (entity, time) and the composite key in that order.

    The key gives each entity its own time line, far enough from the next one's that no
    window reaches across entities.
    """
    span = int(seconds.max() - seconds.min()) + 400 * SECONDS_PER_DAY if seconds.size else 1
    key = entity * span + (seconds - (seconds.min() if seconds.size else 0))
    order = np.argsort(key, kind="stable")
    return order, key[order]


def _window_bound(key: np.ndarray, window: Window, edge: str) -> np.ndarray:
    """For each sorted row, the index bounding ``window`` on one side (``edge`` "start"/"end").

    ``searchsorted(..., side="right")`` on ``key - offset`` finds the first row with time
    ``> t - offset``: the window's exclusive start, or one past its inclusive end.
    """
    offset = window.start if edge == "start" else window.end
    return np.searchsorted(key, key - offset, side="right")


def _window_sum(cumsum: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sum of the sorted values in ``[lo, hi)`` from a cumsum with a leading 0."""
    return cumsum[hi] - cumsum[lo]


def customer_aggregates(
    customer: np.ndarray,
    seconds: np.ndarray,
    amount: np.ndarray,
    windows: Sequence[int] = CUSTOMER_WINDOWS,
    std_windows: Sequence[int] = CUSTOMER_STD_WINDOWS,
) -> dict[str, np.ndarray]:
    """Per-transaction card windows: count, mean amount and (some windows) std of amount."""
    order, key = _sorted_keys(customer, seconds)
    n = key.shape[0]
    a = amount[order].astype(np.float64)
    ent = customer[order]
    # Cumulative sums restart at each card, so they stay small and the window differences
    # keep full precision (a global cumsum over 1.75M rows would leave ~1e-3 noise in std).
    group_start = np.searchsorted(ent, ent, side="left")
    cs1 = _grouped_prefix(a, ent)
    cs2 = _grouped_prefix(a * a, ent)
    hi = np.arange(1, n + 1)  # inclusive of the row itself
    out: dict[str, np.ndarray] = {}
    for days in windows:
        lo = _window_bound(key, customer_window(days), "start")
        count = (hi - lo).astype(np.float64)
        total = _grouped_window_sum(cs1, lo, hi, group_start)
        mean = total / count
        out[f"customer_nb_tx_{days}d"] = _unsort(count, order)
        out[f"customer_avg_amount_{days}d"] = _unsort(mean, order)
        if days in std_windows:
            # Population std; float rounding can leave tiny non-zero variances.
            _, var = population_variance(
                total, _grouped_window_sum(cs2, lo, hi, group_start), count
            )
            out[f"customer_std_amount_{days}d"] = _unsort(np.sqrt(var), order)
    return out


def customer_reference_aggregates(
    customer: np.ndarray,
    seconds: np.ndarray,
    amount: np.ndarray,
    *,
    lag_days: int = REFERENCE_LAG_DAYS,
    reference_days: int = REFERENCE_DAYS,
    high_windows: Sequence[int] = HIGH_AMOUNT_WINDOWS,
) -> dict[str, np.ndarray]:
    """The card's lagged reference mean and its recent count of unusually high amounts.

    * ``customer_avg_amount_ref``: mean amount over ``(t - lag - reference, t - lag]``, or
      the 30-day mean including the row when the card has no transaction there yet (a new
      card: every record stays a complete contract record);
    * ``customer_nb_high_amount_{n}d``: the card's transactions in ``(t - n days, t]``
      (this one included) whose amount exceeded ``HIGH_AMOUNT_FACTOR`` times the reference
      mean valid at *their* time.
    """
    order, key = _sorted_keys(customer, seconds)
    n = key.shape[0]
    a = amount[order].astype(np.float64)
    ent = customer[order]
    group_start = np.searchsorted(ent, ent, side="left")
    cs1 = _grouped_prefix(a, ent)
    reference_window = Window(
        start=(lag_days + reference_days) * SECONDS_PER_DAY, end=lag_days * SECONDS_PER_DAY
    )
    hi = _window_bound(key, reference_window, "end")
    lo = _window_bound(key, reference_window, "start")
    hi = np.maximum(hi, group_start)
    lo = np.minimum(np.maximum(lo, group_start), hi)
    count = hi - lo
    filled = count > 0
    # Fallback: the 30-day mean including the row (always defined).
    lo30 = _window_bound(key, customer_window(REFERENCE_FALLBACK_DAYS), "start")
    rows = np.arange(1, n + 1)
    reference = _grouped_window_sum(cs1, lo30, rows, group_start) / (rows - lo30)
    reference[filled] = (
        _grouped_window_sum(cs1, lo[filled], hi[filled], group_start[filled]) / count[filled]
    )
    high_cs = np.concatenate([[0.0], np.cumsum(is_high(a, reference))])
    out = {"customer_avg_amount_ref": _unsort(reference, order)}
    for days in high_windows:
        lo_w = _window_bound(key, customer_window(days), "start")
        out[f"customer_nb_high_amount_{days}d"] = _unsort(_window_sum(high_cs, lo_w, rows), order)
    return out


def terminal_aggregates(
    terminal: np.ndarray,
    seconds: np.ndarray,
    is_fraud: np.ndarray,
    windows: Sequence[int] = TERMINAL_WINDOWS,
    delay_days: int = LABEL_DELAY_DAYS,
) -> dict[str, np.ndarray]:
    """Per-transaction delayed terminal windows: count and fraud ratio."""
    order, key = _sorted_keys(terminal, seconds)
    n = key.shape[0]
    fraud_cs = np.concatenate([[0.0], np.cumsum(is_fraud[order].astype(np.float64))])
    # Rows with time <= t - delay end the window (side="right" keeps equal times in).
    hi = _window_bound(key, terminal_window(windows[0], delay_days), "end")
    # The current row always satisfies time <= t, so the end is never past it.
    hi = np.minimum(hi, np.arange(1, n + 1))
    out: dict[str, np.ndarray] = {}
    for days in windows:
        lo = _window_bound(key, terminal_window(days, delay_days), "start")
        lo = np.minimum(lo, hi)
        count = (hi - lo).astype(np.float64)
        frauds = _window_sum(fraud_cs, lo, hi)
        risk = np.zeros(n)
        np.divide(frauds, count, out=risk, where=count > 0)
        out[f"terminal_nb_tx_{days}d"] = _unsort(count, order)
        out[f"terminal_risk_{days}d"] = _unsort(risk, order)
    return out


def terminal_fraud_run(
    terminal: np.ndarray,
    seconds: np.ndarray,
    is_fraud: np.ndarray,
    plain: np.ndarray,
    delay_days: int = LABEL_DELAY_DAYS,
) -> dict[str, np.ndarray]:
    """The terminal's current run of labelled frauds, as known ``delay_days`` late.

    The labelled rows of a transaction at ``t`` are its terminal's rows with time
    ``<= t - delay``; the run is the frauds among them after the last genuine one:

    * ``terminal_fraud_run_nb``: their number (0 when the last labelled row is genuine or
      there is none);
    * ``terminal_fraud_run_nb_plain``: how many of them are ``plain`` (an amount ordinary for
      the card: a compromised terminal's frauds are, other frauds mostly are not);
    * ``terminal_fraud_run_days``: days from the run's first fraud to ``t`` (0 without a run).
    """
    order, key = _sorted_keys(terminal, seconds)
    n = key.shape[0]
    fraud = is_fraud[order].astype(bool)
    t = seconds[order]
    ent = terminal[order]
    rows = np.arange(n)
    group_start = np.searchsorted(ent, ent, side="left")
    # Last labelled row (side="right" keeps equal times in, as the delayed windows do).
    last = np.minimum(
        np.searchsorted(key, key - label_delay_seconds(delay_days), side="right"), rows + 1
    )
    last -= 1
    labelled = last >= group_start
    last = np.where(labelled, last, 0)
    # Latest genuine row at or before each row, never before the row's own terminal.
    genuine = np.maximum.accumulate(np.where(fraud, -1, rows))
    genuine = np.maximum(genuine, group_start - 1)[last]
    run = np.where(labelled, last - genuine, 0)
    first = np.minimum(genuine + 1, n - 1)  # first fraud of the run (when run > 0)
    plain_cs = np.concatenate([[0], np.cumsum(plain[order].astype(np.int64))])
    in_run = run > 0
    out = {
        "terminal_fraud_run_nb": np.where(in_run, run, 0).astype(np.float64),
        "terminal_fraud_run_nb_plain": np.where(
            in_run, plain_cs[last + 1] - plain_cs[first], 0
        ).astype(np.float64),
        "terminal_fraud_run_days": np.where(in_run, (t - t[first]) / SECONDS_PER_DAY, 0.0),
    }
    return {name: _unsort(values, order) for name, values in out.items()}


def _grouped_prefix(values: np.ndarray, entity: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum restarting at each entity (rows sorted by entity)."""
    return pd.Series(values).groupby(entity, sort=False).cumsum().to_numpy()


def _grouped_window_sum(
    prefix: np.ndarray, lo: np.ndarray, hi: np.ndarray, group_start: np.ndarray
) -> np.ndarray:
    """Sum over sorted rows ``[lo, hi)`` from a per-entity inclusive prefix sum."""
    before = np.where(lo > group_start, prefix[np.maximum(lo - 1, 0)], 0.0)
    return prefix[hi - 1] - before


def _unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Put values computed in sorted order back in the frame's row order."""
    out = np.empty_like(values)
    out[order] = values
    return out


def add_aggregates(frame: pd.DataFrame, delay_days: int = LABEL_DELAY_DAYS) -> pd.DataFrame:
    """Return a copy of a simulated transaction table with every contract aggregate filled.

    Needs the raw columns ``timestamp, customer_id, terminal_id, amount, is_fraud``.
    """
    seconds = frame["timestamp"].to_numpy(dtype="datetime64[s]").astype(np.int64)
    customer = entity_index(frame["customer_id"])
    terminal = entity_index(frame["terminal_id"])
    amount = frame["amount"].to_numpy(dtype=np.float64)
    is_fraud = frame["is_fraud"].to_numpy()

    std_windows = tuple(
        d for d in CUSTOMER_WINDOWS if f"customer_std_amount_{d}d" in AGGREGATE_FIELDS
    )
    reference = customer_reference_aggregates(customer, seconds, amount)
    # A fraud is "plain" when its amount was ordinary for its card: what a compromised
    # terminal produces.
    plain = (is_fraud == 1) & is_plain(amount, reference["customer_avg_amount_ref"])
    values = {
        **customer_aggregates(customer, seconds, amount, CUSTOMER_WINDOWS, std_windows),
        **reference,
        **terminal_aggregates(terminal, seconds, is_fraud, TERMINAL_WINDOWS, delay_days),
        **terminal_fraud_run(terminal, seconds, is_fraud, plain, delay_days),
    }
    missing = set(AGGREGATE_FIELDS) - set(values)
    if missing:
        msg = f"aggregate pipeline does not fill contract fields: {sorted(missing)}"
        raise RuntimeError(msg)
    out = frame.copy()
    for name in AGGREGATE_FIELDS:
        column = values[name]
        if is_whole_number(name):
            out[name] = column.astype(np.int32)
        else:
            out[name] = column
    return out
