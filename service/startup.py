"""What a worker does when it starts, one function per step (called by :mod:`service.service`)."""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from service import bentoml_bridge
from service.logs import LOGGER_NAME, configure_logging
from service.metrics import create_metrics
from service.model import ModelLoadError, load_from_store
from service.runtime import Runtime, build_runtime
from service.settings import ServiceSettings, SettingsError

if TYPE_CHECKING:
    from service.app import FrontApp
    from service.model import LoadedModel

logger = logging.getLogger(LOGGER_NAME)

#: CPython's GIL switch interval in the worker (see :func:`tune_process`).
GIL_SWITCH_INTERVAL_S = 0.001


def fail(reason: str) -> None:
    """Stop the process with exit code 2 and one line saying why (no traceback)."""
    print(f"fraud-scoring: cannot serve: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def check_settings(settings: ServiceSettings) -> None:
    """Refuse settings that cannot serve (exit 2 with one line naming the variable)."""
    try:
        settings.id_hasher()
    except SettingsError as exc:
        fail(str(exc))


def load_model_or_exit(model_ref: Any, settings: ServiceSettings) -> LoadedModel:
    """The declared model, loaded and warmed up; exit 2 with one line if it cannot serve."""
    try:
        return load_from_store(
            model_ref, model_tag=settings.model_tag, threads=settings.model_threads
        )
    except ModelLoadError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits


def tune_process() -> None:
    """Process-wide tuning for a scoring worker, once everything is loaded.

    * ``gc.freeze``: the objects loaded so far (BentoML, pyarrow, the model) live as long as
      the process; keeping them out of the cyclic collector's full passes removes the latency
      spikes those passes caused under load.
    * a 1 ms GIL switch interval: the batch is scored in a worker thread beside the event
      loop; with CPython's 5 ms default the loop, busy shedding at overload, starved the
      scoring thread (docs/performance.md).
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def start_worker(settings: ServiceSettings, model: LoadedModel) -> Runtime:
    """Logging, metrics and the runtime of one worker for an already loaded ``model``."""
    configure_logging(
        log_format=settings.log_format,
        level=settings.log_level,
        model_version=model.tag.partition(":")[2],
    )
    if settings.id_hash_key is None and settings.dev_mode:
        logger.warning("FRAUD_DEV_MODE: card ids in logs are hashed with a throw-away key")
    threshold = model.card.threshold if settings.threshold is None else settings.threshold
    metrics = create_metrics(model.tag, threshold, bentoml_bridge.server_labels())
    ledger = open_ledger(metrics)
    runtime = build_runtime(settings, model, metrics, ledger=ledger)
    logger.info(
        "model loaded", extra={"model_tag": model.tag, "threshold": runtime.scorer.threshold}
    )
    return runtime


#: Seconds between updates of the ledger's spool-depth gauge.
LEDGER_GAUGE_INTERVAL_S = 5.0


def open_ledger(metrics: Any) -> Any:
    """The decision ledger of this worker when ``FRAUD_DATABASE_URL`` is set, else None.

    Each worker spools into its own directory under ``FRAUD_LEDGER_SPOOL_DIR`` (one writer
    per spool); the writer thread starts at once and does not wait for PostgreSQL. The
    ledger is closed (drained for a few seconds) when the process exits.
    """
    from service.ledger import Ledger, LedgerSettings  # noqa: PLC0415  (psycopg)

    config = LedgerSettings()
    if config.database_url is None:
        return None
    spool_dir = config.ledger_spool_dir / f"worker-{bentoml_bridge.worker_index()}"
    ledger = Ledger(config.model_copy(update={"ledger_spool_dir": spool_dir}))
    ledger.start()
    atexit.register(ledger.close)

    def report() -> None:
        while True:
            metrics.observe_ledger(ledger.stats())
            time.sleep(LEDGER_GAUGE_INTERVAL_S)

    threading.Thread(target=report, name="ledger-gauge", daemon=True).start()
    logger.info("decision ledger on", extra={"spool_dir": str(spool_dir)})
    return ledger


def drain_on_sigterm(front: FrontApp, seconds: float) -> None:
    """On SIGTERM, drain for ``seconds`` before the server's own shutdown runs.

    Uvicorn closes idle keep-alive connections the moment it shuts down, so a client
    reusing one at that instant sees a reset. While draining, every response says
    ``Connection: close`` and ``/readyz`` answers 503; afterwards the handler that was
    installed before (uvicorn's) runs as usual. Call from within the worker's event loop,
    after the server installed its signal handlers (the service instance's constructor).
    """
    previous = signal.getsignal(signal.SIGTERM)
    if seconds <= 0 or not callable(previous):
        return
    loop = asyncio.get_running_loop()

    def shut_down(signum: int, frame: FrameType | None) -> None:
        assert callable(previous)
        previous(signum, frame)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if front.draining:
            return
        front.drain()
        logger.info("SIGTERM: draining before shutdown", extra={"drain_s": seconds})
        loop.call_soon_threadsafe(loop.call_later, seconds, shut_down, signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
