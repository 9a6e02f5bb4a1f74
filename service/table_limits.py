"""Hard bounds on an uploaded table, checked before the file is decoded in full.

A small upload can decode to something huge: a 13 KB Parquet file holding one 20 KB string
50,000 times through a dictionary page decodes to 1 GB, and a CSV header of 10^6 names makes
the reader build 10^6 columns. Each bound below is checked on what the file declares (CSV
header, Parquet footer and dictionaries) before the costly step, and answers 413 naming the
limit. With the defaults a scored file holds at most ``max_decoded_bytes`` of decoded cells
plus its upload and its output, a few times each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from service.errors import ApiError

_MAX_REASON: Final = 200


@dataclass(frozen=True)
class FileLimits:
    """Bounds on one uploaded table (the settings map onto these fields)."""

    #: Most columns (CSV header fields, Parquet leaf columns).
    max_columns: int = 256
    #: Longest CSV header line, in bytes (read before anything else).
    max_header_bytes: int = 64 * 1024
    #: Longest cell, in bytes of UTF-8 text (CSV: also bounds each line before parsing).
    max_cell_bytes: int = 16 * 1024
    #: Most bytes of decoded cells (Parquet: from the footer and dictionaries before decoding).
    max_decoded_bytes: int = 256 * 1024 * 1024


def limit_error(code: str, limit: str, message: str, reason: str) -> ApiError:
    """A 413 naming the limit (``limit``: the ``FileLimits`` field or setting exceeded)."""
    return ApiError(413, code, message, [{"field": limit, "reason": reason}], reason="too_large")


def unreadable(table_format: str, reason: str) -> ApiError:
    """A 400: the bytes are not a readable file of that format."""
    return ApiError(
        400,
        "unreadable_file",
        f"The file is not a readable {table_format} file.",
        [{"field": "file", "reason": " ".join(reason.split())[:_MAX_REASON]}],
        reason="unreadable_file",
    )
