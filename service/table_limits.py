"""Hard bounds on an uploaded table, checked before the file is decoded in full.

A small upload can decode to something huge: a 13 KB Parquet file holding one 20 KB string
50,000 times through a dictionary page decodes to 1 GB, and a CSV header of 10^6 names makes
the reader build 10^6 columns. Each bound below is checked on what the file declares (CSV
header, Parquet footer and dictionaries) before the costly step, and answers 413 naming the
limit. With the defaults a scored file holds at most ``max_decoded_bytes`` of decoded cells
plus its upload and its output, a few times each.

Time is bounded too: a file job runs in a worker thread, which cannot be killed, so it is
cooperative. :class:`FileJob` is its cancellation token: the request sets it when it ends
without waiting for the job (its timeout's 504, a shutdown), or the job's own deadline passes,
and the engine checks it between chunks (CSV blocks, Parquet row groups, slices of
:data:`CHUNK_ROWS` rows) and stops with :class:`AbandonedError`, dropping what it
built.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from service.errors import ApiError

_MAX_REASON: Final = 200
#: Rows checked, scored or written between two looks at the job's token.
CHUNK_ROWS: Final = 65_536
#: Bad cells a file's 422 names (the first ones; the message gives the count).
MAX_REPORTED_CELLS: Final = 20


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


class AbandonedError(Exception):
    """The file job was cancelled or ran past its deadline; ``stage`` is where it stopped."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"file job abandoned while {stage}")
        self.stage = stage


class FileJob:
    """Cancellation token and progress of one file-scoring job, shared with its request.

    Args:
        deadline_s: the job stops on its own after this many seconds (None: only when
            cancelled).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self, deadline_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cancelled = threading.Event()
        self._clock = clock
        self._deadline = None if deadline_s is None else clock() + deadline_s
        #: Rows done per stage (``read``, ``checked``, ``scored``, ``written``).
        self.rows: dict[str, int] = {}

    def cancel(self) -> None:
        """Ask the job to stop at its next check (safe from any thread, any number of times)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled or its deadline has passed."""
        return self._cancelled.is_set()

    def check(self, stage: str) -> None:
        """Raise :class:`AbandonedError` if the job must stop (called between chunks)."""
        if self._deadline is not None and self._clock() >= self._deadline:
            self._cancelled.set()
        if self._cancelled.is_set():
            raise AbandonedError(stage)

    def done(self, stage: str, rows: int) -> None:
        """Count ``rows`` more rows finished in ``stage``."""
        self.rows[stage] = self.rows.get(stage, 0) + rows


def check(job: FileJob | None, stage: str) -> None:
    """:meth:`FileJob.check` when there is a job (the engine also runs without one)."""
    if job is not None:
        job.check(stage)


def done(job: FileJob | None, stage: str, rows: int) -> None:
    """:meth:`FileJob.done` when there is a job."""
    if job is not None:
        job.done(stage, rows)
