"""Feature computation shared by training and serving: the only place features are defined.

Input is *columns* (one numpy array per raw contract field); output is a float32 matrix with
one row per transaction and one column per name in :data:`MODEL_FEATURES` (or any subset).
The same function serves a 1.7M-row training frame and a single request (serving calls it on
the adaptive batch, so it is vectorised and builds no DataFrame).

Missing aggregates arrive as NaN and stay NaN: XGBoost learns where missing values go.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from fraud_contract.schema import AGGREGATE_FIELDS, Transaction

if TYPE_CHECKING:
    import pandas as pd

SECONDS_PER_DAY: Final = 86_400
#: Hours (inclusive) that count as night, as in the handbook: hour <= 6.
NIGHT_LAST_HOUR: Final = 6
#: 1970-01-01 was a Thursday; with Monday = 0 that is weekday 3.
_EPOCH_WEEKDAY: Final = 3
_SATURDAY: Final = 5

#: The handbook's 15 baseline inputs (reproduced by the model benchmark).
BASELINE_FEATURES: Final[tuple[str, ...]] = (
    "amount",
    "is_weekend",
    "is_night",
    "customer_nb_tx_1d",
    "customer_avg_amount_1d",
    "customer_nb_tx_7d",
    "customer_avg_amount_7d",
    "customer_nb_tx_30d",
    "customer_avg_amount_30d",
    "terminal_nb_tx_1d",
    "terminal_risk_1d",
    "terminal_nb_tx_7d",
    "terminal_risk_7d",
    "terminal_nb_tx_30d",
    "terminal_risk_30d",
)

#: The project's model inputs: the baseline plus record-only derived features.
MODEL_FEATURES: Final[tuple[str, ...]] = (
    *BASELINE_FEATURES,
    "customer_std_amount_30d",
    "hour_sin",
    "hour_cos",
    "amount_to_avg_1d",
    "amount_to_avg_7d",
    "amount_to_avg_30d",
    "amount_zscore_30d",
    "terminal_nb_fraud_1d",
    "terminal_nb_fraud_7d",
    "terminal_nb_fraud_30d",
    "amount_to_ref",
    "customer_nb_high_amount_1d",
    "customer_nb_high_amount_7d",
    "high_amount_share_7d",
    "terminal_fraud_run_nb",
    "terminal_fraud_run_nb_plain",
    "terminal_fraud_run_days",
)

#: Columns that :func:`compute_features` needs as input.
INPUT_COLUMNS: Final[tuple[str, ...]] = ("timestamp", "amount", *AGGREGATE_FIELDS)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio; NaN where the denominator is 0 or missing (no division warnings)."""
    out = np.full(numerator.shape, np.nan, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def compute_features(
    columns: Mapping[str, np.ndarray], feature_names: Sequence[str] = MODEL_FEATURES
) -> np.ndarray:
    """Compute the model matrix from raw contract columns.

    Args:
        columns: ``timestamp`` as ``datetime64`` (any unit), every other
            :data:`INPUT_COLUMNS` entry as a float array (NaN = missing). All arrays have the
            same length.
        feature_names: which features, in which order (the model artifact stores its own).

    Returns:
        ``float32`` array of shape ``(n_rows, len(feature_names))``.
    """
    seconds = columns["timestamp"].astype("datetime64[s]").astype(np.int64)
    second_of_day = seconds % SECONDS_PER_DAY
    weekday = (seconds // SECONDS_PER_DAY + _EPOCH_WEEKDAY) % 7
    hour = second_of_day // 3600
    angle = (2.0 * np.pi / SECONDS_PER_DAY) * second_of_day
    amount = columns["amount"].astype(np.float64, copy=False)

    def raw(name: str) -> np.ndarray:
        return columns[name].astype(np.float64, copy=False)

    derived: dict[str, Any] = {
        "is_weekend": lambda: (weekday >= _SATURDAY).astype(np.float64),
        "is_night": lambda: (hour <= NIGHT_LAST_HOUR).astype(np.float64),
        "hour_sin": lambda: np.sin(angle),
        "hour_cos": lambda: np.cos(angle),
        "amount": lambda: amount,
        "amount_to_avg_1d": lambda: _ratio(amount, raw("customer_avg_amount_1d")),
        "amount_to_avg_7d": lambda: _ratio(amount, raw("customer_avg_amount_7d")),
        "amount_to_avg_30d": lambda: _ratio(amount, raw("customer_avg_amount_30d")),
        "amount_zscore_30d": lambda: _ratio(
            amount - raw("customer_avg_amount_30d"), raw("customer_std_amount_30d")
        ),
        "amount_to_ref": lambda: _ratio(amount, raw("customer_avg_amount_ref")),
        "high_amount_share_7d": lambda: _ratio(
            raw("customer_nb_high_amount_7d"), raw("customer_nb_tx_7d")
        ),
        "terminal_nb_fraud_1d": lambda: raw("terminal_nb_tx_1d") * raw("terminal_risk_1d"),
        "terminal_nb_fraud_7d": lambda: raw("terminal_nb_tx_7d") * raw("terminal_risk_7d"),
        "terminal_nb_fraud_30d": lambda: raw("terminal_nb_tx_30d") * raw("terminal_risk_30d"),
    }
    n_rows = seconds.shape[0]
    matrix = np.empty((n_rows, len(feature_names)), dtype=np.float32)
    for j, name in enumerate(feature_names):
        matrix[:, j] = derived[name]() if name in derived else raw(name)
    return matrix


def columns_from_records(
    records: Iterable[Transaction | Mapping[str, Any]],
) -> dict[str, np.ndarray]:
    """Turn validated transactions into the column arrays :func:`compute_features` takes.

    Cheap for one row: plain attribute reads and one small array per column.
    """
    rows = [r if isinstance(r, Transaction) else Transaction.model_validate(r) for r in records]
    columns: dict[str, np.ndarray] = {
        "timestamp": np.array([_naive(r.timestamp) for r in rows], dtype="datetime64[us]").reshape(
            len(rows)
        ),
        "amount": np.fromiter((r.amount for r in rows), dtype=np.float64, count=len(rows)),
    }
    for name in AGGREGATE_FIELDS:
        columns[name] = np.fromiter(
            (_nan_if_none(getattr(r, name)) for r in rows), dtype=np.float64, count=len(rows)
        )
    return columns


def columns_from_frame(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Turn a frame with contract columns (absent aggregates allowed) into column arrays."""
    import pandas as pd  # noqa: PLC0415  (kept off the serving import path)

    n_rows = len(frame)
    timestamps = pd.to_datetime(frame["timestamp"])
    if getattr(timestamps.dt, "tz", None) is not None:
        timestamps = timestamps.dt.tz_localize(None)
    columns: dict[str, np.ndarray] = {
        "timestamp": timestamps.to_numpy(dtype="datetime64[us]"),
        "amount": frame["amount"].to_numpy(dtype=np.float64, na_value=np.nan),
    }
    for name in AGGREGATE_FIELDS:
        columns[name] = (
            frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
            if name in frame.columns
            else np.full(n_rows, np.nan)
        )
    return columns


def _naive(moment: datetime) -> datetime:
    """Wall-clock time as written: drop the offset without converting (see the schema)."""
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment


def _nan_if_none(value: float | None) -> float:
    return np.nan if value is None else float(value)
