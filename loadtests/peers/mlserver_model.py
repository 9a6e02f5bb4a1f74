"""Peer (c): lay out an MLServer model repository for the same booster.

MLServer's xgboost runtime loads a booster file; the model is exported from the BentoML store
(same tag, same bytes as the service scores with) with adaptive batching switched on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Model name in the V2 inference protocol (``/v2/models/<name>/infer``).
MLSERVER_MODEL_NAME = "fraud-detector"


def write_repository(
    booster: Any,
    root: Path,
    *,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    max_batch_size: int = 32,
    max_batch_time: float = 0.002,
    parallel_workers: int = 0,
) -> Path:
    """Write ``settings.json`` + ``<model>/model-settings.json`` + the booster under ``root``.

    ``parallel_workers=0`` runs inference in the server process: on one pinned core a separate
    inference process only adds IPC. Adaptive batching: up to ``max_batch_size`` requests or
    ``max_batch_time`` seconds, whichever comes first.
    """
    model_dir = root / MLSERVER_MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(model_dir / "model.json"))
    (root / "settings.json").write_text(
        json.dumps(
            {
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "parallel_workers": parallel_workers,
                "host": "127.0.0.1",
            }
        )
    )
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MLSERVER_MODEL_NAME,
                "implementation": "mlserver_xgboost.XGBoostModel",
                "max_batch_size": max_batch_size,
                "max_batch_time": max_batch_time,
                "parameters": {"uri": "./model.json", "version": "v1"},
            }
        )
    )
    return root
