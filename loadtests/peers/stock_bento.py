"""Peer (b): the same model behind a plain BentoML ``@bentoml.api`` service, default settings.

This is what the obvious BentoML service looks like: the request body is the contract's
``Transaction`` (BentoML validates it with pydantic), features come from ``fraud_contract``,
the booster predicts one row per request, and the answer has the same shape as this project's
``/v1/score`` (top-3 SHAP reasons included), so both are driven and validated identically.
No batching, no tuning: every BentoML default is left as shipped.

Serve: ``FRAUD_PEER_MODEL=<tag> bentoml serve loadtests.peers.stock_bento:StockFraudScoring``.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import numpy as np
import xgboost as xgb

from fraud_contract.artifact import MODEL_NAME, load_card
from fraud_contract.features import columns_from_records, compute_features
from fraud_contract.schema import Transaction

TOP_REASONS = 3


@bentoml.service
class StockFraudScoring:
    """One transaction in, one score out: a textbook BentoML service."""

    bento_model = bentoml.models.BentoModel(
        os.environ.get("FRAUD_PEER_MODEL", f"{MODEL_NAME}:latest")
    )

    def __init__(self) -> None:
        self.booster: xgb.Booster = bentoml.xgboost.load_model(self.bento_model)
        self.card = load_card(self.bento_model.info.metadata)
        self.tag = str(self.bento_model.tag)

    @bentoml.api(route="/v1/score", input_spec=Transaction)
    def score(self, **fields: Any) -> dict[str, Any]:
        """Score one transaction (same response shape as the project's service)."""
        tx = Transaction(**fields)
        features = compute_features(columns_from_records([tx]), self.card.feature_names)
        matrix = xgb.DMatrix(features, feature_names=list(self.card.feature_names))
        probability = float(self.booster.predict(matrix)[0])
        contributions = self.booster.predict(matrix, pred_contribs=True)[0][:-1]
        top = np.argsort(-np.abs(contributions))[:TOP_REASONS]
        return {
            "transaction_id": tx.transaction_id,
            "fraud_probability": probability,
            "is_fraud": probability >= self.card.threshold,
            "risk_band": self.card.band_of(probability),
            "threshold": self.card.threshold,
            "model_tag": self.tag,
            "reasons": [
                {
                    "feature": self.card.feature_names[i],
                    "value": None if np.isnan(features[0, i]) else float(features[0, i]),
                    "contribution": float(contributions[i]),
                }
                for i in top
            ],
        }
