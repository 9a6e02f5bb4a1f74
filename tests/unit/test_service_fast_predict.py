"""XGBoost's C API path: exactly the public API's numbers, or not used at all."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from service import fast_predict
from service.fast_predict import NativePredictor, native_predictor
from service.model import LoadedModel
from testkit.api import load_tiny_model

N_FEATURES = 7


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    """A small logistic booster trained here on data with missing values."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, N_FEATURES)).astype(np.float32)
    features[rng.random(features.shape) < 0.1] = np.nan
    labels = (np.nan_to_num(features[:, 0]) + rng.normal(0, 0.5, 600) > 0.8).astype(int)
    data = xgb.DMatrix(features, label=labels, missing=np.nan)
    params = {"objective": "binary:logistic", "max_depth": 4, "nthread": 1}
    return xgb.train(params, data, num_boost_round=25)


def _matrix(rows: int, seed: int, width: int = N_FEATURES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0, 3, size=(rows, width)).astype(np.float32)
    matrix[rng.random(matrix.shape) < 0.2] = np.nan
    return matrix


@pytest.mark.parametrize("rows", [1, 2, 17, 300])
def test_scores_and_contributions_equal_the_public_api(booster: xgb.Booster, rows: int) -> None:
    native = native_predictor(booster, threads=1)
    assert native is not None
    matrix = _matrix(rows, seed=rows)
    public_contribs = booster.predict(
        xgb.DMatrix(matrix, missing=np.nan, nthread=1), pred_contribs=True
    )
    np.testing.assert_array_equal(
        native.scores(matrix), booster.inplace_predict(matrix, missing=np.nan)
    )
    np.testing.assert_array_equal(native.contributions(matrix), public_contribs)


def test_other_dtypes_and_layouts_are_converted_first(booster: xgb.Booster) -> None:
    native = NativePredictor(booster, threads=1)
    matrix = _matrix(12, seed=5)
    expected = native.scores(matrix)
    np.testing.assert_array_equal(native.scores(matrix.astype(np.float64)), expected)
    fortran = np.asfortranarray(matrix)
    assert not fortran.flags.c_contiguous
    np.testing.assert_array_equal(native.scores(fortran), expected)


def test_no_rows_give_empty_answers_of_the_right_shape(booster: xgb.Booster) -> None:
    native = NativePredictor(booster, threads=1)
    empty = np.empty((0, N_FEATURES), dtype=np.float32)
    assert native.scores(empty).shape == (0,)
    assert native.contributions(empty).shape == (0, N_FEATURES + 1)


def test_outputs_are_copies_not_xgboosts_reused_buffer(booster: xgb.Booster) -> None:
    native = NativePredictor(booster, threads=1)
    first = native.scores(_matrix(4, seed=1))
    kept = first.copy()
    native.scores(_matrix(4, seed=2))
    np.testing.assert_array_equal(first, kept)


def test_missing_internals_fall_back_to_the_public_api(
    booster: xgb.Booster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(xgb.core, "_LIB")
    assert native_predictor(booster, threads=1) is None


def test_any_difference_from_the_public_api_falls_back(
    booster: xgb.Booster, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = NativePredictor.scores

    def slightly_off(self: NativePredictor, matrix: np.ndarray) -> Any:
        return real(self, matrix) + np.float32(1e-6)

    monkeypatch.setattr(fast_predict.NativePredictor, "scores", slightly_off)
    assert native_predictor(booster, threads=1) is None


def test_served_model_uses_it_and_scores_like_the_public_path(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    model = load_tiny_model(tmp_path_factory.mktemp("bentoml"))
    assert model.native is not None
    public = LoadedModel(model.tag, model.booster, model.card, model.threads, native=None)
    matrix = _matrix(20, seed=9, width=len(model.feature_names))
    for explain in (False, True):
        fast = model.predict(matrix.copy(), explain=explain)
        slow = public.predict(matrix.copy(), explain=explain)
        np.testing.assert_array_equal(fast.probabilities, slow.probabilities)
        if explain:
            np.testing.assert_array_equal(fast.contributions, slow.contributions)
