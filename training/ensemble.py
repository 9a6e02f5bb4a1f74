"""Average several XGBoost boosters into one booster (what the service loads is one model).

The averaged booster's margin (log-odds) is the weighted mean of the members' margins: every
member's leaf values are scaled by its weight and the base scores are combined in margin
space. Serving needs nothing new: it is an ordinary XGBoost model with more trees.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import xgboost as xgb


def _base_margin(model: dict[str, Any]) -> float:
    """The member's base score as a margin (the JSON stores a probability, maybe as a list)."""
    raw = model["learner"]["learner_model_param"]["base_score"]
    value = json.loads(raw) if raw.startswith("[") else float(raw)
    probability = float(value[0] if isinstance(value, list) else value)
    return math.log(probability / (1.0 - probability))


def average_boosters(
    boosters: Sequence[xgb.Booster], weights: Sequence[float] | None = None
) -> xgb.Booster:
    """One booster whose margin is the weighted mean of ``boosters``' margins.

    All members must be binary logistic models on the same feature names, one tree per round.
    """
    if not boosters:
        msg = "average_boosters needs at least one booster"
        raise ValueError(msg)
    weights = list(weights) if weights is not None else [1.0 / len(boosters)] * len(boosters)
    if len(weights) != len(boosters) or not math.isclose(sum(weights), 1.0):
        msg = "weights must be one per booster and sum to 1"
        raise ValueError(msg)
    models = [json.loads(bytes(b.save_raw("json"))) for b in boosters]
    names = models[0]["learner"]["feature_names"]
    if any(m["learner"]["feature_names"] != names for m in models):
        msg = "boosters to average must have the same feature names"
        raise ValueError(msg)
    trees: list[dict[str, Any]] = []
    for model, weight in zip(models, weights, strict=True):
        for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
            leaves = [child == -1 for child in tree["left_children"]]
            tree["split_conditions"] = [
                value * weight if leaf else value
                for value, leaf in zip(tree["split_conditions"], leaves, strict=True)
            ]
            tree["base_weights"] = [value * weight for value in tree["base_weights"]]
            tree["id"] = len(trees)
            trees.append(tree)
    margin = sum(w * _base_margin(m) for m, w in zip(models, weights, strict=True))
    merged = models[0]
    merged["learner"]["learner_model_param"]["base_score"] = (
        f"[{1.0 / (1.0 + math.exp(-margin)):.9E}]"
    )
    gbtree = merged["learner"]["gradient_booster"]["model"]
    gbtree["trees"] = trees
    gbtree["tree_info"] = [0] * len(trees)
    gbtree["iteration_indptr"] = list(range(len(trees) + 1))
    gbtree["gbtree_model_param"]["num_trees"] = str(len(trees))
    # Early-stopping attributes of the first member would describe only that member.
    merged["learner"]["attributes"] = {}
    return xgb.Booster(model_file=bytearray(json.dumps(merged).encode()))
