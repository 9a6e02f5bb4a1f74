"""Saving to and querying the BentoML model store from training (never imported by serving)."""

from __future__ import annotations

from typing import Any

from fraud_contract.artifact import MODEL_NAME, ModelCard, save_model


def _allow_xgboost_cpu() -> None:
    """Let BentoML record the XGBoost version when the ``xgboost-cpu`` wheel is installed.

    BentoML asks for the ``xgboost`` distribution's metadata, which the CPU-only wheel names
    ``xgboost-cpu``; the imported module's own version is the same number.
    """
    import _bentoml_impl.frameworks.xgboost as bentoml_xgboost  # noqa: PLC0415
    import xgboost  # noqa: PLC0415

    original = bentoml_xgboost.get_pkg_version

    def version(name: str) -> str:
        try:
            return str(original(name))
        except Exception:
            if name == "xgboost":
                return str(xgboost.__version__)
            raise

    bentoml_xgboost.get_pkg_version = version


def save(booster: Any, card: ModelCard, labels: dict[str, str]) -> str:
    """Save through the shared contract's :func:`fraud_contract.artifact.save_model`."""
    _allow_xgboost_cpu()
    return save_model(booster, card, labels)


def latest_model() -> str | None:
    """Tag of the newest project model in the store (``$BENTOML_HOME``), or None."""
    import bentoml  # noqa: PLC0415

    try:
        return str(bentoml.models.get(f"{MODEL_NAME}:latest").tag)
    except bentoml.exceptions.NotFound:
        return None
