"""XGBoost's own predictions through its C API, without the Python wrapper's per-call cost.

``Booster.inplace_predict`` spends ~200 us of Python per call (type dispatch over a dozen data
kinds, JSON config, feature checks, building the output wrapper) around a C prediction that
takes a few microseconds per row: at the small batches of single-score traffic that wrapper is
most of the model step. ``DMatrix`` + ``predict(pred_contribs=True)`` has the same overhead for
TreeSHAP. This module makes the same two C calls the wrapper makes (``XGBoosterPredictFromDense``;
``XGDMatrixCreateFromDense`` + ``XGBoosterPredictFromDMatrix``) with pre-encoded configs, for
C-contiguous float32 matrices only.

It reaches into ``xgboost.core`` (``_LIB``, ``_check_call``), so it is used only after
:func:`native_predictor` has checked, on the loaded model, that it returns exactly what the
public API returns; on any difference or error the caller keeps the public API.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any

import numpy as np
import xgboost as xgb

#: XGBoost's PredictionType values (``include/xgboost/predictor.h``).
_VALUE, _CONTRIBUTION = 0, 2


def _config(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


class PublicPredictor:
    """Plain scores and TreeSHAP contributions of one booster, via XGBoost's Python API.

    The reference :class:`NativePredictor` is checked against, and the fallback when it is not
    used.
    """

    def __init__(self, booster: xgb.Booster, threads: int) -> None:
        self._booster = booster
        self._threads = threads

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities, shape ``(n,)``."""
        return np.asarray(self._booster.inplace_predict(matrix, missing=np.nan)).reshape(-1)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """TreeSHAP values plus the bias column, shape ``(n, features + 1)``."""
        # nthread: DMatrix defaults to every core; on a busy or pinned core the OpenMP
        # start-up alone cost ~14 ms CPU per small batch (measured), 30x the copy itself.
        # No feature names: columns are in booster order by construction and the names'
        # setter costs ~0.1-0.2 ms per call (measured), paid once per adaptive batch.
        dmatrix = xgb.DMatrix(matrix, missing=np.nan, nthread=self._threads)
        return np.asarray(
            self._booster.predict(dmatrix, pred_contribs=True, validate_features=False)
        )


class NativePredictor:
    """Plain scores and TreeSHAP contributions of one booster, via XGBoost's C API."""

    def __init__(self, booster: xgb.Booster, threads: int) -> None:
        from xgboost import core  # noqa: PLC0415  (private: checked by native_predictor)

        self._lib = core._LIB
        self._check = core._check_call
        self._ulong = core.c_bst_ulong
        self._booster = booster  # keeps the handle alive
        self._handle = booster.handle
        common = {"training": False, "iteration_begin": 0, "iteration_end": 0}
        self._value_config = _config(
            type=_VALUE, **common, missing=float("nan"), strict_shape=False, cache_id=0
        )
        self._contrib_config = _config(type=_CONTRIBUTION, **common, strict_shape=False)
        self._matrix_config = _config(missing=float("nan"), nthread=threads, data_split_mode=0)
        self._no_proxy = ctypes.c_void_p()

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities, shape ``(n,)``, like ``booster.inplace_predict(matrix)``."""
        matrix = _dense_f32(matrix)
        if not matrix.shape[0]:  # XGBoost answers shape (0, 0) for no rows
            return np.empty(0, dtype=np.float32)
        shape, dims, out = self._outputs()
        self._check(
            self._lib.XGBoosterPredictFromDense(
                self._handle,
                _interface(matrix),
                self._value_config,
                self._no_proxy,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(out),
            )
        )
        return _copy_out(shape, dims, out, expected=(matrix.shape[0],))

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """TreeSHAP values plus the bias column, shape ``(n, features + 1)``, as ``predict``."""
        matrix = _dense_f32(matrix)
        if not matrix.shape[0]:
            return np.empty((0, matrix.shape[1] + 1), dtype=np.float32)
        dmatrix = ctypes.c_void_p()
        self._check(
            self._lib.XGDMatrixCreateFromDense(
                _interface(matrix), self._matrix_config, ctypes.byref(dmatrix)
            )
        )
        try:
            shape, dims, out = self._outputs()
            self._check(
                self._lib.XGBoosterPredictFromDMatrix(
                    self._handle,
                    dmatrix,
                    self._contrib_config,
                    ctypes.byref(shape),
                    ctypes.byref(dims),
                    ctypes.byref(out),
                )
            )
            expected = (matrix.shape[0], matrix.shape[1] + 1)
            return _copy_out(shape, dims, out, expected=expected)
        finally:
            self._check(self._lib.XGDMatrixFree(dmatrix))

    def _outputs(self) -> tuple[Any, Any, Any]:
        return (
            ctypes.POINTER(self._ulong)(),
            self._ulong(),
            ctypes.POINTER(ctypes.c_float)(),
        )


def _dense_f32(matrix: np.ndarray) -> np.ndarray:
    if matrix.dtype != np.float32 or not matrix.flags.c_contiguous:
        return np.ascontiguousarray(matrix, dtype=np.float32)
    return matrix


def _interface(matrix: np.ndarray) -> bytes:
    return json.dumps(matrix.__array_interface__).encode()


def _copy_out(shape: Any, dims: Any, out: Any, expected: tuple[int, ...]) -> np.ndarray:
    """Copy XGBoost's (booster-owned, reused) output buffer into a new array."""
    got = tuple(int(shape[i]) for i in range(dims.value))
    if got != expected:
        raise RuntimeError(f"XGBoost returned shape {got}, expected {expected}")
    size = int(np.prod(expected))
    return np.ctypeslib.as_array(out, shape=(size,)).reshape(expected).copy()


def native_predictor(booster: xgb.Booster, threads: int) -> NativePredictor | None:
    """A :class:`NativePredictor` if it matches the public API exactly on this booster, else None.

    The probe covers missing values, zeros, negatives and large values, one row and several.
    """
    try:
        probe = _probe(booster.num_features())
        native = NativePredictor(booster, threads)
        public = PublicPredictor(booster, threads)
        public_scores = public.scores(probe)
        public_contribs = public.contributions(probe)
        same = (
            np.array_equal(native.scores(probe), public_scores)
            and np.array_equal(native.scores(probe[3:4]), public_scores[3:4])
            and np.array_equal(native.contributions(probe), public_contribs)
        )
    except Exception:  # any change in XGBoost's internals: keep the public API
        return None
    return native if same else None


def _probe(n_features: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    probe = rng.normal(0.0, 50.0, size=(9, n_features)).astype(np.float32)
    probe[0, :] = np.nan
    probe[1, ::2] = 0.0
    probe[2, 1::3] = np.nan
    return probe
