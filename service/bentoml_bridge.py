"""Every use of a BentoML internal, in one place (BentoML 1.4; checked by
``tests/unit/test_service_bentoml_bridge.py``, which fails with a one-line reason when an
assumption below stops holding after an upgrade).

What the service relies on, and where BentoML does it:

1. **Adaptive batching**: :class:`bentoml._internal.marshal.dispatcher.CorkDispatcher`, the
   algorithm behind ``@bentoml.api(batchable=True)``. The service creates one per worker
   itself instead of declaring a batchable API: BentoML's API route would re-bind and re-wrap
   the callback on every request and expose an internal route in the schema. Relied on: the
   constructor's keyword arguments, ``dispatcher(callback)`` returning ``submit(job)``, one
   job per ``get_batch_size == 1`` item, a job shed by the latency budget answered by
   ``fallback()``.
2. **The worker's app**: ``_bentoml_impl/worker/service.py`` builds the ASGI app it serves
   with ``service.to_asgi(is_main=...)`` (``_bentoml_sdk/service/factory.py``). That method
   is wrapped for the project's service object only, so the worker serves
   the project's front app (:mod:`service.app`) with BentoML's app behind it for the
   lifespan (which creates the service instance).
3. **xgboost-cpu**: ``_bentoml_impl.frameworks.xgboost.get_pkg_version`` asks for the
   ``xgboost`` distribution, which the CPU-only wheel names ``xgboost-cpu``; training wraps
   it (:func:`allow_xgboost_cpu_wheel`) so saving a model records the version.
4. **Multi-process metrics**: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` in every worker
   before the service module is imported; ``/metrics`` aggregates that directory with
   prometheus_client's public multiprocess collector (:func:`metrics_exposition`).
5. **Model store by path** (tests and tools): ``bentoml._internal.models.ModelStore`` opens a
   store directory other than ``$BENTOML_HOME`` (:func:`stored_model`).
6. **Swagger UI assets**: BentoML ships Swagger UI's files in
   ``bentoml/_internal/server/static_content``; ``/docs`` serves them from there with a page
   of the project's own (BentoML's page loads Google Tag Manager).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")

#: The environment variable BentoML points at each worker's metrics directory.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Swagger UI files :func:`swagger_assets_dir` must contain.
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js")


def adaptive_batcher(
    score_batch: Callable[[Sequence[Job]], Awaitable[list[Result]]],
    *,
    max_batch_size: int,
    max_latency_ms: int,
    on_shed: Callable[[], Any],
) -> Callable[[Job], Awaitable[Result]]:
    """BentoML's adaptive batching around ``score_batch``; returns ``submit(job) -> result``.

    Jobs submitted while a batch is being scored are queued and scored together in the next
    call; a job that would miss ``max_latency_ms`` is shed and ``on_shed()`` raises (or
    returns) its answer. Must be called with a running event loop available to ``submit``.
    """
    from bentoml._internal.marshal.dispatcher import CorkDispatcher  # noqa: PLC0415

    dispatcher: Any = CorkDispatcher(
        max_latency_in_ms=max_latency_ms,
        max_batch_size=max_batch_size,
        fallback=on_shed,
        get_batch_size=_one,
    )
    submit: Callable[[Job], Awaitable[Result]] = dispatcher(score_batch)
    return submit


def _one(_: object) -> int:
    return 1


def serve_front_app(service: Any, front: Callable[[Any], Any]) -> None:
    """Make BentoML's worker serve ``front(bentoml_app)`` for ``service``.

    ``Service.to_asgi`` is wrapped on the class (the attrs class has slots, so not on the
    object); other services' apps and ``bentoml build`` are left as they are. Idempotent.
    """
    service_class = type(service)
    original = service_class.to_asgi
    if getattr(original, "_fraud_front_for", None) is service:
        return

    def to_asgi(self: Any, is_main: bool = True) -> Any:
        app = original(self, is_main=is_main)
        return front(app) if self is service else app

    to_asgi._fraud_front_for = service  # type: ignore[attr-defined]
    service_class.to_asgi = to_asgi


def allow_xgboost_cpu_wheel() -> None:
    """Let BentoML record the XGBoost version when the ``xgboost-cpu`` wheel is installed.

    BentoML asks for the ``xgboost`` distribution's metadata, which the CPU-only wheel names
    ``xgboost-cpu``; the imported module's own version is the same number. Idempotent.
    """
    import _bentoml_impl.frameworks.xgboost as bentoml_xgboost  # noqa: PLC0415
    import xgboost  # noqa: PLC0415

    original = bentoml_xgboost.get_pkg_version
    if getattr(original, "_fraud_cpu_wheel", False):
        return

    def version(name: str) -> str:
        try:
            return str(original(name))
        except Exception:
            if name == "xgboost":
                return str(xgboost.__version__)
            raise

    version._fraud_cpu_wheel = True  # type: ignore[attr-defined]
    bentoml_xgboost.get_pkg_version = version


def metrics_exposition() -> tuple[bytes, str]:
    """Prometheus text of every worker's samples (or this process's when not under BentoML)."""
    import prometheus_client  # noqa: PLC0415
    from prometheus_client import multiprocess  # noqa: PLC0415

    if os.environ.get(MULTIPROC_ENV):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST
    return prometheus_client.generate_latest(), prometheus_client.CONTENT_TYPE_LATEST


def swagger_assets_dir() -> Path:
    """The directory of Swagger UI's JS/CSS files inside the installed BentoML package."""
    from bentoml._internal import server  # noqa: PLC0415

    return Path(server.__file__).parent / "static_content"


def worker_index() -> int:
    """This worker's index (1, 2, ...) from BentoML's public server context; 0 outside it."""
    import bentoml  # noqa: PLC0415

    return int(getattr(bentoml.server_context, "worker_index", None) or 0)


def server_labels() -> tuple[str, str, str]:
    """BentoML's service_name, service_version and runner_name labels of this worker."""
    import bentoml  # noqa: PLC0415

    context = bentoml.server_context
    return (str(context.bento_name), str(context.bento_version), str(context.service_name))


def stored_model(models_dir: Path, tag: str) -> Any:
    """The ``bentoml.Model`` ``tag`` from the model store directory ``models_dir``."""
    from bentoml._internal.models import ModelStore  # noqa: PLC0415

    return ModelStore(str(models_dir)).get(tag)
