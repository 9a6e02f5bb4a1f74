"""A measured fix for BentoML 1.4's request-timeout middleware, installed before the app is built.

BentoML's ``TimeoutMiddleware`` (``bentoml._internal.server.http.traffic``) arms a
``loop.call_later(timeout, ...)`` timer for every request and never cancels it, so each
answered request leaves a timer, a future and a context copy alive for the whole timeout
(30 s here). At 1,500 req/s that is ~45,000 timers, ~270,000 objects that the cyclic garbage
collector's full passes walk: passes of 150-230 ms were measured in the worker (gc callbacks),
each one a latency spike for every queued request. The subclass below keeps BentoML's
behaviour (504 after the timeout) and cancels the timer once the request is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

_MARKER = "_fraud_cancels_timer"


def install_timeout_timer_fix() -> None:
    """Make BentoML build its apps with a timeout middleware that cancels its timers.

    Idempotent; BentoML looks the class up in its module when it builds the middleware
    stack (``BaseAppFactory.middlewares``), after the service module has been imported.
    """
    from bentoml._internal.server.http import traffic  # noqa: PLC0415

    if getattr(traffic.TimeoutMiddleware, _MARKER, False):
        return

    class CancellingTimeoutMiddleware(traffic.TimeoutMiddleware):
        """BentoML's timeout middleware, with the per-request timer cancelled when done."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] not in ("http", "websocket"):
                await self.app(scope, receive, send)
                return
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

            async def _send(message: Any) -> None:
                if not waiter.done():
                    waiter.set_result(None)
                await send(message)

            task = asyncio.ensure_future(self.app(scope, receive, _send))
            try:
                await waiter
            except TimeoutError:
                if task.cancel():
                    from starlette.responses import JSONResponse  # noqa: PLC0415

                    message = f"Not able to process the request in {self.timeout} seconds"
                    await JSONResponse({"error": message}, status_code=504)(scope, receive, send)
            else:
                await task
            finally:
                timer.cancel()

    setattr(CancellingTimeoutMiddleware, _MARKER, True)
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware  # type: ignore[misc]


_WRAPPED = "_fraud_outermost"


def install_outermost_layer(service: Any, wrap: Callable[[Any], Any]) -> None:
    """Make BentoML hand uvicorn ``wrap(app)`` instead of ``service``'s ASGI app.

    BentoML's own hooks (``add_asgi_middleware``, mounted apps) all sit inside its
    middleware stack; this is the one place outside it (used by
    :class:`service.http.FrontDoor`: rejections and the hot path without the stack's cost).
    The worker builds the app with ``ServiceAppFactory(service)()`` after importing the
    service module; other services' apps are left as they are. Idempotent.
    """
    from _bentoml_impl.server.app import ServiceAppFactory  # noqa: PLC0415

    build = ServiceAppFactory.__call__
    if getattr(build, _WRAPPED, None) is service:
        return

    def build_wrapped(factory: Any) -> Any:
        app = build(factory)
        return wrap(app) if factory.service is service else app

    setattr(build_wrapped, _WRAPPED, service)
    ServiceAppFactory.__call__ = build_wrapped
