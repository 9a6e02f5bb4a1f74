"""The BentoML service: ``bentoml serve service.service:FraudScoring``.

* The model is declared on the service (``bentoml.models.BentoModel``), so ``bentoml build``
  packs it into the Bento. It is loaded and warmed up once per process, at import: a missing
  or corrupt model stops the process with exit code 2 and one line naming the tag, before any
  worker starts serving.
* The contract's ``/v1`` routes are a lean ASGI app mounted into the service
  (:mod:`service.http`); single transactions are scored through BentoML's adaptive batching of
  the ``batchable=True`` API :meth:`FraudScoring.score_adaptive` (called in-process; its own
  HTTP route is internal and answers 404 from outside).
* All configuration comes from :class:`service.settings.ServiceSettings` (``FRAUD_*``).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio.to_thread
import bentoml
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from fraud_contract.api import DOCS_PATH, METRICS_PATH, OPENAPI_PATH, ModelInfo
from fraud_contract.schema import Transaction
from service.bentoml_fixes import install_outermost_layer, install_timeout_timer_fix
from service.errors import ApiError
from service.http import FrontDoor, Runtime, ScoringApp, SecurityHeadersMiddleware
from service.logs import LOGGER_NAME, configure_logging
from service.metrics import create_metrics
from service.model import LoadedModel, ModelLoadError, load_from_store
from service.openapi import build_spec
from service.scoring import Scorer
from service.settings import ServiceSettings, get_settings

settings = get_settings()
logger = logging.getLogger(LOGGER_NAME)
install_timeout_timer_fix()

#: The model served, declared so that ``bentoml build`` packs it into the Bento.
MODEL = bentoml.models.BentoModel(settings.model_tag)
#: Route of the batchable API (reachable in-process only; see the module docstring).
ADAPTIVE_ROUTE = "/internal/score-adaptive"
ADAPTIVE_API = "score_adaptive"
#: CPython's GIL switch interval in the worker (see ``FraudScoring.__init__``).
GIL_SWITCH_INTERVAL_S = 0.001
#: One queued single-score request: the transaction and whether reasons were asked for.
ScoreJob = tuple[Transaction, bool]


def _load_or_exit() -> LoadedModel:
    try:
        return load_from_store(MODEL, model_tag=settings.model_tag, threads=settings.model_threads)
    except ModelLoadError as exc:
        print(f"fraud-scoring: cannot serve: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


_LOADED = _load_or_exit()
SCORING_APP = ScoringApp()


def _model_info_bytes(model: LoadedModel, threshold: float) -> bytes:
    card = model.card
    name, _, version = model.tag.partition(":")
    info = ModelInfo.model_validate(
        {
            "tag": model.tag,
            "name": name,
            "version": version,
            "trained_at": card.trained_at,
            "threshold": threshold,
            "model_threshold": card.threshold,
            "threshold_rule": card.threshold_rule,
            "risk_bands": card.risk_bands,
            "metrics": card.metrics,
            "scenario_recall": card.scenario_recall,
            "feature_names": card.feature_names,
            "dataset": card.dataset,
            "code_version": card.code_version,
            "schema": Transaction.model_json_schema(),
        }
    )
    return orjson.dumps(info.model_dump(mode="json", by_alias=True))


_SPEC_CACHE: dict[str, bytes] = {}


async def _openapi(_: Request) -> Response:
    if "spec" not in _SPEC_CACHE:
        spec = build_spec(_as_service().openapi_spec.asdict(), internal_paths={ADAPTIVE_ROUTE})
        _SPEC_CACHE["spec"] = orjson.dumps(spec)
    return Response(_SPEC_CACHE["spec"], media_type="application/json")


async def _swagger(_: Request) -> Response:
    import _bentoml_impl.server as bentoml_server  # noqa: PLC0415

    page = os.path.join(os.path.dirname(bentoml_server.__file__), "main-openapi.html")  # noqa: PTH118, PTH120
    return FileResponse(page)


async def _metrics(_: Request) -> Response:
    """Prometheus exposition of every worker's samples (BentoML's multiprocess client)."""
    from bentoml._internal.configuration.containers import BentoMLContainer  # noqa: PLC0415

    client = BentoMLContainer.metrics_client.get()
    return Response(client.generate_latest(), media_type=client.CONTENT_TYPE_LATEST)


DOCS_APP = Starlette(
    routes=[
        Route(OPENAPI_PATH, _openapi),
        Route(DOCS_PATH, _swagger),
        Route(METRICS_PATH, _metrics),
    ]
)


def _service_config(config: ServiceSettings) -> dict[str, Any]:
    """BentoML configuration derived from the settings (see the README for why)."""
    service_config: dict[str, Any] = {
        "workers": config.workers,
        "traffic": {"timeout": config.request_timeout_s},
        # The /v1 app writes its own JSON access log (FRAUD_ACCESS_LOG); BentoML's text
        # access log would log every request twice.
        "logging": {"access": {"enabled": False}},
        "endpoints": {"livez": "/livez", "readyz": "/readyz"},
        # BentoML's HTTP metrics middleware binds four labelled children per request (~40%
        # of a single score's CPU, measured): the /v1 app records the same families itself
        # (service.metrics) and /metrics is served by the docs app above.
        "metrics": {"enabled": False},
        # No spans on the hot path (no exporter is configured by default anyway).
        "tracing": {"excluded_urls": ["/v1/score", "/livez", "/readyz", "/metrics"]},
    }
    if config.cors_origins:
        service_config["http"] = {
            "cors": {
                "enabled": True,
                "access_control_allow_origins": list(config.cors_origins),
                "access_control_allow_methods": ["GET", "POST", "OPTIONS"],
                "access_control_allow_headers": ["content-type", "x-api-key", "x-request-id"],
                "access_control_max_age": 600,
            }
        }
    return service_config


@bentoml.asgi_app(DOCS_APP, path="/", name="docs")
@bentoml.asgi_app(SCORING_APP, path="/v1", name="scoring")
@bentoml.service(name="fraud_scoring", **_service_config(settings))
class FraudScoring:
    """Credit-card fraud scoring: single, batch and file scoring with explanations."""

    model_ref = MODEL

    def __init__(self) -> None:
        self._ready = False
        self.settings = settings
        configure_logging(
            log_format=settings.log_format,
            level=settings.log_level,
            model_version=_LOADED.tag.partition(":")[2],
        )
        self.model = _LOADED
        self.scorer = Scorer(
            self.model,
            threshold=settings.threshold,
            top_k=settings.reasons_top_k,
            reasons=settings.reasons,
        )
        self.metrics = create_metrics(self.model.tag, self.scorer.threshold, _service_labels())
        # The full request path once (features, contributions, reasons) before readiness.
        self.scorer.score([Transaction.model_validate(_WARM_UP)], explain=[True])
        SCORING_APP.bind(
            Runtime(
                settings=settings,
                scorer=self.scorer,
                metrics=self.metrics,
                model_info=_model_info_bytes(self.model, self.scorer.threshold),
                score_one=_AdaptiveCaller(self.score_jobs),
                api_keys=settings.accepted_api_keys(),
                id_salt=settings.id_hash_salt.get_secret_value().encode(),
            )
        )
        # Everything loaded so far (BentoML, pandas, pyarrow, the model: ~200,000 objects) lives
        # as long as the process: keep it out of the cyclic collector's full passes, which
        # otherwise walk it every few seconds under load (measured 150-230 ms per pass).
        gc.collect()
        gc.freeze()
        # The batch is scored in a worker thread beside the event loop; with CPython's 5 ms
        # default switch interval the loop, busy shedding at 2x load, held the GIL so long
        # that the scoring thread starved (accepted 2,000-3,500 req/s, unsteady); at 1 ms it
        # kept 4,200-4,900 with rejection p99 11-18 ms (make bench's overload plan).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._ready = True
        logger.info(
            "model loaded", extra={"model_tag": self.model.tag, "threshold": self.scorer.threshold}
        )

    def __is_ready__(self) -> bool:
        """Readiness: the model is loaded and the warm-up prediction ran."""
        return self._ready

    @bentoml.api(
        route=ADAPTIVE_ROUTE,
        batchable=True,
        max_batch_size=settings.max_batch_size,
        max_latency_ms=settings.max_latency_ms,
    )
    async def score_adaptive(self, transactions: list[Transaction]) -> list[dict[str, Any]]:
        """Score an adaptive batch of validated transactions in one model call."""
        return await self.score_jobs([(transaction, False) for transaction in transactions])

    async def score_jobs(self, jobs: Sequence[ScoreJob]) -> list[dict[str, Any]]:
        """Score an adaptive batch of (transaction, explain) jobs in one model call."""
        transactions = [job[0] for job in jobs]
        explain = [job[1] for job in jobs] if any(job[1] for job in jobs) else None
        # In a worker thread (BentoML's dispatcher keeps one batch in flight, so one thread):
        # the event loop keeps parsing and shedding while XGBoost's C code runs without the GIL.
        results, timings = await anyio.to_thread.run_sync(
            self.scorer.score_timed, transactions, explain
        )
        self.metrics.observe_results("single", results, timings)
        return results


def _service_labels() -> tuple[str, str, str]:
    """BentoML's service_name, service_version and runner_name labels of this worker."""
    from bentoml._internal.context import server_context  # noqa: PLC0415

    return (
        str(server_context.bento_name),
        str(server_context.bento_version),
        str(server_context.service_name),
    )


def _as_service() -> Any:
    """The decorated class is a ``bentoml.Service`` at run time (the type checker sees a class)."""
    return FraudScoring


_WARM_UP = {
    "timestamp": "2018-08-09T14:23:05",
    "customer_id": "warm-up",
    "terminal_id": "warm-up",
    "amount": 1.0,
}


class _AdaptiveCaller:
    """Submits one transaction to BentoML's dispatcher of :meth:`FraudScoring.score_adaptive`.

    BentoML creates that dispatcher (a ``CorkDispatcher``) in its app factory; the factory is
    found once, through the API's route on the main app (``scope["app"]``). BentoML's own
    ``batch_infer`` re-binds the API method (``inspect.signature``) and re-wraps the dispatcher
    callback on every request (~5% of the single-score path in py-spy), so the callback is
    wrapped once here instead; the whole batch is scored in one call. Each queued job is a
    ``(transaction, explain)`` pair (BentoML counts any non-list item as one row). Rows per
    model call are recorded as ``fraud_model_batch_size_rows{endpoint="single"}``.
    """

    def __init__(
        self, score_jobs: Callable[[Sequence[ScoreJob]], Awaitable[list[dict[str, Any]]]]
    ) -> None:
        self._score_jobs = score_jobs
        self._submit: Callable[[ScoreJob], Awaitable[Any]] | None = None

    def resolve(self, app: Any) -> None:
        """Find BentoML's app factory for this service and wrap its dispatcher once."""
        for route in getattr(app, "routes", []):
            if getattr(route, "name", None) == ADAPTIVE_API:
                factory = route.endpoint.func.__self__
                break
        else:
            raise RuntimeError("BentoML route of the batchable API not found")
        self._submit = factory.dispatchers[ADAPTIVE_API](self._score_jobs)

    async def __call__(self, transaction: Transaction, explain: bool = False) -> dict[str, Any]:
        """Score one transaction in the next adaptive batch (TreeSHAP reasons if ``explain``)."""
        if self._submit is None:
            raise RuntimeError("adaptive batcher not resolved")
        try:
            result: dict[str, Any] = await self._submit((transaction, explain))
        except bentoml.exceptions.ServiceUnavailable:
            raise ApiError(
                503,
                "overloaded",
                "The scoring queue is full; retry shortly.",
                reason="overloaded",
                headers={"retry-after": "1"},
            ) from None
        return result


_as_service().add_asgi_middleware(
    SecurityHeadersMiddleware,
    internal_paths=[ADAPTIVE_ROUTE],
    # With CORS configured, /v1 requests must pass BentoML's CORS middleware (further in).
    direct_app=None if settings.cors_origins else SCORING_APP,
)
if not settings.cors_origins:  # (answers from out there would lack the CORS headers)
    install_outermost_layer(_as_service(), lambda app: FrontDoor(app, SCORING_APP))
