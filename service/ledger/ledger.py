"""The ledger as the service uses it: record decisions (cheap, never blocks on PostgreSQL),
read them back, take labels, apply retention.

:meth:`Ledger.record` only appends to the local spool; the writer thread copies to PostgreSQL.
Queries and labels go straight to PostgreSQL through the pool and raise
:class:`~service.ledger.errors.LedgerUnavailable` (503) when it cannot be reached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from service.ledger import labels as label_store
from service.ledger import queries
from service.ledger.errors import LedgerUnavailable
from service.ledger.migrate import migrate
from service.ledger.model import (
    AlertPage,
    Decision,
    DecisionPage,
    DecisionView,
    Label,
    LabelOutcome,
    LedgerStats,
)
from service.ledger.retention import RetentionResult, delete_older_than
from service.ledger.settings import LedgerSettings
from service.ledger.spool import Spool
from service.ledger.writer import LedgerWriter

T = TypeVar("T")


class Ledger:
    """Spool + writer + pool for one process. Call :meth:`start` once, :meth:`close` at exit."""

    def __init__(self, settings: LedgerSettings, *, run_migrations: bool = True) -> None:
        self.settings = settings
        self.url = settings.url()
        self.run_migrations = run_migrations
        self._migrated = threading.Event()
        self.spool = Spool(
            settings.ledger_spool_dir,
            max_rows=settings.ledger_spool_max_rows,
            sync=settings.ledger_spool_sync,
        )
        timeout = settings.ledger_connect_timeout_s
        self.pool = ConnectionPool(
            self.url,
            min_size=settings.ledger_pool_min_size,
            max_size=settings.ledger_pool_max_size,
            timeout=timeout,
            kwargs={"connect_timeout": max(1, round(timeout))},
            check=ConnectionPool.check_connection,
            name="ledger",
            open=False,
        )
        self.writer = LedgerWriter(
            self.spool,
            self.pool,
            batch_size=settings.ledger_batch_size,
            flush_interval_s=settings.ledger_flush_interval_s,
            retry_max_s=settings.ledger_retry_max_s,
            before_write=self.ensure_schema,
        )

    def start(self) -> None:
        """Open the pool (without waiting for PostgreSQL) and start the writer thread
        (unless ``ledger_writer`` is ``process``: then a writer process drains the spool)."""
        self.pool.open(wait=False)
        if self.settings.ledger_writer == "thread":
            self.writer.start()

    def ensure_schema(self) -> None:
        """Apply pending migrations once per process (the writer calls it before writing)."""
        if self.run_migrations and not self._migrated.is_set():
            migrate(self.url)
            self._migrated.set()

    def record(self, decisions: Sequence[Decision]) -> int:
        """Spool decisions for the writer; return how many were kept (see ``stats``).

        The writer is not woken: it copies what accumulated once per flush interval, so
        PostgreSQL gets one transaction per interval, not one per scoring call (its cost per
        transaction dwarfs its cost per row at the sizes of adaptive batches).
        """
        return self.spool.append(decisions)

    def stats(self) -> LedgerStats:
        """Queue depth, drops and writer counters for metrics."""
        w = self.writer
        return LedgerStats(
            spool_depth=self.spool.depth,
            spool_dropped_total=self.spool.dropped_total,
            written_total=w.written_total,
            redelivered_total=w.redelivered_total,
            writer_errors_total=w.errors_total,
            rejected_total=w.rejected_total,
            last_error=w.last_error,
            last_write_unix=w.last_write_unix,
        )

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the spool is empty (or ``timeout``); return whether it is."""
        done = threading.Event()
        deadline = timeout
        step = 0.02
        while self.spool.depth and deadline > 0:
            self.writer.notify()  # a no-op when a writer process drains the spool
            done.wait(step)
            deadline -= step
        return self.spool.depth == 0

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _query(self, run: Callable[[], T]) -> T:
        with self._reachable():
            self.ensure_schema()
            return run()

    def get_decision(self, transaction_id: str) -> DecisionView | None:
        """A transaction's decisions and labels (``None``: not in the ledger)."""
        return self._query(lambda: queries.get_decision(self.pool, transaction_id))

    def list_alerts(
        self, *, unlabelled_only: bool = True, limit: int = 50, cursor: str | None = None
    ) -> AlertPage:
        """A page of flagged decisions, newest first."""
        return self._query(
            lambda: queries.list_alerts(
                self.pool,
                unlabelled_only=unlabelled_only,
                limit=limit,
                cursor=cursor,
                max_limit=self.settings.ledger_alerts_page_max,
            )
        )

    def list_decisions(
        self,
        *,
        column: queries.EntityColumn,
        value: str,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DecisionPage:
        """A page of one card's (``card_hash``) or terminal's decisions, newest first."""
        return self._query(
            lambda: queries.list_decisions(
                self.pool,
                column=column,
                value=value,
                limit=limit,
                cursor=cursor,
                max_limit=self.settings.ledger_alerts_page_max,
            )
        )

    def record_labels(
        self, labels: Sequence[Label], apply: label_store.ApplyLabels | None = None
    ) -> list[LabelOutcome]:
        """Store labels as events; one outcome per label.

        ``apply`` receives the winning label of every labelled, known transaction before the
        call commits (see :func:`service.ledger.labels.record_labels`).
        """
        return self._query(lambda: label_store.record_labels(self.pool, labels, apply))

    def delete_older_than(self, days: int | None = None) -> RetentionResult:
        """Retention (default: ``ledger_retention_days``)."""
        keep = days if days is not None else self.settings.ledger_retention_days
        return self._query(lambda: delete_older_than(self.pool, keep))

    def close(self, drain_timeout: float = 5.0) -> None:
        """Try to drain for ``drain_timeout`` s, then stop; the rest stays spooled for next time."""
        if drain_timeout > 0 and self.writer.running:
            self.flush(drain_timeout)
        self.writer.stop()
        self.pool.close()
        self.spool.close()
