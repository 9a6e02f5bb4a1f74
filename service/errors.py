"""Every answer other than 200 is one of these exceptions, rendered in one place.

:class:`ApiError` carries the HTTP status, the contract's error body
(:class:`fraud_contract.api.ErrorBody`: ``error``, ``message``, ``errors``), extra headers and
the rejection-metric reason. The typed subclasses below are what the service raises; the
front app (:mod:`service.app`) turns any of them into a response with :func:`render`.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError


class ApiError(Exception):
    """An answer other than 200: HTTP status, machine code, sentence and per-field details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: list[dict[str, str]] | None = None,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []
        #: Label of the input-rejection metric (defaults to the code).
        self.reason = reason or code
        self.headers = headers or {}

    def body(self) -> bytes:
        """The JSON body, shaped as :class:`fraud_contract.api.ErrorBody`."""
        return orjson.dumps({"error": self.code, "message": self.message, "errors": self.errors})

    @property
    def is_client_error(self) -> bool:
        """A 4xx: the caller's input or credentials, counted as an input rejection."""
        return 400 <= self.status < 500


class InvalidInput(ApiError):
    """422: the body parses but violates the contract; ``errors`` names each field."""

    def __init__(
        self, message: str, errors: list[dict[str, str]], *, reason: str = "invalid_value"
    ) -> None:
        super().__init__(422, "invalid_input", message, errors, reason=reason)


class MalformedBody(ApiError):
    """400: the body is not what its content type says (JSON, multipart, ...)."""

    def __init__(
        self,
        message: str = "The request body is not valid JSON.",
        errors: list[dict[str, str]] | None = None,
        *,
        code: str = "malformed_json",
        reason: str = "malformed_json",
    ) -> None:
        super().__init__(400, code, message, errors, reason=reason)


class Unauthorized(ApiError):
    """401 without saying what was wrong."""

    def __init__(self, header: str) -> None:
        super().__init__(
            401,
            "unauthorized",
            "Authentication required.",
            reason="unauthorized",
            headers={"www-authenticate": header},
        )


class NotFound(ApiError):
    """404 for a path the service does not serve."""

    def __init__(self, path: str) -> None:
        super().__init__(404, "not_found", f"No route {path}.", reason="not_found")


class MethodNotAllowed(ApiError):
    """405 naming the one method the route accepts."""

    def __init__(self, path: str, allowed: str) -> None:
        super().__init__(
            405,
            "method_not_allowed",
            f"{path} accepts {allowed} only.",
            reason="method",
            headers={"allow": allowed},
        )


class RequestTimeout(ApiError):
    """408: the client did not send its body in time (slow-body clients)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            "request_timeout",
            f"The request body did not arrive within {seconds:g} seconds.",
            [{"field": "body", "reason": f"not received within {seconds:g} s"}],
            reason="slow_body",
        )


class TooLarge(ApiError):
    """413 naming the limit that was exceeded."""

    def __init__(self, limit: int, what: str = "body") -> None:
        super().__init__(
            413,
            "payload_too_large",
            f"The request {what} exceeds {limit} bytes.",
            [{"field": what, "reason": f"larger than {limit} bytes"}],
            reason="too_large",
        )


class UnsupportedMedia(ApiError):
    """415: the content type the route needs, and what was sent."""

    def __init__(self, message: str, got: str) -> None:
        super().__init__(
            415,
            "unsupported_media_type",
            message,
            [{"field": "content-type", "reason": f"got {got or 'none'!r}"}],
            reason="content_type",
        )


class ClientDisconnected(ApiError):
    """The client went away before its body arrived (nobody reads the answer)."""

    def __init__(self) -> None:
        super().__init__(400, "client_disconnected", "The client went away.", reason="disconnected")


class Overloaded(ApiError):
    """503 with Retry-After: admission control or the adaptive batcher shed the request."""

    def __init__(self, message: str = "Too many requests in flight; retry shortly.") -> None:
        super().__init__(
            503, "overloaded", message, reason="overloaded", headers={"retry-after": "1"}
        )


class NotReady(ApiError):
    """503 before the model is loaded."""

    def __init__(self) -> None:
        super().__init__(503, "not_ready", "The model is not loaded yet.", reason="not_ready")


class ShuttingDown(ApiError):
    """503 from ``/readyz`` while the worker drains before it stops (take it out of rotation)."""

    def __init__(self) -> None:
        super().__init__(
            503, "shutting_down", "The service is shutting down.", reason="shutting_down"
        )


class Timeout(ApiError):
    """504: the request ran longer than the configured request timeout."""

    def __init__(self) -> None:
        super().__init__(504, "timeout", "The request took too long.", reason="timeout")


class InternalError(ApiError):
    """500: a bug; the traceback is logged, never sent."""

    def __init__(self) -> None:
        super().__init__(
            500,
            "internal_error",
            "An unexpected error occurred; it was logged.",
            reason="internal_error",
        )


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


#: pydantic error types -> the rejection-metric reason label (bounded cardinality).
_REASONS: dict[str, str] = {
    "json_invalid": "malformed_json",
    "json_type": "malformed_json",
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "finite_number": "not_finite",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "too_short": "batch_size",
    "too_long": "batch_size",
}


def from_validation_error(exc: ValidationError, *, prefix: str = "") -> ApiError:
    """Translate a pydantic ``ValidationError`` into a 422 naming every bad field."""
    details = exc.errors(include_url=False, include_context=False, include_input=False)
    errors = [
        {"field": prefix + _location(tuple(item["loc"])), "reason": item["msg"]}
        for item in details[:50]
    ]
    first_type = details[0]["type"] if details else "invalid"
    reason = _REASONS.get(first_type, "invalid_value")
    if reason == "malformed_json":
        return MalformedBody(errors=errors)
    count = len(details)
    noun = "problem" if count == 1 else "problems"
    return InvalidInput(f"The request has {count} {noun}; see 'errors'.", errors, reason=reason)
