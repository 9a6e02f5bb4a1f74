"""Client errors: one exception type carrying the contract's error body (see ErrorBody)."""

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
        return ApiError(400, "malformed_json", "The request body is not valid JSON.", errors)
    count = len(details)
    noun = "problem" if count == 1 else "problems"
    return ApiError(
        422,
        "invalid_input",
        f"The request has {count} {noun}; see 'errors'.",
        errors,
        reason=reason,
    )
