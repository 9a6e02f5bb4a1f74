"""Structured logs: one JSON object per line, with request id and model version.

Raw card/customer identifiers never reach a log line: :func:`hash_id` replaces them with a
salted, truncated SHA-256 (stable, so one card's lines can still be correlated).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

LOGGER_NAME = "fraud_scoring"
#: Request id of the request being handled (set by the HTTP layer).
request_id_var: ContextVar[str | None] = ContextVar("fraud_request_id", default=None)

_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats records as single-line JSON with the service's context fields."""

    def __init__(self, model_version: str) -> None:
        super().__init__()
        self.model_version = model_version

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record, its extra fields and the current request id."""
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "model_version": self.model_version,
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(*, log_format: str, level: str, model_version: str) -> logging.Logger:
    """Set up the service logger once per process (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(model_version))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    return logger


def hash_id(value: str | None, salt: bytes) -> str | None:
    """Salted SHA-256 of an identifier, first 16 hex digits (None stays None)."""
    if value is None:
        return None
    return hashlib.sha256(salt + value.encode()).hexdigest()[:16]
