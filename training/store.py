"""Saving to and querying the BentoML model store from training (never imported by serving)."""

from __future__ import annotations

from typing import Any

from fraud_contract.artifact import MODEL_NAME, ModelCard, save_model
from service.bentoml_bridge import allow_xgboost_cpu_wheel


def save(booster: Any, card: ModelCard, labels: dict[str, str]) -> str:
    """Save through the shared contract's :func:`fraud_contract.artifact.save_model`."""
    allow_xgboost_cpu_wheel()
    return save_model(booster, card, labels)


def latest_model() -> str | None:
    """Tag of the newest project model in the store (``$BENTOML_HOME``), or None."""
    import bentoml  # noqa: PLC0415

    try:
        return str(bentoml.models.get(f"{MODEL_NAME}:latest").tag)
    except bentoml.exceptions.NotFound:
        return None
