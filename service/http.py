"""The ``/v1`` API as a lean ASGI app mounted into the BentoML service.

Why a mounted ASGI app: BentoML's generic API path (IO-model validation, serde, response
building) costs more per request than scoring one transaction. This app parses and validates
each body exactly once with the contract's pydantic model (in Rust), serialises with orjson,
and hands single transactions to the BentoML adaptive batcher of the service's
``batchable=True`` API. Auth, body limits, request ids and the contract's error bodies are
handled here; security headers for every route by :class:`SecurityHeadersMiddleware`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import orjson
from pydantic import ValidationError

from fraud_contract.api import (
    API_KEY_HEADER,
    EXPLAIN_PARAM,
    MODEL_PATH,
    REQUEST_ID_HEADER,
    SCORE_BATCH_PATH,
    SCORE_FILE_PATH,
    SCORE_PATH,
    BatchRequest,
)
from fraud_contract.schema import Transaction
from service.errors import ApiError, from_validation_error
from service.logs import LOGGER_NAME, hash_id, request_id_var

if TYPE_CHECKING:
    from service.metrics import ServiceMetrics
    from service.scoring import Scorer
    from service.settings import ServiceSettings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

logger = logging.getLogger(LOGGER_NAME)

_JSON = b"application/json"
_API_KEY = API_KEY_HEADER.lower().encode()
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
_SAFE_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
_METHODS: dict[str, str] = {
    SCORE_PATH: "POST",
    SCORE_BATCH_PATH: "POST",
    SCORE_FILE_PATH: "POST",
    MODEL_PATH: "GET",
}
_ENDPOINTS = {
    SCORE_PATH: "single",
    SCORE_BATCH_PATH: "batch",
    SCORE_FILE_PATH: "file",
    MODEL_PATH: "model",
}


@dataclass
class Runtime:
    """What the app needs from the live service instance (bound once the model is loaded)."""

    settings: ServiceSettings
    scorer: Scorer
    metrics: ServiceMetrics
    model_info: bytes
    #: Score one transaction through BentoML's adaptive batcher (with reasons if asked).
    score_one: Callable[[Transaction, bool], Awaitable[dict[str, Any]]]
    api_keys: tuple[bytes, ...] = ()
    id_salt: bytes = b""
    in_flight: int = 0
    resolved: bool = False

    @property
    def full(self) -> bool:
        """Admission control: as many ``/v1`` requests in flight as the settings allow."""
        return self.in_flight >= self.settings.max_concurrency


class ScoringApp:
    """Raw ASGI app for the contract's ``/v1`` routes."""

    def __init__(self) -> None:
        self.runtime: Runtime | None = None

    def bind(self, runtime: Runtime) -> None:
        """Attach the loaded model and settings (called by the service instance)."""
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route, authenticate, limit, handle; every failure becomes a contract error body."""
        if scope["type"] != "http":
            return
        runtime = self.runtime
        headers = dict(scope["headers"])
        request_id = _request_id(headers.get(_REQUEST_ID))
        token = request_id_var.set(request_id)
        path = scope["path"]
        endpoint = _ENDPOINTS.get(path, "unknown")
        route = path if path in _ENDPOINTS else "other"
        started = time.perf_counter()
        if runtime is not None:
            runtime.metrics.request_started(route)
        try:
            if runtime is None:
                raise ApiError(503, "not_ready", "The model is not loaded yet.")
            if not runtime.resolved:
                # The adaptive batcher lives in BentoML's app; find it once via the main app.
                resolve = getattr(runtime.score_one, "resolve", None)
                if resolve is not None:
                    resolve(scope.get("app"))
                runtime.resolved = True
            if runtime.full:
                raise _overloaded()
            runtime.in_flight += 1
            try:
                status, body, content_type, extra = await self._handle(
                    runtime, scope, receive, headers, path
                )
            finally:
                runtime.in_flight -= 1
        except asyncio.CancelledError:
            # Cancelled by BentoML's timeout middleware (which answers 504) or at shutdown:
            # still close the request in the metrics, or the in-progress gauge would drift.
            if runtime is not None:
                runtime.metrics.request_finished(route, 504, time.perf_counter() - started)
            request_id_var.reset(token)
            raise
        except ApiError as exc:
            await _answer_error(send, exc, runtime, request_id, (path, endpoint, route), started)
            if exc.reason != "overloaded":
                logger.warning(
                    "request rejected",
                    extra={
                        "path": path,
                        "status": exc.status,
                        "error": exc.code,
                        "fields": [e["field"] for e in exc.errors[:10]],
                    },
                )
            request_id_var.reset(token)
            return
        except Exception:
            logger.exception("unhandled error", extra={"path": path})
            await _respond(
                send,
                500,
                body=_INTERNAL_ERROR,
                content_type=_JSON,
                request_id=request_id,
                extra={},
            )
            if runtime is not None:
                runtime.metrics.request_finished(route, 500, time.perf_counter() - started)
            request_id_var.reset(token)
            return
        await _respond(
            send,
            status,
            body=body,
            content_type=content_type,
            request_id=request_id,
            extra=extra,
        )
        elapsed = time.perf_counter() - started
        runtime.metrics.request_finished(route, status, elapsed)
        if runtime.settings.access_log:
            logger.info(
                "request",
                extra={
                    "path": path,
                    "status": status,
                    "bytes": len(body),
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
        request_id_var.reset(token)

    async def _handle(
        self,
        runtime: Runtime,
        scope: Scope,
        receive: Receive,
        headers: dict[bytes, bytes],
        path: str,
    ) -> tuple[int, bytes, bytes, dict[str, str]]:
        expected = _METHODS.get(path)
        if expected is None:
            raise ApiError(404, "not_found", f"No route {path}.", reason="not_found")
        if scope["method"] != expected:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{path} accepts {expected} only.",
                reason="method",
                headers={"allow": expected},
            )
        _authenticate(runtime, headers)
        if path == SCORE_PATH:
            explain = _explain_flag(scope.get("query_string", b""))
            body = await _read_json_body(receive, headers, runtime.settings.max_body_bytes)
            try:
                transaction = Transaction.model_validate_json(body)
            except ValidationError as exc:
                raise from_validation_error(exc) from None
            result = await runtime.score_one(transaction, explain)
            if runtime.settings.access_log:
                logger.info(
                    "scored",
                    extra={
                        "customer": hash_id(transaction.customer_id, runtime.id_salt),
                        "transaction_id": transaction.transaction_id,
                        "is_fraud": result["is_fraud"],
                    },
                )
            return 200, orjson.dumps(result), _JSON, {}
        if path == SCORE_BATCH_PATH:
            explain = _explain_flag(scope.get("query_string", b""))
            body = await _read_json_body(receive, headers, runtime.settings.max_body_bytes)
            try:
                batch = BatchRequest.model_validate_json(body)
            except ValidationError as exc:
                raise from_validation_error(exc) from None
            results = await anyio.to_thread.run_sync(
                _score_and_observe, runtime, batch.transactions, "batch", explain
            )
            payload = {"model_tag": runtime.scorer.model_tag, "results": results}
            return 200, orjson.dumps(payload), _JSON, {}
        if path == SCORE_FILE_PATH:
            return await _score_file(runtime, receive, headers)
        return 200, runtime.model_info, _JSON, {}


def _overloaded() -> ApiError:
    return ApiError(
        503,
        "overloaded",
        "Too many requests in flight; retry shortly.",
        reason="overloaded",
        headers={"retry-after": "1"},
    )


async def _answer_error(  # noqa: PLR0917
    send: Send,
    exc: ApiError,
    runtime: Runtime | None,
    request_id: str,
    names: tuple[str, str, str],
    started: float,
    more_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send a contract error body; count it (``names``: path, endpoint and route labels)."""
    path, endpoint, route = names
    await _respond(
        send,
        exc.status,
        body=exc.body(),
        content_type=_JSON,
        request_id=request_id,
        extra=exc.headers,
        more_headers=more_headers,
    )
    if runtime is not None:
        runtime.metrics.reject(endpoint, exc.reason)
        runtime.metrics.request_finished(route, exc.status, time.perf_counter() - started)
    if exc.reason == "overloaded":
        _SHED_LOG.count(path)


class _ShedLog:
    """One log line per interval for load shedding, not one per shed request.

    Under overload a line per 503 would add work exactly when the worker has none to spare;
    the counts reach the logs with the next shed request after the interval, and
    ``fraud_input_rejections_total{reason="overloaded"}`` counts each one as it happens.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.shed: dict[str, int] = {}
        self.since = time.monotonic()

    def count(self, path: str) -> None:
        """Count one shed request; log the counts when the interval has passed."""
        self.shed[path] = self.shed.get(path, 0) + 1
        now = time.monotonic()
        if now - self.since >= self.interval_s:
            logger.warning(
                "requests shed (503 overloaded)",
                extra={"shed": self.shed, "interval_s": round(now - self.since, 3)},
            )
            self.shed = {}
            self.since = now


_SHED_LOG = _ShedLog()


def _score_and_observe(
    runtime: Runtime, transactions: Sequence[Transaction], endpoint: str, explain: bool
) -> list[dict[str, Any]]:
    """Score in one model call and record the metrics (runs in a worker thread)."""
    flags = [True] * len(transactions) if explain else None
    results, timings = runtime.scorer.score_timed(transactions, flags)
    runtime.metrics.observe_results(endpoint, results, timings)
    return results


_EXPLAIN = EXPLAIN_PARAM.encode()
_TRUE = frozenset({b"true", b"1", b"yes"})
_FALSE = frozenset({b"false", b"0", b"no", b""})


def _explain_flag(query: bytes) -> bool:
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
        raise ApiError(
            422,
            "invalid_input",
            "The query parameter 'explain' must be true or false.",
            [{"field": "explain", "reason": "must be true or false"}],
            reason="invalid_query",
        )
    return False


async def _score_file(
    runtime: Runtime, receive: Receive, headers: dict[bytes, bytes]
) -> tuple[int, bytes, bytes, dict[str, str]]:
    from service.tables import detect_format, output_filename, score_table  # noqa: PLC0415
    from service.uploads import read_file_field  # noqa: PLC0415

    content_type = headers.get(b"content-type", b"").decode("latin-1")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "Upload the file as multipart/form-data with the field 'file'.",
            [{"field": "content-type", "reason": f"got {content_type or 'none'!r}"}],
            reason="content_type",
        )
    limit = runtime.settings.max_file_bytes
    _check_declared_length(headers, limit)
    upload = await read_file_field(_limited(receive, limit), content_type, limit)
    scored = await anyio.to_thread.run_sync(
        lambda: score_table(
            upload.content,
            filename=upload.filename,
            content_type=upload.content_type,
            scorer=runtime.scorer,
            max_rows=runtime.settings.max_file_rows,
        )
    )
    runtime.metrics.observe_batch("file", scored.rows)
    runtime.metrics.observe_scores("file", scored.probabilities, scored.is_fraud)
    table_format = detect_format(upload.filename, upload.content_type, upload.content[:4])
    disposition = f'attachment; filename="{output_filename(upload.filename, table_format)}"'
    return 200, scored.content, scored.media_type.encode(), {"content-disposition": disposition}


_INTERNAL_ERROR = orjson.dumps(
    {
        "error": "internal_error",
        "message": "An unexpected error occurred; it was logged.",
        "errors": [],
    }
)
_CACHE_NO_STORE = (b"cache-control", b"no-store")


def _request_id(raw: bytes | None) -> str:
    if raw and len(raw) <= 64 and all(c in _SAFE_ID_CHARS for c in raw):
        return raw.decode()
    return secrets.token_hex(8)


def _authenticate(runtime: Runtime, headers: dict[bytes, bytes]) -> None:
    """Constant-time API-key check; 401 without saying what was wrong."""
    if not runtime.api_keys:
        return
    presented = headers.get(_API_KEY, b"")
    # Compare against every key (no early exit) so timing does not reveal which matched.
    matched = False
    for key in runtime.api_keys:
        matched |= hmac.compare_digest(presented, key)
    if not matched:
        raise ApiError(
            401,
            "unauthorized",
            "Authentication required.",
            reason="unauthorized",
            headers={"www-authenticate": API_KEY_HEADER},
        )


def _check_declared_length(headers: dict[bytes, bytes], limit: int) -> None:
    declared = headers.get(b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(
                400, "bad_request", "Invalid Content-Length header.", reason="malformed_body"
            ) from None
        if size > limit:
            raise _too_large(limit)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"The request body exceeds {limit} bytes.",
        [{"field": "body", "reason": f"larger than {limit} bytes"}],
        reason="too_large",
    )


def _limited(receive: Receive, limit: int) -> Receive:
    """A ``receive`` that fails with 413 once more than ``limit`` body bytes arrived."""
    seen = 0

    async def wrapped() -> dict[str, Any]:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return wrapped


async def _read_json_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    content_type = headers.get(b"content-type", b"")
    media = content_type.split(b";", 1)[0].strip().lower()
    if media != _JSON and not (media.startswith(b"application/") and media.endswith(b"+json")):
        raise ApiError(
            415,
            "unsupported_media_type",
            "Send the body as application/json.",
            [
                {
                    "field": "content-type",
                    "reason": f"got {content_type.decode('latin-1') or 'none'!r}",
                }
            ],
            reason="content_type",
        )
    _check_declared_length(headers, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(
                400, "client_disconnected", "The client went away.", reason="disconnected"
            )
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    *,
    body: bytes,
    content_type: bytes,
    request_id: str,
    extra: dict[str, str],
    more_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (_REQUEST_ID, request_id.encode()),
        _CACHE_NO_STORE,
        *more_headers,
    ]
    headers.extend((k.encode(), v.encode()) for k, v in extra.items())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    """Adds security headers to every response; blocks HTTP access to internal routes.

    With ``direct_app`` set, ``/v1/...`` requests go straight to it from here instead of
    through the rest of BentoML's stack (CORS, its request-context middleware, the router
    and its mounts): about a quarter of a single score's CPU in the in-process profile.
    BentoML's timeout and tracing middlewares sit further out and still apply. The service
    leaves ``direct_app`` unset when CORS is configured, so CORS keeps working.
    """

    HEADERS: tuple[tuple[bytes, bytes], ...] = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", b"frame-ancestors 'none'"),
    )
    DIRECT_PREFIX = "/v1/"

    def __init__(
        self, app: Any, internal_paths: Sequence[str] = (), direct_app: Any = None
    ) -> None:
        self.app = app
        self.internal_paths = frozenset(internal_paths)
        self.direct_app = direct_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap ``send`` to append the headers to the response start message."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in self.internal_paths:
            body = orjson.dumps({"error": "not_found", "message": "No such route.", "errors": []})
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", _JSON), *self.HEADERS],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        secured = _SecuredSend(send)
        if self.direct_app is not None and path.startswith(self.DIRECT_PREFIX):
            await self.direct_app(scope, receive, secured)
            return
        await self.app(scope, receive, secured)


class _SecuredSend:
    """``send`` that appends the security headers to the response start, and knows if it began."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            message["headers"] = [*headers, *SecurityHeadersMiddleware.HEADERS]
            self.started = True
        await self.send(message)


class FrontDoor:
    """The worker's outermost ASGI layer, in front of BentoML's whole middleware stack.

    * While the scoring app is full (:attr:`Runtime.full`, its own admission rule, checked
      again at its door) a ``/v1`` request is answered 503 here, before BentoML's error,
      tracing and timeout middlewares (the last one an extra task per request) run. Measured
      with the service pinned to one core and nearly every request shed: ~6,700 rejections/s
      (p99 28-32 ms) through the stack, ~11,000/s (p99 20 ms) from here.
    * ``/v1/score``, the hot path, goes straight to the scoring app, which validates,
      authenticates and answers every error itself; the security headers and the request
      timeout (504) are applied here instead (tracing already excluded that route). +10%
      throughput at p99 <= 15 ms (3,351 and 3,508 req/s against 3,118 and 3,029 through the
      stack, alternating runs of the bench's ladder).
    * Everything else passes through unchanged.
    """

    PREFIX = "/v1/"

    def __init__(self, app: Any, scoring: ScoringApp) -> None:
        self.app = app
        self.scoring = scoring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Shed, take the hot path, or hand the request on."""
        runtime = self.scoring.runtime
        if runtime is None or scope["type"] != "http" or not scope["path"].startswith(self.PREFIX):
            await self.app(scope, receive, send)
        elif runtime.full:
            await self._shed(runtime, scope, send)
        elif scope["path"] == SCORE_PATH:
            await self._score(runtime, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _shed(self, runtime: Runtime, scope: Scope, send: Send) -> None:
        started = time.perf_counter()
        path = scope["path"]
        route = path if path in _ENDPOINTS else "other"
        runtime.metrics.request_started(route)
        request_id = _request_id(dict(scope["headers"]).get(_REQUEST_ID))
        names = (path, _ENDPOINTS.get(path, "unknown"), route)
        await _answer_error(
            send,
            _overloaded(),
            runtime,
            request_id,
            names,
            started,
            SecurityHeadersMiddleware.HEADERS,
        )

    async def _score(self, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        secured = _SecuredSend(send)
        # The scoring app finds BentoML's batcher through the app, as Starlette would set it.
        scope.setdefault("app", self.app)
        try:
            async with asyncio.timeout(runtime.settings.request_timeout_s):
                await self.scoring(scope, receive, secured)
        except TimeoutError:
            if secured.started:
                raise
            # The scoring app has closed the request as a 504 in its metrics.
            error = ApiError(504, "timeout", "The request took too long.", reason="timeout")
            request_id = _request_id(dict(scope["headers"]).get(_REQUEST_ID))
            await _respond(
                secured,
                504,
                body=error.body(),
                content_type=_JSON,
                request_id=request_id,
                extra={},
            )
