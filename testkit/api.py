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

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fraud_contract.api import READY_PATH
from testkit.process import ServerProcess, python_command, running_server
from testkit.tools import REPO_ROOT

if TYPE_CHECKING:
    from service.model import LoadedModel

#: FRAUD_ID_HASH_KEY of every served test API (a test value, never a real secret).
TEST_HASH_KEY = "test-hash-key-0123456789abcdef-0123"
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
        # Production mode (no FRAUD_DEV_MODE): the service needs a hash key.
        "FRAUD_ID_HASH_KEY": TEST_HASH_KEY,
        # Tests stop servers often; the drain has its own test (test_shutdown.py).
        "FRAUD_SHUTDOWN_DRAIN_S": "0",
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
        bentoml_home: BentoML home holding the model (``testkit.models``).
        port: a free port (the ``port`` fixture).
        workers: API worker processes (``FRAUD_WORKERS``).
        env: extra environment, e.g. ``{"FRAUD_API_KEYS": "k1"}``.
        ready_timeout: seconds to wait for ``/readyz``.
    """
    with served_process(
        bentoml_home, port, workers=workers, env=env, ready_timeout=ready_timeout
    ) as server:
        yield server.base_url


_TRAINED: dict[str, tuple[Path, str]] = {}


def tiny_model_tag(bentoml_home: Path) -> str:
    """The project's tiny model (real training pipeline, ``test`` preset) in ``bentoml_home``.

    Trained once per test process and copied into each requested home: training is the slow
    part of every fixture that needs a model.
    """
    from testkit.models import train_tiny_model  # noqa: PLC0415

    if "tiny" not in _TRAINED:
        source = Path(tempfile.mkdtemp(prefix="tiny-model-"))
        atexit.register(shutil.rmtree, source, True)
        _TRAINED["tiny"] = (source, train_tiny_model(source))
    source, tag = _TRAINED["tiny"]
    shutil.copytree(source / "models", bentoml_home / "models", dirs_exist_ok=True)
    return tag


def load_tiny_model(bentoml_home: Path) -> LoadedModel:
    """A tiny model, loaded in-process exactly as the service loads it (for unit tests)."""
    from service.bentoml_bridge import stored_model  # noqa: PLC0415  (heavy import)
    from service.model import load_model  # noqa: PLC0415

    tag = tiny_model_tag(bentoml_home)
    return load_model(stored_model(bentoml_home / "models", tag), threads=1)
