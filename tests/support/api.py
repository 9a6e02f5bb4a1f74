"""A real scoring API for tests: ``bentoml serve service.service:FraudScoring`` on a free port.

Usage::

    tag = train_tiny_model(bentoml_home)
    with served_api(bentoml_home, port) as base_url:
        httpx.post(base_url + SCORE_PATH, json=...)

The server runs from the repository root in its own process group, with ``BENTOML_HOME``
pointing at the test's model store; it is always stopped on exit and its log is kept in
``test-artifacts/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fraud_contract.api import READY_PATH
from tests.support.process import ServerProcess, python_command, running_server
from tests.support.tools import REPO_ROOT

if TYPE_CHECKING:
    from service.model import LoadedModel

#: Where server logs of served APIs are kept.
LOG_DIR = REPO_ROOT / "test-artifacts" / "api-logs"


def serve_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that serves the API (the project's venv ``bentoml``)."""
    return python_command(
        "-m", "bentoml", "serve", "service.service:FraudScoring",
        "--host", host, "--port", str(port),
    )  # fmt: skip


@contextmanager
def served_process(
    bentoml_home: Path,
    port: int,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 180.0,
    log_name: str | None = None,
) -> Iterator[ServerProcess]:
    """Like :func:`served_api` but yields the :class:`ServerProcess` (logs, stop, pid)."""
    server_env = {
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "true",
        "FRAUD_WORKERS": str(workers),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    log_path = LOG_DIR / (log_name or f"api-{port}-{os.getpid()}.log")
    with running_server(
        serve_command(port),
        base_url=f"http://127.0.0.1:{port}",
        ready_path=READY_PATH,
        log_path=log_path,
        env=server_env,
        cwd=REPO_ROOT,
        ready_timeout=ready_timeout,
    ) as server:
        yield server


@contextmanager
def served_api(
    bentoml_home: Path,
    port: int,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 180.0,
) -> Iterator[str]:
    """Serve the API from ``bentoml_home``'s model store; yield its base URL once ready.

    Args:
        bentoml_home: BentoML home holding the model (``tests.support.models``).
        port: a free port (the ``port`` fixture).
        workers: API worker processes (``FRAUD_WORKERS``).
        env: extra environment, e.g. ``{"FRAUD_API_KEYS": "k1"}``.
        ready_timeout: seconds to wait for ``/readyz``.
    """
    with served_process(
        bentoml_home, port, workers=workers, env=env, ready_timeout=ready_timeout
    ) as server:
        yield server.base_url


_SCRATCH_MODEL = """
import numpy as np, xgboost as xgb
import _bentoml_impl.frameworks.xgboost as bx
bx.get_pkg_version = lambda name: xgb.__version__  # xgboost-cpu has no 'xgboost' dist metadata
from fraud_contract.artifact import ModelCard, RiskBand, save_model
from fraud_contract.features import MODEL_FEATURES
rng = np.random.default_rng(0)
x = rng.normal(size=(500, len(MODEL_FEATURES))).astype(np.float32)
x[:, 0] = rng.gamma(2, 30, size=500)
y = (x[:, 0] > 120).astype(int)
booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
                    xgb.DMatrix(x, y, feature_names=list(MODEL_FEATURES)), 10)
card = ModelCard(feature_names=list(MODEL_FEATURES), threshold=0.5, threshold_rule="fixture",
                 risk_bands=[RiskBand(name="low", lower=0.0), RiskBand(name="high", lower=0.5)],
                 metrics={"auc": 0.5}, trained_at="2026-01-01T00:00:00Z",
                 training_data_fingerprint="fixture", code_version="fixture")
print(save_model(booster, card))
"""


def tiny_model_tag(bentoml_home: Path) -> str:
    """A small model in ``bentoml_home``: ``train_tiny_model`` once it exists, else a fixture.

    The fixture booster (random data, not the project's training) only bridges the time until
    ``tests/support/models.py`` lands; it runs in a subprocess so the store path is exact.
    """
    try:
        from tests.support.models import train_tiny_model  # noqa: PLC0415
    except ImportError:
        import subprocess  # noqa: PLC0415
        import sys  # noqa: PLC0415

        done = subprocess.run(
            [sys.executable, "-c", _SCRATCH_MODEL],
            env={**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"},
            cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
        return done.stdout.strip().splitlines()[-1]
    return train_tiny_model(bentoml_home)


def load_tiny_model(bentoml_home: Path) -> LoadedModel:
    """A tiny model, loaded in-process exactly as the service loads it (for unit tests)."""
    from bentoml._internal.models import ModelStore  # noqa: PLC0415  (heavy import)

    from service.model import load_model  # noqa: PLC0415

    tag = tiny_model_tag(bentoml_home)
    return load_model(ModelStore(str(bentoml_home / "models")).get(tag), threads=1)
