"""Time-based splits with the label delay (never a random split), as in the handbook.

Periods are whole days. Between the last labelled training day and the first assessed day
lie ``delay_days`` whose labels are not known yet at decision time; they are never trained on.

Test cleaning (the handbook's): cards with a known fraud in the training period are removed
from the test set, and for each test day, cards with a fraud on ``test_day - (delay + 1)`` or
earlier (from the training period on) are removed too: their compromise is already known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from training.aggregates import LABEL_DELAY_DAYS


@dataclass(frozen=True)
class Period:
    """Whole days ``[start, start + days)``."""

    start: date
    days: int

    @property
    def end(self) -> date:
        """First day after the period."""
        return self.start + timedelta(days=self.days)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for model cards and reports)."""
        return {
            "start": self.start.isoformat(),
            "end_exclusive": self.end.isoformat(),
            "days": self.days,
        }


def day_index(frame: pd.DataFrame) -> np.ndarray:
    """Calendar day of each row as days since 1970-01-01 (comparable across frames)."""
    return frame["timestamp"].to_numpy(dtype="datetime64[D]").astype(np.int64)


def _day_number(d: date) -> int:
    return int(np.datetime64(d, "D").astype(np.int64))


def select(frame: pd.DataFrame, period: Period) -> pd.DataFrame:
    """Rows of ``frame`` inside ``period``."""
    days = day_index(frame)
    lo = _day_number(period.start)
    return frame[(days >= lo) & (days < lo + period.days)]


def clean_test(
    frame: pd.DataFrame, train: Period, test: Period, delay_days: int = LABEL_DELAY_DAYS
) -> pd.DataFrame:
    """Test rows of ``frame`` (the whole labelled history) after the handbook's cleaning.

    Drops, on each test day, the cards whose fraud is already known that day.
    """
    days = day_index(frame)
    fraud_days = days[frame["is_fraud"].to_numpy() == 1]
    fraud_cards = frame["customer_id"].to_numpy()[frame["is_fraud"].to_numpy() == 1]
    train_lo = _day_number(train.start)
    test_lo = _day_number(test.start)
    parts = []
    for offset in range(test.days):
        today = test_lo + offset
        # Known by today: frauds from the training period's start up to today - delay - 1.
        known_mask = (fraud_days >= train_lo) & (fraud_days <= today - delay_days - 1)
        known = set(fraud_cards[known_mask].tolist())
        rows = frame[days == today]
        parts.append(rows[~rows["customer_id"].isin(known)])
    return pd.concat(parts) if parts else frame.iloc[:0]


def handbook_periods(
    train_start: str = "2018-07-25",
    train_days: int = 7,
    delay_days: int = LABEL_DELAY_DAYS,
    test_days: int = 7,
) -> tuple[Period, Period]:
    """The baseline protocol: 7 training days, 7 delay days, 7 test days."""
    train = Period(date.fromisoformat(train_start), train_days)
    test = Period(train.end + timedelta(days=delay_days), test_days)
    return train, test
