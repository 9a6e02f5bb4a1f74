"""The timeout-middleware fix: BentoML's behaviour kept, its per-request timer cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.bentoml_fixes import install_timeout_timer_fix


def _middleware_classes() -> tuple[type, type]:
    """(BentoML's own class, the installed fix)."""
    from bentoml._internal.server.http import traffic  # noqa: PLC0415

    install_timeout_timer_fix()
    fixed = traffic.TimeoutMiddleware
    return fixed.__mro__[1], fixed


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _too_slow(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(5)


async def _call(middleware: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware({"type": "http", "path": "/v1/score", "headers": []}, receive, send)
    return sent


def _pending_timers() -> int:
    loop = asyncio.get_running_loop()
    return sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]


@pytest.mark.parametrize("fixed", [False, True])
def test_answered_requests_leave_no_timer_behind_only_with_the_fix(fixed: bool) -> None:
    original, patched = _middleware_classes()
    middleware = (patched if fixed else original)(_answer, timeout=30.0)

    async def scenario() -> int:
        for _ in range(20):
            sent = await _call(middleware)
            assert sent[0]["status"] == 200
        return _pending_timers()

    assert asyncio.run(scenario()) == (0 if fixed else 20)


def test_a_request_past_the_timeout_still_gets_bentomls_504() -> None:
    _, patched = _middleware_classes()
    sent = asyncio.run(_call(patched(_too_slow, timeout=0.05)))
    assert sent[0]["status"] == 504
    assert b"Not able to process the request in 0.05 seconds" in sent[1]["body"]


def test_install_is_idempotent_and_is_what_bentoml_builds_with() -> None:
    from bentoml._internal.server.http import traffic  # noqa: PLC0415

    install_timeout_timer_fix()
    first = traffic.TimeoutMiddleware
    install_timeout_timer_fix()
    assert traffic.TimeoutMiddleware is first
    assert first.__mro__[1].__module__ == traffic.__name__  # a subclass of BentoML's own
