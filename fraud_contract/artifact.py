"""What a trained model artifact carries besides the booster: the model card.

Training writes a :class:`ModelCard` into the BentoML model's ``metadata``; the service reads
it back. Both sides import this module, so the two can never disagree on a key.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Name of the model in the BentoML model store.
MODEL_NAME: Final = "fraud-detector"


class RiskBand(BaseModel):
    """A named score interval ``[lower, next band's lower)``."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Band label shown to analysts, e.g. 'low', 'high'.")
    lower: float = Field(ge=0.0, le=1.0, description="Inclusive lower score bound.")


class ModelCard(BaseModel):
    """Everything serving needs to know about a trained model, stored with it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    feature_names: list[str] = Field(description="Model inputs, in the booster's column order.")
    threshold: float = Field(ge=0.0, le=1.0, description="Alert when probability >= threshold.")
    threshold_rule: str = Field(description="How the threshold was chosen (human-readable).")
    risk_bands: list[RiskBand] = Field(description="Bands ordered by increasing lower bound.")
    metrics: dict[str, float] = Field(description="Evaluation metrics on the held-out period.")
    scenario_recall: dict[str, float] = Field(
        default_factory=dict, description="Recall at the threshold per fraud scenario."
    )
    trained_at: str = Field(description="UTC ISO 8601 time the model was trained.")
    training_data_fingerprint: str = Field(description="SHA-256 of the training frame.")
    code_version: str = Field(description="Git revision of the code that trained the model.")
    dataset: dict[str, Any] = Field(
        default_factory=dict, description="Simulator preset, seed and the train/test periods."
    )

    @model_validator(mode="after")
    def _bands_are_ordered(self) -> ModelCard:
        lowers = [band.lower for band in self.risk_bands]
        if not lowers or lowers[0] != 0.0 or lowers != sorted(lowers):
            msg = "risk_bands must start at 0.0 and be sorted by lower bound"
            raise ValueError(msg)
        return self

    def band_of(self, probability: float) -> str:
        """Name of the risk band a probability falls in."""
        name = self.risk_bands[0].name
        for band in self.risk_bands:
            if probability >= band.lower:
                name = band.name
        return name


def save_model(booster: Any, card: ModelCard, labels: dict[str, str] | None = None) -> str:
    """Save a trained XGBoost booster and its card to the BentoML model store; return the tag.

    BentoML is imported here, not at module level, so that the UI and load tests can import
    the contract without the serving framework.
    """
    import bentoml  # noqa: PLC0415

    model = bentoml.xgboost.save_model(
        MODEL_NAME,
        booster,
        metadata=card.model_dump(mode="json"),
        labels={"framework": "xgboost", **(labels or {})},
    )
    return str(model.tag)


def load_card(metadata: dict[str, Any]) -> ModelCard:
    """Validate a stored model's metadata as a :class:`ModelCard` (raises on a corrupt card)."""
    return ModelCard.model_validate(metadata)
