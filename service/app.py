"""The HTTP stack, built in one place: every request of the worker goes through :class:`FrontApp`.

Steps, in order, for every HTTP request (each one a few lines below, no framework layers):

1. request id: the caller's ``X-Request-ID`` or a new one, on the response and every log line;
2. security headers (and HSTS behind TLS) on every response, errors included;
3. route: the table of :func:`service.routes.build_routes` (anything else is a 404);
4. CORS when configured (preflights answered here);
5. admission: a ``/v1`` request is shed with 503 while the worker is full, before its body
   is read; it is counted in flight only once its body has arrived (slow clients do not hold
   slots), and checked again then;
6. auth: the API key, constant-time, when keys are configured;
7. body: read within the body deadline (408) and the size limit (413);
8. timeout: the handler runs under the request timeout (504);
9. every error, whatever raised it, rendered by :meth:`FrontApp._answer_error` (status,
   contract body, headers, request id, metrics, a log line).

While the worker drains before it stops (:meth:`FrontApp.drain`), every response says
``Connection: close`` and ``/readyz`` answers 503, so keep-alive clients leave cleanly.

Lifespan messages go to BentoML's own app behind (:func:`service.bentoml_bridge.serve_front_app`):
its start-up creates the service instance, which binds the loaded model with :meth:`bind`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import TYPE_CHECKING

from fraud_contract.api import (
    API_KEY_HEADER,
    DECISIONS_PATH,
    LABELS_FILE_PATH,
    MODEL_PATH,
    READY_PATH,
    SCORE_BATCH_PATH,
    SCORE_FILE_PATH,
    SCORE_PATH,
)
from service.admission import Admission, QueueClock, ShedLog
from service.asgi import (
    JSON,
    REQUEST_ID,
    SECURITY_HEADERS,
    ASGIApp,
    Receive,
    Reply,
    Request,
    Scope,
    Send,
    respond,
)
from service.cors import Cors
from service.decisions import ALERTS_PATH, DECISIONS_PREFIX, LABELS_PATH
from service.errors import (
    ApiError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    NotReady,
    Overloaded,
    ShuttingDown,
    Timeout,
    Unauthorized,
)
from service.logs import LOGGER_NAME, request_id_var
from service.routes import Route, build_routes, read_request_body

if TYPE_CHECKING:
    from service.runtime import Runtime
    from service.settings import ServiceSettings

logger = logging.getLogger(LOGGER_NAME)

_API_KEY = API_KEY_HEADER.lower().encode()
_V1_PREFIX = "/v1/"
#: Request-metric route labels: the contract's routes, anything else under /v1 is "other".
_METRIC_ROUTES = frozenset(
    {
        SCORE_PATH,
        SCORE_BATCH_PATH,
        SCORE_FILE_PATH,
        MODEL_PATH,
        ALERTS_PATH,
        LABELS_PATH,
        LABELS_FILE_PATH,
        DECISIONS_PATH,
    }
)
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_CLOSE = (b"connection", b"close")


class FrontApp:
    """The worker's ASGI app: the steps of the module docstring, then the route's handler."""

    def __init__(self, settings: ServiceSettings, backend: ASGIApp | None = None) -> None:
        self.settings = settings
        self.routes: dict[str, Route] = build_routes(settings)
        self.backend = backend
        self.runtime: Runtime | None = None
        self.admission = Admission(
            settings.max_concurrency,
            settings.max_concurrency_per_key,
            queue_budget_s=settings.max_queue_wait_ms / 1000,
            queue_floor=settings.max_batch_size,
        )
        self.cors = Cors(settings.cors_origins) if settings.cors_origins else None
        self.shed_log = ShedLog()
        self.headers = (*SECURITY_HEADERS, _HSTS) if settings.behind_tls else SECURITY_HEADERS
        self.draining = False

    def drain(self) -> None:
        """Stop keeping connections alive and leave the load balancer's rotation."""
        self.draining = True
        self.headers = (*self.headers, _CLOSE)

    def bind(self, runtime: Runtime) -> None:
        """Serve with the loaded model (called by the service instance at start-up)."""
        self.runtime = runtime
        queue = runtime.score_one
        self.admission.queue = queue if isinstance(queue, QueueClock) else None

    def in_front_of(self, backend: ASGIApp) -> FrontApp:
        """This app with BentoML's app behind it (for lifespan messages)."""
        self.backend = backend
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle an HTTP request; hand anything else (lifespan) to the backend."""
        if scope["type"] != "http":
            if self.backend is not None:
                await self.backend(scope, receive, send)
            return
        request = Request.from_scope(scope, receive)
        request.response_headers = [*self.headers, (REQUEST_ID, request.request_id.encode())]
        token = request_id_var.set(request.request_id)
        runtime = self.runtime
        path = request.path
        metric_route = None
        if runtime is not None and path.startswith(_V1_PREFIX):
            metric_route = path if path in _METRIC_ROUTES else "other"
            if path.startswith(DECISIONS_PREFIX):
                metric_route = DECISIONS_PREFIX + "{transaction_id}"
            runtime.metrics.request_started(metric_route)
        started = time.perf_counter()
        status = 500
        try:
            reply = await self._handle(request, runtime)
            status = reply.status
            await respond(
                send,
                reply.status,
                reply.body,
                content_type=reply.content_type,
                headers=[*request.response_headers, *reply.headers],
            )
            if metric_route is not None and runtime is not None and runtime.settings.access_log:
                logger.info(
                    "request",
                    extra={
                        "path": path,
                        "status": status,
                        "bytes": len(reply.body),
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    },
                )
        except ApiError as exc:
            status = exc.status
            await self._answer_error(send, request, exc, runtime)
        except asyncio.CancelledError:
            # Cancelled at shutdown or by the server: still close the request in the metrics.
            status = 504
            raise
        except Exception:
            logger.exception("unhandled error", extra={"path": path})
            await self._answer_error(send, request, InternalError(), runtime)
        finally:
            if metric_route is not None and runtime is not None:
                runtime.metrics.request_finished(
                    metric_route, status, time.perf_counter() - started
                )
            request_id_var.reset(token)

    async def _handle(self, request: Request, runtime: Runtime | None) -> Reply:
        route = self.routes.get(request.path)
        if route is None and request.path.startswith(DECISIONS_PREFIX):
            route = self.routes[DECISIONS_PREFIX]  # the one route with a path parameter
        if route is None:
            raise NotFound(request.path)
        if self.cors is not None:
            preflight = self.cors.preflight(request)
            if preflight is not None:
                return preflight
            request.response_headers.extend(self.cors.response_headers(request))
        if request.method != route.method:
            raise MethodNotAllowed(request.path, route.method)
        if route.needs_model and runtime is None:
            raise NotReady
        if self.draining and request.path == READY_PATH:
            raise ShuttingDown
        if not route.admitted:
            if route.needs_key:
                self._authenticate(request)
            return await route.handler(runtime, request)
        if self.admission.full or (route.endpoint == "single" and self.admission.behind()):
            raise Overloaded
        key = self._authenticate(request)
        await read_request_body(request, route, self.settings)
        self.admission.enter(key)
        try:
            try:
                async with asyncio.timeout(self.settings.request_timeout_s):
                    return await route.handler(runtime, request)
            except TimeoutError:
                raise Timeout from None
        finally:
            self.admission.leave(key)

    def _authenticate(self, request: Request) -> int | None:
        """Constant-time API-key check; 401 without saying what was wrong.

        Returns the number of the key that matched (None when no keys are configured).
        """
        keys = self.runtime.api_keys if self.runtime is not None else ()
        if not keys:
            return None
        presented = request.headers.get(_API_KEY, b"")
        # Compare against every key (no early exit) so timing does not reveal which matched.
        matched = -1
        for number, key in enumerate(keys):
            if hmac.compare_digest(presented, key):
                matched = number
        if matched < 0:
            raise Unauthorized(API_KEY_HEADER)
        return matched

    async def _answer_error(
        self, send: Send, request: Request, exc: ApiError, runtime: Runtime | None
    ) -> None:
        """The one error path: contract body, headers, metrics and a log line."""
        await respond(
            send,
            exc.status,
            exc.body(),
            content_type=JSON,
            headers=[
                *request.response_headers,
                *((k.encode(), v.encode()) for k, v in exc.headers.items()),
            ],
        )
        path = request.path
        if runtime is not None and path.startswith(_V1_PREFIX):
            route = self.routes.get(path)
            runtime.metrics.reject(
                route.endpoint if route and route.endpoint else "unknown", exc.reason
            )
        if isinstance(exc, Overloaded):
            self.shed_log.count(path)
            return
        log = logger.error if exc.status >= 500 else logger.warning
        log(
            "request failed" if exc.status >= 500 else "request rejected",
            extra={
                "path": path,
                "status": exc.status,
                "error": exc.code,
                "fields": [e["field"] for e in exc.errors[:10]],
            },
        )
