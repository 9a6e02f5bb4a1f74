"""CORS for the configured origins only (``FRAUD_CORS_ORIGINS``)."""

from __future__ import annotations

from service.asgi import Reply, Request


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
