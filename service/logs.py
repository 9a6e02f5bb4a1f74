"""Structured logs: one JSON object per line, with request id and model version.

Raw card/customer identifiers never reach a log line: :class:`IdHasher` replaces them with
a keyed hash (HMAC-SHA-256 under a secret key, PCI DSS 4.0 3.5.1.1), stable per key so one
card's lines can still be correlated, and prefixed with the key's id so logs written under an
old key stay joinable after a rotation (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
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


#: Hex digits kept of the HMAC (128 bits: collisions are out of reach, lines stay short).
HASH_HEX_DIGITS = 32


class IdHasher:
    """Keyed hash of identifiers for logs: ``"<key id>:<first 128 bits of HMAC-SHA-256>"``."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes, key_id: str) -> None:
        self._key = key
        self.key_id = key_id

    def __call__(self, value: str | None) -> str | None:
        """The keyed hash of ``value`` (None stays None)."""
        if value is None:
            return None
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
        return f"{self.key_id}:{digest[:HASH_HEX_DIGITS]}"

    def __repr__(self) -> str:
        return f"IdHasher(key_id={self.key_id!r})"
