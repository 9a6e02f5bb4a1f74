"""Averaging boosters into the one booster the service loads, and the recency weights."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from training.ensemble import average_boosters
from training.model import recency_weights


def _boosters() -> tuple[xgb.DMatrix, xgb.Booster, xgb.Booster]:
    rng = np.random.default_rng(0)
    x = rng.random((1_000, 4))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values follow each tree's default branch
    y = (np.nan_to_num(x[:, 0]) + 0.5 * rng.random(1_000) > 0.9).astype(int)
    names = ["a", "b", "c", "d"]
    data = xgb.DMatrix(x, label=y, feature_names=names)
    params = {"objective": "binary:logistic", "nthread": 1}
    first = xgb.train({**params, "max_depth": 3}, data, 20)
    small = xgb.DMatrix(x[:300], label=y[:300], feature_names=names)
    second = xgb.train({**params, "max_depth": 4, "eta": 0.1}, small, 15)
    return data, first, second


def test_averaged_margin_is_the_mean_of_the_members() -> None:
    data, first, second = _boosters()
    merged = average_boosters([first, second], [0.25, 0.75])
    expected = 0.25 * first.predict(data, output_margin=True) + 0.75 * second.predict(
        data, output_margin=True
    )
    assert merged.predict(data, output_margin=True) == pytest.approx(expected, abs=1e-5)
    assert merged.num_boosted_rounds() == 35
    assert merged.feature_names == ["a", "b", "c", "d"]
    # It survives the store's round trip (saved and loaded as an ordinary model).
    reloaded = xgb.Booster(model_file=bytearray(merged.save_raw("ubj")))
    assert reloaded.predict(data) == pytest.approx(merged.predict(data))


def test_average_refuses_mismatched_inputs() -> None:
    _, first, second = _boosters()
    with pytest.raises(ValueError, match="sum to 1"):
        average_boosters([first, second], [0.5, 0.6])
    with pytest.raises(ValueError, match="at least one"):
        average_boosters([])


def test_recency_weights_halve_every_half_life() -> None:
    frame = pd.DataFrame(
        {"timestamp": pd.to_datetime(["2018-07-31 00:00", "2018-07-03 00:00", "2018-06-05 00:00"])}
    )
    weights = recency_weights(frame, date(2018, 7, 31), 28.0)
    assert weights == pytest.approx([1.0, 0.5, 0.25])
    assert recency_weights(frame, date(2018, 7, 31), None) == pytest.approx([1.0, 1.0, 1.0])
