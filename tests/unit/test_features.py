"""Features are computed once, identically for a request record and a training frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud_contract import (
    AGGREGATE_FIELDS,
    BASELINE_FEATURES,
    MODEL_FEATURES,
    TRANSACTION_FIELDS,
    columns_from_frame,
    columns_from_records,
    compute_features,
)
from fraud_contract.schema import example_transaction
from training.aggregates import add_aggregates
from training.simulator import preset, simulate


@pytest.fixture(scope="module")
def records_frame() -> pd.DataFrame:
    frame = add_aggregates(simulate(preset("test")))
    return frame.sample(300, random_state=0).reset_index(drop=True)


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    rows = []
    for row in frame[list(TRANSACTION_FIELDS)].to_dict("records"):
        row["timestamp"] = row["timestamp"].isoformat()
        rows.append(
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        )
    return rows


def test_record_path_equals_frame_path(records_frame: pd.DataFrame) -> None:
    from_frame = compute_features(columns_from_frame(records_frame))
    from_records = compute_features(columns_from_records(_records(records_frame)))
    np.testing.assert_array_equal(from_frame, from_records)
    assert from_frame.shape == (300, len(MODEL_FEATURES))
    assert from_frame.dtype == np.float32


def test_paths_agree_on_missing_aggregates(records_frame: pd.DataFrame) -> None:
    frame = records_frame.copy()
    frame.loc[::3, "terminal_risk_7d"] = np.nan
    frame.loc[1::3, "customer_avg_amount_30d"] = np.nan
    dropped = frame.drop(columns=["customer_std_amount_30d"])  # absent column = all missing
    from_frame = compute_features(columns_from_frame(dropped))
    records = _records(frame)
    for record in records:
        record.pop("customer_std_amount_30d")
    from_records = compute_features(columns_from_records(records))
    np.testing.assert_array_equal(from_frame, from_records)  # NaN positions equal too
    std_col = MODEL_FEATURES.index("customer_std_amount_30d")
    assert np.isnan(from_frame[:, std_col]).all()
    assert np.isnan(from_frame[::3, MODEL_FEATURES.index("terminal_risk_7d")]).all()


def test_derived_features_on_a_hand_made_record() -> None:
    saturday_night = example_transaction(
        timestamp="2018-08-11T03:30:00",
        amount=300.0,
        customer_avg_amount_30d=60.0,
        customer_std_amount_30d=20.0,
        customer_avg_amount_7d=0.0,
        terminal_nb_tx_7d=10,
        terminal_risk_7d=0.3,
    )
    weekday_noon = example_transaction(timestamp="2018-08-08T12:00:00+02:00", amount=10.0)
    names = [
        "is_weekend",
        "is_night",
        "amount_to_avg_30d",
        "amount_zscore_30d",
        "amount_to_avg_7d",
        "terminal_nb_fraud_7d",
        "hour_cos",
    ]
    x = compute_features(columns_from_records([saturday_night, weekday_noon]), names)
    assert x[0].tolist()[:4] == [1.0, 1.0, 5.0, 12.0]
    assert np.isnan(x[0, 4])  # zero average: no ratio, not an infinity
    assert x[0, 5] == pytest.approx(3.0)
    # Wall-clock time as written (the +02:00 offset is not converted): noon on a Wednesday.
    assert x[1, 0] == 0.0 and x[1, 1] == 0.0
    assert x[1, 6] == pytest.approx(-1.0)
    assert np.isnan(x[1, 2])  # no history sent -> missing, never imputed


def test_baseline_features_are_the_books_fifteen() -> None:
    assert len(BASELINE_FEATURES) == 15
    assert set(BASELINE_FEATURES) <= set(MODEL_FEATURES)
    assert set(AGGREGATE_FIELDS) >= {
        f for f in BASELINE_FEATURES if f.startswith(("customer", "terminal"))
    }
