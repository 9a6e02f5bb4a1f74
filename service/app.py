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
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from fraud_contract.api import (
    API_KEY_HEADER,
    MODEL_PATH,
    READY_PATH,
    SCORE_BATCH_PATH,
    SCORE_FILE_PATH,
    SCORE_PATH,
)
from service.asgi import (
    JSON,
    REQUEST_ID,
    SECURITY_HEADERS,
    ASGIApp,
    Receive,
    Request,
    Scope,
    Send,
    respond,
)
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
from service.routes import Reply, Route, build_routes, read_request_body

if TYPE_CHECKING:
    from service.runtime import Runtime
    from service.settings import ServiceSettings

logger = logging.getLogger(LOGGER_NAME)

_API_KEY = API_KEY_HEADER.lower().encode()
_V1_PREFIX = "/v1/"
#: Request-metric route labels: the contract's routes, anything else under /v1 is "other".
_METRIC_ROUTES = frozenset({SCORE_PATH, SCORE_BATCH_PATH, SCORE_FILE_PATH, MODEL_PATH})
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_CLOSE = (b"connection", b"close")


@runtime_checkable
class QueueClock(Protocol):
    """What admission needs from the adaptive batcher: how long its oldest job has waited."""

    def oldest_wait_s(self, now: float) -> float:
        """Seconds the oldest unanswered job has been queued or scored."""
        ...


class Admission:
    """Per-worker admission control, the one place that decides to shed (503).

    * at most ``limit`` ``/v1`` requests in flight;
    * single scores also while the adaptive batcher's oldest job has waited longer than
      ``queue_budget_s`` and at least ``queue_floor`` requests (one full adaptive batch) are
      in flight: queueing delay, not a count, says when the worker is behind, so the
      requests it admits during an overload still meet their latency objective;
    * with ``per_key_limit`` set, each API key holds at most that many slots, so one client
      cannot take every slot from the others.
    """

    __slots__ = (
        "by_key",
        "in_flight",
        "limit",
        "per_key_limit",
        "queue",
        "queue_budget_s",
        "queue_floor",
    )

    def __init__(
        self,
        limit: int,
        per_key_limit: int = 0,
        queue_budget_s: float = 0.0,
        queue_floor: int = 0,
        queue: QueueClock | None = None,
    ) -> None:
        self.limit = limit
        self.queue_floor = queue_floor
        self.per_key_limit = per_key_limit
        self.queue_budget_s = queue_budget_s
        self.queue = queue
        self.in_flight = 0
        self.by_key: dict[int, int] = {}

    @property
    def full(self) -> bool:
        """No room for one more request."""
        return self.in_flight >= self.limit

    def behind(self) -> bool:
        """The batcher's oldest job has waited past the queueing budget, with a queue to show.

        Below ``queue_floor`` requests in flight nothing is shed on delay alone: a pause of
        the whole process (a busy neighbour, the batcher's warm-up) delays a handful of
        requests without the worker being overloaded.
        """
        if self.queue is None or self.queue_budget_s <= 0 or self.in_flight < self.queue_floor:
            return False
        return self.queue.oldest_wait_s(time.perf_counter()) > self.queue_budget_s

    def enter(self, key: int | None) -> None:
        """Count a request (of API key number ``key``) in flight, or shed it (503)."""
        if self.in_flight >= self.limit:
            raise Overloaded
        if key is not None and self.per_key_limit:
            held = self.by_key.get(key, 0)
            if held >= self.per_key_limit:
                raise Overloaded("Too many requests in flight for this API key; retry shortly.")
            self.by_key[key] = held + 1
        self.in_flight += 1

    def leave(self, key: int | None) -> None:
        """The request is answered."""
        self.in_flight -= 1
        if key is not None and self.per_key_limit:
            self.by_key[key] -= 1


class ShedLog:
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


class Cors:
    """CORS for the configured origins only (no header at all for any other origin)."""

    METHODS = b"GET, POST, OPTIONS"
    HEADERS = b"content-type, x-api-key, x-request-id"
    MAX_AGE = b"600"

    def __init__(self, origins: list[str]) -> None:
        self.origins = frozenset(origin.encode() for origin in origins)

    def allowed(self, request: Request) -> bytes | None:
        """The request's origin if it is allowed."""
        origin = request.headers.get(b"origin")
        return origin if origin in self.origins else None

    def preflight(self, request: Request) -> Reply | None:
        """The answer to a preflight (``OPTIONS`` with ``Access-Control-Request-Method``)."""
        if request.method != "OPTIONS" or b"access-control-request-method" not in request.headers:
            return None
        origin = self.allowed(request)
        if origin is None:
            return Reply(b"Disallowed CORS origin", b"text/plain; charset=utf-8", status=400)
        return Reply(
            b"OK",
            b"text/plain; charset=utf-8",
            headers=(
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", self.METHODS),
                (b"access-control-allow-headers", self.HEADERS),
                (b"access-control-max-age", self.MAX_AGE),
                (b"vary", b"Origin"),
            ),
        )

    def response_headers(self, request: Request) -> tuple[tuple[bytes, bytes], ...]:
        """Headers for the actual response to an allowed origin."""
        origin = self.allowed(request)
        if origin is None:
            return ()
        return ((b"access-control-allow-origin", origin), (b"vary", b"Origin"))


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
