"""The route table and its handlers: one function per route, each returning a :class:`Reply`.

Handlers raise :mod:`service.errors` exceptions for every answer other than 200; the front
app (:mod:`service.app`) renders them. Which routes need the API key, count against
admission and carry the request metrics is declared here, per route, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import orjson

from fraud_contract.api import (
    DOCS_PATH,
    EXPLAIN_PARAM,
    LIVE_PATH,
    METRICS_PATH,
    MODEL_PATH,
    OPENAPI_PATH,
    READY_PATH,
    SCORE_BATCH_PATH,
    SCORE_FILE_PATH,
    SCORE_PATH,
)
from service import bentoml_bridge, decisions, docs_pages
from service.asgi import Reply, Request, check_json_content_type, read_body, replay
from service.batch_response import score_batch_body
from service.enrichment import annotate
from service.errors import InvalidInput, NotReady, Timeout, UnsupportedMedia
from service.json_input import decode_transaction, decode_transactions
from service.logs import LOGGER_NAME

if TYPE_CHECKING:
    from service.runtime import Runtime
    from service.scoring import StepTimes
    from service.settings import ServiceSettings

logger = logging.getLogger(LOGGER_NAME)

#: ReDoc's page (the OpenAPI document rendered by ReDoc, served from the package).
REDOC_PATH = "/redoc"


Handler = Callable[["Runtime | None", Request], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    """One path: its method, handler and the policies that apply to it."""

    method: str
    handler: Handler
    #: Metric label of the endpoint (``single``, ``batch``, ...) for /v1 routes, else None.
    endpoint: str | None = None
    #: Needs the model loaded (503 not_ready before).
    needs_model: bool = True
    #: Needs the API key (when keys are configured).
    needs_key: bool = True
    #: Counts against the per-worker admission limit.
    admitted: bool = True
    #: Largest body this route reads, by the settings' name (None: no body).
    body_limit: str | None = None


async def score(runtime: Runtime | None, request: Request) -> Reply:
    """``POST /v1/score``: one transaction through the adaptive batcher."""
    assert runtime is not None
    explain = explain_flag(request.query)
    transaction = decode_transaction(request.body or b"")
    if runtime.history is not None:
        runtime.history.check([transaction])
    result = await runtime.score_one(transaction, explain)
    if runtime.settings.access_log:
        logger.info(
            "scored",
            extra={
                "customer": runtime.hasher(transaction.customer_id),
                "transaction_id": transaction.transaction_id,
                "is_fraud": result["is_fraud"],
            },
        )
    return Reply(orjson.dumps(result))


async def score_batch(runtime: Runtime | None, request: Request) -> Reply:
    """``POST /v1/score/batch``: up to the contract's limit of transactions in one model call."""
    assert runtime is not None
    explain = explain_flag(request.query)
    body = request.body or b""

    def work() -> bytes:
        if runtime.history is not None or runtime.ledger is not None:
            results, timings = _score_batch_stateful(runtime, body, explain, request.request_id)
            runtime.metrics.observe_results("batch", results, timings)
            return orjson.dumps({"model_tag": runtime.scorer.model_tag, "results": results})
        return score_batch_body(runtime.scorer, runtime.metrics, body, explain)

    # Parsing and validating a large batch is CPU work: off the event loop.
    return Reply(await anyio.to_thread.run_sync(work))


def _score_batch_stateful(
    runtime: Runtime, body: bytes, explain: bool, request_id: str
) -> tuple[list[dict[str, Any]], StepTimes]:
    """A batch scored with the history store and/or recorded in the ledger (needs the ids)."""
    transactions = decode_transactions(body)
    states = None
    if runtime.history is not None:
        runtime.history.check(transactions, prefix="transactions.")
        transactions, states = runtime.history.enrich("batch", transactions)
    flags = [True] * len(transactions) if explain else None
    results, timings = runtime.scorer.score_timed(transactions, flags)
    if states is not None:
        annotate(results, transactions, states, flags)
    if runtime.ledger is not None:
        runtime.ledger.record(results, transactions, [request_id] * len(results), states)
    return results, timings


async def score_file(runtime: Runtime | None, request: Request) -> Reply:
    """``POST /v1/score/file``: a CSV or Parquet upload scored and sent back in its format."""
    assert runtime is not None
    from service.tables import (  # noqa: PLC0415
        AbandonedError,
        FileJob,
        ScoredTable,
        detect_format,
        output_filename,
        release_memory,
        score_table,
    )
    from service.uploads import read_file_field  # noqa: PLC0415

    content_type = request.headers.get(b"content-type", b"").decode("latin-1")
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMedia(
            "Upload the file as multipart/form-data with the field 'file'.", content_type
        )
    settings = runtime.settings
    limit = settings.max_file_bytes
    upload = await read_file_field(replay(request.body or b""), content_type, limit)
    # The thread cannot be killed: the job stops at its next check once the request is gone
    # (its timeout, a shutdown) or, should that signal not come, at its own deadline.
    job = FileJob(deadline_s=settings.request_timeout_s)

    def work() -> ScoredTable | None:
        started = time.perf_counter()
        try:
            scored = score_table(
                upload.content,
                filename=upload.filename,
                content_type=upload.content_type,
                scorer=runtime.scorer,
                max_rows=settings.max_file_rows,
                limits=settings.file_limits(),
                neutralise_formulas=settings.csv_neutralise_formulas,
                job=job,
                history=None if runtime.history is None else runtime.history.store,
                with_columns=runtime.ledger is not None,
            )
        except AbandonedError as stop:
            logger.warning(
                "file job abandoned",
                extra={
                    "path": request.path,
                    "stage": stop.stage,
                    "rows_done": job.rows,
                    "run_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            release_memory()  # here the job's frames and tables are gone
            return None
        if runtime.ledger is not None and scored.columns is not None:
            runtime.ledger.record_columns(
                scored.columns,
                scored.decisions,
                threshold=runtime.scorer.threshold,
                model_tag=runtime.scorer.model_tag,
                request_id=request.request_id,
                history_states=scored.history,
            )
        return scored

    try:
        scored = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    finally:
        job.cancel()  # a no-op once the job has finished
    if scored is None:  # its own deadline passed before the request's timeout fired
        raise Timeout
    runtime.metrics.observe_batch("file", scored.rows)
    runtime.metrics.observe_scores("file", scored.probabilities, scored.is_fraud)
    if scored.history is not None:
        runtime.metrics.observe_history("file", scored.history.tolist())
    table_format = detect_format(upload.filename, upload.content_type, upload.content[:4])
    disposition = f'attachment; filename="{output_filename(upload.filename, table_format)}"'
    return Reply(
        scored.content,
        content_type=scored.media_type.encode(),
        headers=((b"content-disposition", disposition.encode()),),
    )


async def model_info(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /v1/model``: the served model's card."""
    assert runtime is not None
    return Reply(runtime.model_info)


async def livez(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /livez``: the process answers."""
    return Reply(b"\n", content_type=b"text/plain; charset=utf-8")


async def readyz(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /readyz``: the model is loaded and warmed up."""
    if runtime is None:
        raise NotReady
    return Reply(b"\n", content_type=b"text/plain; charset=utf-8")


async def metrics(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /metrics``: Prometheus exposition of every worker."""
    body, content_type = bentoml_bridge.metrics_exposition()
    return Reply(body, content_type=content_type.encode())


async def openapi(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /docs.json``: the OpenAPI document."""
    return Reply(docs_pages.openapi_document())


async def swagger(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /docs`` (and ``/``): Swagger UI, every asset served from this process."""
    return Reply(
        docs_pages.SWAGGER_PAGE,
        content_type=b"text/html; charset=utf-8",
        headers=((b"content-security-policy", docs_pages.PAGE_POLICY),),
    )


async def redoc(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /redoc``: the OpenAPI document rendered by ReDoc, every asset from this process."""
    return Reply(
        docs_pages.REDOC_PAGE,
        content_type=b"text/html; charset=utf-8",
        headers=((b"content-security-policy", docs_pages.REDOC_POLICY),),
    )


async def swagger_asset(runtime: Runtime | None, request: Request) -> Reply:
    """``GET /docs/assets/<file>``: Swagger UI's and ReDoc's script and style files."""
    body, content_type = docs_pages.asset(request.path.rsplit("/", 1)[-1])
    return Reply(body, content_type=content_type)


def build_routes(settings: ServiceSettings) -> dict[str, Route]:
    """The route table under ``settings`` (the docs and ``/metrics`` may be off or keyed)."""
    routes: dict[str, Route] = {
        SCORE_PATH: Route("POST", score, "single", body_limit="max_body_bytes"),
        SCORE_BATCH_PATH: Route("POST", score_batch, "batch", body_limit="max_body_bytes"),
        SCORE_FILE_PATH: Route("POST", score_file, "file", body_limit="max_file_bytes"),
        MODEL_PATH: Route("GET", model_info, "model"),
        decisions.ALERTS_PATH: Route("GET", decisions.list_alerts, "alerts"),
        decisions.LABELS_PATH: Route(
            "POST", decisions.post_labels, "labels", body_limit="max_body_bytes"
        ),
        decisions.DECISIONS_PREFIX: Route("GET", decisions.get_decision, "decision"),
        decisions.DECISIONS_PATH: Route("GET", decisions.list_decisions, "decisions"),
        decisions.LABELS_FILE_PATH: Route(
            "POST", decisions.post_label_file, "labels_file", body_limit="max_file_bytes"
        ),
        LIVE_PATH: Route("GET", livez, needs_model=False, needs_key=False, admitted=False),
        READY_PATH: Route("GET", readyz, needs_model=False, needs_key=False, admitted=False),
    }
    if settings.metrics_access != "off":
        routes[METRICS_PATH] = Route(
            "GET",
            metrics,
            needs_model=False,
            needs_key=settings.metrics_access == "key",
            admitted=False,
        )
    if settings.docs_access != "off":
        keyed = settings.docs_access == "key"
        page = Route("GET", swagger, needs_model=False, needs_key=keyed, admitted=False)
        routes["/"] = page
        routes[DOCS_PATH] = page
        routes[REDOC_PATH] = Route("GET", redoc, needs_model=False, needs_key=keyed, admitted=False)
        routes[OPENAPI_PATH] = Route(
            "GET", openapi, needs_model=False, needs_key=keyed, admitted=False
        )
        asset = Route("GET", swagger_asset, needs_model=False, needs_key=False, admitted=False)
        for name in docs_pages.ASSET_NAMES:
            routes[f"{docs_pages.ASSETS_PREFIX}/{name}"] = asset
    return routes


async def read_request_body(request: Request, route: Route, settings: ServiceSettings) -> None:
    """Read the body a route needs (JSON routes check their content type first)."""
    if route.body_limit is None:
        return
    if route.endpoint in ("single", "batch"):
        check_json_content_type(request.headers)
    await read_body(
        request, limit=getattr(settings, route.body_limit), deadline_s=settings.body_timeout_s
    )


_EXPLAIN = EXPLAIN_PARAM.encode()
_TRUE = frozenset({b"true", b"1", b"yes"})
_FALSE = frozenset({b"false", b"0", b"no", b""})


def explain_flag(query: bytes) -> bool:
    """The ``explain`` query parameter: TreeSHAP reasons for every result of this request.

    Without it, the ``FRAUD_REASONS`` policy decides (by default: flagged results only).
    Other query parameters are ignored.
    """
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name != _EXPLAIN:
            continue
        value = value.lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise InvalidInput(
            "The query parameter 'explain' must be true or false.",
            [{"field": "explain", "reason": "must be true or false"}],
            reason="invalid_query",
        )
    return False
