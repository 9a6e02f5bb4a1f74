"""The Valkey history store: one round trip per batch, atomic per card and per terminal.

Keys (``ns`` is the namespace setting), hash-tagged so that each card's and each terminal's
keys live in one cluster slot and every script call touches one slot only:

* ``ns:{c:CARD}:h`` / ``ns:{t:TERMINAL}:h``: the history (a compact binary STRING);
* ``ns:{c:CARD}:i`` / ``ns:{t:TERMINAL}:i``: remembered transaction ids -> first result.

A batch becomes one ``EVALSHA`` of the update script (standalone: the whole batch in one
call; cluster: one call per slot, sent as one pipeline). The script computes the windows
server-side and returns fixed-size binary results, so the service's core only packs the
rows and unpacks a few numbers per row.

The parts: :mod:`~service.history.codec` packs ops and unpacks replies,
:mod:`~service.history.calls` connects and runs the scripts,
:mod:`~service.history.labels` applies labels, :mod:`~service.history.backfill` loads past
rows; this facade adds the circuit breaker and the counters.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from service.history import calls, codec, scripts
from service.history import labels as label_ops
from service.history.breaker import CircuitBreaker
from service.history.calls import STORE_ERRORS
from service.history.codec import check_row, transaction_tag
from service.history.model import (
    Aggregates,
    BackfillReport,
    HistorySettings,
    HistoryStatus,
    HistoryUnavailableError,
    Label,
    LabelReport,
    LateTransactionError,
    RawTransaction,
    event_seconds,
)

if TYPE_CHECKING:
    import pandas as pd

    from service.history.scripts import Script

__all__ = ["HistoryStore", "check_row", "transaction_tag"]

log = logging.getLogger(__name__)


class HistoryStore:
    """Per-card and per-terminal transaction history in Valkey (or Redis 7).

    Thread-safe: the scoring worker thread calls :meth:`update_and_read` synchronously (the
    event loop is not blocked, and a sync client costs less per call than an asyncio one).
    Every call either answers or fails fast: store errors and an open circuit breaker give
    ``None`` per row ("unavailable"; the caller scores without history).
    """

    def __init__(
        self, client: Any, settings: HistorySettings, bulk_client: Any | None = None
    ) -> None:
        self._client = client
        # Labels and backfill move many rows per call: their own connections and timeout.
        self._bulk = bulk_client if bulk_client is not None else client
        self.settings = settings
        self._breaker = CircuitBreaker(settings.failure_threshold, settings.reset_after)
        self._lock = threading.Lock()
        self._calls = 0
        self._unavailable_rows = 0
        self._failures = 0
        self._last_error: str | None = None
        self._keys = codec.Keys(settings.namespace)
        self._static_args = [
            str(settings.card_keep),
            str(settings.terminal_keep),
            str(settings.id_retention),
            str(settings.card_ttl_s * 1000),
            str(settings.terminal_ttl_s * 1000),
            str(settings.id_retention * 1000),
            str(settings.max_lateness) if settings.refuse_late else "-1",
            # Standalone: a row's card and terminal ops are in one call (checked together).
            "0" if settings.cluster else "1",
        ]

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> HistoryStore:
        """Connect lazily to ``valkey://`` / ``redis://`` (``rediss://`` for TLS) URLs.

        ``settings`` are :class:`HistorySettings` fields. Nothing is contacted here: the
        first call connects, so a store that is down at start-up does not stop the service.
        """
        config = HistorySettings(**settings)
        scoring = calls.connect(url, config, config.timeout)
        return cls(scoring, config, calls.connect(url, config, config.bulk_timeout))

    # -- keys --------------------------------------------------------------------------

    def card_keys(self, customer_id: str) -> tuple[str, str]:
        """The card's history key and remembered-ids key (one hash tag, one slot)."""
        return self._keys.card(customer_id)

    def terminal_keys(self, terminal_id: str) -> tuple[str, str]:
        """The terminal's history key and remembered-ids key (one hash tag, one slot)."""
        return self._keys.terminal(terminal_id)

    # -- scoring path ------------------------------------------------------------------

    def update_and_read(
        self, rows: Sequence[RawTransaction], *, record: bool = True, strict: bool = False
    ) -> list[Aggregates | None]:
        """Record a batch of transactions and return the aggregates each one gets.

        Rows are processed in order (two rows of one card in a batch: the second sees the
        first). Every aggregate counts the transaction itself as the offline aggregates do.
        A transaction id seen before (within ``id_retention``) is not recorded again and
        gets the aggregates stored the first time (``replayed=True``). ``record=False``
        reads only (what the rows would get), for file scoring that must not write.

        With ``refuse_late`` on, when recording, a row more than ``max_lateness`` behind its
        card's or terminal's newest transaction is refused (never recorded, for neither
        entity in standalone mode) and :class:`LateTransactionError` is raised once the call
        is done: the other rows are recorded and their aggregates are in the error, or, with
        ``strict``, nothing of the call is recorded (cluster mode: nothing of the refused
        row's slots).

        Returns one entry per row; ``None`` everywhere when the store is unavailable.
        Raises :class:`InvalidHistoryRowError` for a timestamp the store cannot hold.
        """
        if not rows:
            return []
        seconds = [event_seconds(row.timestamp) for row in rows]
        with self._lock:
            self._calls += 1
        if not self._breaker.allow():
            return self._unavailable(len(rows))
        groups = codec.update_groups(self._keys, rows, seconds, cluster=self.settings.cluster)
        mode = ("2" if strict else "1") if record else "0"
        argv_head = [mode, *self._static_args]
        try:
            replies = self._run(scripts.UPDATE, groups, argv_head)
        except STORE_ERRORS as exc:
            self._failed(exc)
            return self._unavailable(len(rows))
        self._breaker.success()
        results, refused = codec.decode_update(replies, groups, seconds)
        if refused:
            raise LateTransactionError(
                refused,
                results,
                recorded=not strict,
                max_lateness=self.settings.max_lateness,
            )
        return results

    def _run(
        self, script: Script, groups: Sequence[codec.Group], argv_head: list[str]
    ) -> list[Any]:
        """One round trip: one EVALSHA per group (pipelined in cluster mode)."""
        batch = [(group.keys, [*argv_head, b"".join(group.ops), *group.ids]) for group in groups]
        return calls.evalsha_many(self._client, script, batch, cluster=self.settings.cluster)

    def _run_bulk(
        self, script: Script, batch: Sequence[tuple[Sequence[Any], Sequence[Any]]]
    ) -> list[Any]:
        """Like :meth:`_run` on the bulk connection (labels: many rows, a longer timeout)."""
        return calls.evalsha_many(self._bulk, script, batch, cluster=self.settings.cluster)

    # -- labels and backfill -----------------------------------------------------------

    def record_labels(self, labels: Iterable[Label]) -> LabelReport:
        """Record fraud labels (chargebacks) and confirmed genuines in terminal histories.

        A transaction older than the label delay with no fraud label already counts as
        genuine; a fraud label turns it into a fraud for every later window and fraud run.
        One round trip for the terminal records (one call per slot in cluster mode), plus
        one before it when some fraud label has no ``plain`` flag but names its card (the
        card's history gives it). Idempotent: a label sets its record's bits to the label.
        ``LabelReport.found`` says per label whether its record was held. Raises
        :class:`HistoryUnavailableError` when the store is down (labels must not be dropped
        silently: the caller retries).
        """
        items = list(labels)
        if not items:
            return LabelReport(0, 0)
        if not self._breaker.allow():
            raise HistoryUnavailableError("history store unavailable (circuit breaker open)")
        try:
            report = label_ops.record_labels(
                self._run_bulk, self._keys, items, cluster=self.settings.cluster
            )
        except STORE_ERRORS as exc:
            self._failed(exc)
            raise HistoryUnavailableError(str(exc)) from exc
        self._breaker.success()
        return report

    def backfill(self, frame: pd.DataFrame, chunk_entities: int = 2_000) -> BackfillReport:
        """Load past transactions (and known labels) without scoring them.

        ``frame`` has ``timestamp, customer_id, terminal_id, amount`` and optionally
        ``is_fraud`` (1 fraud, 0 genuine, missing = no label yet). Rows are merged into any
        history already stored, in time order. Transaction ids are not remembered.
        """
        from service.history.backfill import load_frame  # noqa: PLC0415  (pandas path)

        try:
            return load_frame(self, frame, chunk_entities)
        except STORE_ERRORS as exc:
            self._failed(exc)
            raise HistoryUnavailableError(str(exc)) from exc

    def _merge(self, items: Sequence[tuple[str, int, bytes]]) -> None:
        """Merge pre-built record blobs (key, kind, records) into histories, one pipeline."""
        calls.merge(self._bulk, self.settings, items)

    # -- inspection, health ------------------------------------------------------------

    def card_history(self, customer_id: str) -> list[tuple[int, float, int]]:
        """The card's stored records as (time, amount, bits): for tests and debugging."""
        blob = self._client.get(self.card_keys(customer_id)[0]) or b""
        body = blob[scripts.CARD_HEADER :]
        return list(struct.iter_unpack("<IdH", body))

    def terminal_history(self, terminal_id: str) -> tuple[tuple[int, ...], list[tuple[int, int]]]:
        """The terminal's run summary header and records (time, bits): tests, debugging."""
        blob = self._client.get(self.terminal_keys(terminal_id)[0]) or b""
        if not blob:
            return (0, 0, 0, 0), []
        header = struct.unpack_from("<IIII", blob)
        return header, list(struct.iter_unpack("<IH", blob[scripts.TERMINAL_HEADER :]))

    @property
    def status(self) -> HistoryStatus:
        """Breaker state and counters (for readiness details and metrics)."""
        state = self._breaker.state
        with self._lock:
            return HistoryStatus(
                breaker=str(state),
                available=state != "open",
                calls=self._calls,
                unavailable_rows=self._unavailable_rows,
                failures=self._failures,
                last_error=self._last_error,
            )

    def ping(self) -> bool:
        """Whether the store answers now (does not touch the breaker)."""
        try:
            return bool(self._client.ping())
        except STORE_ERRORS:
            return False

    def close(self) -> None:
        """Close the connections."""
        self._client.close()
        if self._bulk is not self._client:
            self._bulk.close()

    def _unavailable(self, n: int) -> list[Aggregates | None]:
        with self._lock:
            self._unavailable_rows += n
        return [None] * n

    def _failed(self, exc: BaseException) -> None:
        self._breaker.failure()
        with self._lock:
            self._failures += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
        log.warning("history store call failed: %s", self._last_error)
