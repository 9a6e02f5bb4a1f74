"""Raw ASGI plumbing shared by every route: the request's parts, its body, the response.

No framework on the hot path: a single score is a few hundred microseconds of CPU, and a
router or request object per call would be a measurable share of it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fraud_contract.api import REQUEST_ID_HEADER
from service.errors import (
    ClientDisconnected,
    MalformedBody,
    RequestTimeout,
    TooLarge,
    UnsupportedMedia,
)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON: bytes = b"application/json"
REQUEST_ID: bytes = REQUEST_ID_HEADER.lower().encode()
#: Sent with every response of the service (HSTS is added when behind TLS: see the app).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)
_CACHE_NO_STORE = (b"cache-control", b"no-store")
_SAFE_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
_MAX_ID_LENGTH = 64


@dataclass(frozen=True)
class Reply:
    """A successful answer: status, body, content type and extra headers."""

    body: bytes
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    status: int = 200


@dataclass
class Request:
    """What the front app learns about a request before any route runs."""

    scope: Scope
    receive: Receive
    path: str
    method: str
    headers: dict[bytes, bytes]
    request_id: str
    #: Headers every response to this request carries (security, request id, CORS, ...).
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: The body, once :func:`read_body` has read it.
    body: bytes | None = None

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive) -> Request:
        """Parse path, method, headers and the caller's request id (or make one up)."""
        headers = dict(scope["headers"])
        return cls(
            scope=scope,
            receive=receive,
            path=scope["path"],
            method=scope["method"],
            headers=headers,
            request_id=request_id(headers.get(REQUEST_ID)),
        )

    @property
    def query(self) -> bytes:
        """The raw query string."""
        return bytes(self.scope.get("query_string", b""))


def request_id(raw: bytes | None) -> str:
    """The caller's ``X-Request-ID`` if it is short and plain, else a fresh random id."""
    if raw and len(raw) <= _MAX_ID_LENGTH and all(c in _SAFE_ID_CHARS for c in raw):
        return raw.decode()
    return secrets.token_hex(8)


async def respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send a whole response (``content-length`` set, never cached)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                _CACHE_NO_STORE,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def check_json_content_type(headers: dict[bytes, bytes]) -> None:
    """415 unless the body is declared as JSON (``application/json`` or ``*/*+json``)."""
    content_type = headers.get(b"content-type", b"")
    media = content_type.split(b";", 1)[0].strip().lower()
    if media != JSON and not (media.startswith(b"application/") and media.endswith(b"+json")):
        raise UnsupportedMedia("Send the body as application/json.", content_type.decode("latin-1"))


def check_declared_length(headers: dict[bytes, bytes], limit: int) -> None:
    """413 straight away when ``Content-Length`` already says the body is too large."""
    declared = headers.get(b"content-length")
    if declared is None:
        return
    try:
        size = int(declared)
    except ValueError:
        raise MalformedBody(
            "Invalid Content-Length header.", code="bad_request", reason="malformed_body"
        ) from None
    if size > limit:
        raise TooLarge(limit)


async def read_body(request: Request, *, limit: int, deadline_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes, arrived within ``deadline_s`` seconds.

    Raises:
        TooLarge: more than ``limit`` bytes (declared or sent).
        RequestTimeout: the body did not arrive in time (a slow or stalled client).
        ClientDisconnected: the client went away.
    """
    check_declared_length(request.headers, limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise RequestTimeout(deadline_s) from None
    request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return request.body


def replay(body: bytes) -> Receive:
    """A ``receive`` that hands an already-read body to code written against ASGI."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
