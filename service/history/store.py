"""The Valkey history store: one round trip per batch, atomic per card and per terminal.

Keys (``ns`` is the namespace setting), hash-tagged so that each card's and each terminal's
keys live in one cluster slot and every script call touches one slot only:

* ``ns:{c:CARD}:h`` / ``ns:{t:TERMINAL}:h``: the history (a compact binary STRING);
* ``ns:{c:CARD}:i`` / ``ns:{t:TERMINAL}:i``: remembered transaction ids -> first result.

A batch becomes one ``EVALSHA`` of the update script (standalone: the whole batch in one
call; cluster: one call per slot, sent as one pipeline). The script computes the windows
server-side and returns fixed-size binary results, so the service's core only packs the
rows and unpacks a few numbers per row.
"""

from __future__ import annotations

import logging
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import valkey
from valkey.backoff import NoBackoff
from valkey.crc import key_slot
from valkey.exceptions import NoScriptError, ValkeyError
from valkey.retry import Retry

from fraud_contract.windows import SECONDS_PER_DAY
from service.history import scripts
from service.history.breaker import CircuitBreaker
from service.history.model import (
    Aggregates,
    BackfillReport,
    HistorySettings,
    HistoryStatus,
    HistoryUnavailableError,
    InvalidHistoryRowError,
    Label,
    LabelReport,
    RawTransaction,
    event_seconds,
)

if TYPE_CHECKING:
    import pandas as pd

    from service.history.scripts import Script

log = logging.getLogger(__name__)

_OP = struct.Struct(scripts.OP_FORMAT)
_CARD_RESULT = struct.Struct(scripts.CARD_RESULT_FORMAT)
_TERMINAL_RESULT = struct.Struct(scripts.TERMINAL_RESULT_FORMAT)
_LABEL_OP = struct.Struct(scripts.LABEL_OP_FORMAT)
_TAG_MASK: Final = (1 << scripts.TAG_BITS) - 1
_CARD, _TERMINAL = 1, 2
_REPLAYED = 1
#: Errors that mean "the store did not answer properly": the caller scores without history.
_STORE_ERRORS: Final = (ValkeyError, OSError)


def transaction_tag(transaction_id: str | None) -> int:
    """The 13-bit tag that lets a label find its record among rows of the same second."""
    return zlib.crc32(transaction_id.encode()) & _TAG_MASK if transaction_id else 0


class _Group:
    """The keys and ops of one script call (one slot in cluster mode)."""

    __slots__ = ("ids", "key_index", "keys", "ops", "targets")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.key_index: dict[str, int] = {}
        self.ops: list[bytes] = []
        self.ids: list[str] = []
        self.targets: list[tuple[int, int]] = []  # (row, kind) of each op

    def entity(self, history_key: str, ids_key: str) -> int:
        index = self.key_index.get(history_key)
        if index is None:
            index = len(self.keys) + 1  # Lua's KEYS is 1-based
            self.key_index[history_key] = index
            self.keys += (history_key, ids_key)
        return index


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
        ns = settings.namespace
        self._card_prefix = f"{ns}:{{c:"
        self._terminal_prefix = f"{ns}:{{t:"
        self._static_args = [
            str(settings.card_keep),
            str(settings.terminal_keep),
            str(settings.id_retention),
            str(settings.card_ttl_s * 1000),
            str(settings.terminal_ttl_s * 1000),
            str(settings.id_retention * 1000),
        ]

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> HistoryStore:
        """Connect lazily to ``valkey://`` / ``redis://`` (``rediss://`` for TLS) URLs.

        ``settings`` are :class:`HistorySettings` fields. Nothing is contacted here: the
        first call connects, so a store that is down at start-up does not stop the service.
        """
        config = HistorySettings(**settings)
        scoring = _connect(url, config, config.timeout)
        return cls(scoring, config, _connect(url, config, config.bulk_timeout))

    # -- keys --------------------------------------------------------------------------

    def card_keys(self, customer_id: str) -> tuple[str, str]:
        """The card's history key and remembered-ids key (one hash tag, one slot)."""
        base = f"{self._card_prefix}{customer_id}}}"
        return f"{base}:h", f"{base}:i"

    def terminal_keys(self, terminal_id: str) -> tuple[str, str]:
        """The terminal's history key and remembered-ids key (one hash tag, one slot)."""
        base = f"{self._terminal_prefix}{terminal_id}}}"
        return f"{base}:h", f"{base}:i"

    # -- scoring path ------------------------------------------------------------------

    def update_and_read(
        self, rows: Sequence[RawTransaction], *, record: bool = True
    ) -> list[Aggregates | None]:
        """Record a batch of transactions and return the aggregates each one gets.

        Rows are processed in order (two rows of one card in a batch: the second sees the
        first). Every aggregate counts the transaction itself as the offline aggregates do.
        A transaction id seen before (within ``id_retention``) is not recorded again and
        gets the aggregates stored the first time (``replayed=True``). ``record=False``
        reads only (what the rows would get), for file scoring that must not write.

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
        groups = self._update_groups(rows, seconds)
        argv_head = ["1" if record else "0", *self._static_args]
        try:
            replies = self._run(scripts.UPDATE, groups, argv_head)
        except _STORE_ERRORS as exc:
            self._failed(exc)
            return self._unavailable(len(rows))
        self._breaker.success()
        return _decode(replies, groups, seconds)

    def _update_groups(self, rows: Sequence[RawTransaction], seconds: list[int]) -> list[_Group]:
        cluster = self.settings.cluster
        by_slot: dict[int, _Group] = {}
        single = _Group()
        pack = _OP.pack
        for i, row in enumerate(rows):
            amount = float(row.amount)
            if not amount >= 0.0 or amount == float("inf"):
                raise InvalidHistoryRowError("amount", "must be finite and >= 0")
            txid = row.transaction_id or ""
            tag = transaction_tag(txid)
            t = seconds[i]
            for kind, keys in (
                (_CARD, self.card_keys(row.customer_id)),
                (_TERMINAL, self.terminal_keys(row.terminal_id)),
            ):
                if cluster:
                    slot = key_slot(keys[0].encode())
                    group = by_slot.get(slot)
                    if group is None:
                        group = by_slot[slot] = _Group()
                else:
                    group = single
                index = group.entity(*keys)
                group.ops.append(pack(kind, index, t, amount, tag))
                group.ids.append(txid)
                group.targets.append((i, kind))
        return list(by_slot.values()) if cluster else [single]

    def _run(self, script: Script, groups: Sequence[_Group], argv_head: list[str]) -> list[Any]:
        """One round trip: one EVALSHA per group (pipelined in cluster mode)."""
        calls = [(group.keys, [*argv_head, b"".join(group.ops), *group.ids]) for group in groups]
        return self._evalsha_many(script, calls)

    def _evalsha_many(
        self,
        script: Script,
        calls: Sequence[tuple[Sequence[Any], Sequence[Any]]],
        *,
        bulk: bool = False,
    ) -> list[Any]:
        """Run ``script`` once per (keys, args), loading it on the servers when missing."""
        client = self._bulk if bulk else self._client
        for attempt in (0, 1):
            try:
                if len(calls) == 1 and not self.settings.cluster:
                    keys, args = calls[0]
                    return [client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)]
                pipe = client.pipeline(transaction=False)
                for keys, args in calls:
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                replies = pipe.execute(raise_on_error=False)
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                return list(replies)
            except NoScriptError:
                if attempt:
                    raise
                self._load_scripts(client)
        raise AssertionError("unreachable")

    @staticmethod
    def _load_scripts(client: Any) -> None:
        for script in scripts.ALL_SCRIPTS:
            client.script_load(script.source)

    # -- labels and backfill -----------------------------------------------------------

    def record_labels(self, labels: Iterable[Label]) -> LabelReport:
        """Record fraud labels (chargebacks) and confirmed genuines in terminal histories.

        A transaction older than the label delay with no fraud label already counts as
        genuine; a fraud label turns it into a fraud for every later window and fraud run.
        Two round trips: the card histories give each fraud's "plain amount" flag, then the
        terminal records are updated. Raises :class:`HistoryUnavailableError` when the store is
        down (labels must not be dropped silently: the caller retries).
        """
        items = list(labels)
        if not items:
            return LabelReport(0, 0)
        if not self._breaker.allow():
            raise HistoryUnavailableError("history store unavailable (circuit breaker open)")
        try:
            plain = self._plain_flags(items)
            calls: dict[int | None, tuple[list[str], list[bytes]]] = {}
            order: list[tuple[int | None, int]] = []
            for item, is_plain in zip(items, plain, strict=True):
                key = self.terminal_keys(item.terminal_id)[0]
                slot = key_slot(key.encode()) if self.settings.cluster else None
                keys, ops = calls.setdefault(slot, ([], []))
                order.append((slot, len(keys)))
                keys.append(key)
                flags = (
                    (1 if item.transaction_id else 0)
                    + 2 * bool(item.fraud)
                    + 4 * (bool(item.fraud) and is_plain)
                )
                ops.append(
                    _LABEL_OP.pack(
                        event_seconds(item.timestamp), transaction_tag(item.transaction_id), flags
                    )
                )
            slots = list(calls)
            replies = self._evalsha_many(
                scripts.LABEL, [(calls[s][0], [b"".join(calls[s][1])]) for s in slots], bulk=True
            )
        except _STORE_ERRORS as exc:
            self._failed(exc)
            raise HistoryUnavailableError(str(exc)) from exc
        self._breaker.success()
        by_slot = dict(zip(slots, replies, strict=True))
        matched = sum(1 for slot, j in order if int(by_slot[slot][j]) > 0)
        return LabelReport(labels=len(items), matched=matched)

    def _plain_flags(self, items: Sequence[Label]) -> list[bool]:
        """Each fraud label's "ordinary amount for its card" flag, read from the card."""
        wanted = [i for i, item in enumerate(items) if item.fraud and item.customer_id is not None]
        flags = [False] * len(items)
        if not wanted:
            return flags
        calls: dict[int | None, tuple[list[str], list[bytes], list[int]]] = {}
        for i in wanted:
            item = items[i]
            key = self.card_keys(item.customer_id or "")[0]
            slot = key_slot(key.encode()) if self.settings.cluster else None
            keys, ops, index = calls.setdefault(slot, ([], [], []))
            keys.append(key)
            index.append(i)
            ops.append(
                _LABEL_OP.pack(
                    event_seconds(item.timestamp),
                    transaction_tag(item.transaction_id),
                    1 if item.transaction_id else 0,
                )
            )
        slots = list(calls)
        replies = self._evalsha_many(
            scripts.PLAIN, [(calls[s][0], [b"".join(calls[s][1])]) for s in slots], bulk=True
        )
        for slot, reply in zip(slots, replies, strict=True):
            for i, found in zip(calls[slot][2], reply, strict=True):
                flags[i] = int(found) == 1
        return flags

    def backfill(self, frame: pd.DataFrame, chunk_entities: int = 2_000) -> BackfillReport:
        """Load past transactions (and known labels) without scoring them.

        ``frame`` has ``timestamp, customer_id, terminal_id, amount`` and optionally
        ``is_fraud`` (1 fraud, 0 genuine, missing = no label yet). Rows are merged into any
        history already stored, in time order. Transaction ids are not remembered.
        """
        from service.history.backfill import load_frame  # noqa: PLC0415  (pandas path)

        try:
            return load_frame(self, frame, chunk_entities)
        except _STORE_ERRORS as exc:
            self._failed(exc)
            raise HistoryUnavailableError(str(exc)) from exc

    def _merge(self, items: Sequence[tuple[str, int, bytes]]) -> None:
        """Merge pre-built record blobs (key, kind, records) into histories, one pipeline."""
        settings = self.settings
        for attempt in (0, 1):
            pipe = self._bulk.pipeline(transaction=False)
            for key, kind, blob in items:
                keep = settings.card_keep if kind == _CARD else settings.terminal_keep
                ttl = (settings.card_ttl_s if kind == _CARD else settings.terminal_ttl_s) * 1000
                pipe.execute_command(
                    "EVALSHA", scripts.MERGE.sha, 1, key, str(kind), blob, str(keep), str(ttl)
                )
            replies = pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                self._load_scripts(self._bulk)
                continue
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return

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
        except _STORE_ERRORS:
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


def _connect(url: str, config: HistorySettings, timeout: float) -> Any:
    """A lazily connecting client (nothing is contacted before the first command)."""
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": min(timeout, 10 * config.timeout),
        # One immediate retry on a broken connection (a pooled socket from before a store
        # restart), none on timeouts: a slow store must fail fast.
        "retry": Retry(NoBackoff(), 1, supported_errors=(valkey.ConnectionError,)),
        "retry_on_timeout": False,
    }
    if config.cluster:
        return valkey.ValkeyCluster.from_url(url, cluster_error_retry_attempts=1, **common)
    return valkey.Valkey.from_url(url, health_check_interval=0, **common)


def _decode(
    replies: Sequence[bytes], groups: Sequence[_Group], seconds: Sequence[int]
) -> list[Aggregates | None]:
    """Turn the scripts' binary replies into one :class:`Aggregates` per row."""
    n = len(seconds)
    card: list[tuple[Any, ...]] = [()] * n
    terminal: list[tuple[Any, ...]] = [()] * n
    unpack_card, unpack_terminal = _CARD_RESULT.unpack_from, _TERMINAL_RESULT.unpack_from
    card_size, terminal_size = _CARD_RESULT.size, _TERMINAL_RESULT.size
    for reply, group in zip(replies, groups, strict=True):
        offset = 0
        for row, kind in group.targets:
            if kind == _CARD:
                card[row] = unpack_card(reply, offset)
                offset += card_size
            else:
                terminal[row] = unpack_terminal(reply, offset)
                offset += terminal_size
    out: list[Aggregates | None] = []
    append = out.append
    for row in range(n):
        cs, c1, c7, c30, m1, m7, m30, std, ref, h1, h7 = card[row]
        _, n1, n7, n30, f1, f7, f30, rn, rp, rf = terminal[row]
        append(
            Aggregates(
                c1,
                c7,
                c30,
                m1,
                m7,
                m30,
                std,
                ref,
                h1,
                h7,
                n1,
                n7,
                n30,
                f1 / n1 if n1 else 0.0,
                f7 / n7 if n7 else 0.0,
                f30 / n30 if n30 else 0.0,
                rn,
                rp,
                (seconds[row] - rf) / SECONDS_PER_DAY if rn else 0.0,
                cs == _REPLAYED,
            )
        )
    return out


def check_row(row: RawTransaction) -> None:
    """Raise :class:`InvalidHistoryRowError` when the store cannot hold a row (early checks)."""
    event_seconds(row.timestamp)
    amount = float(row.amount)
    if not 0.0 <= amount < float("inf"):
        raise InvalidHistoryRowError("amount", "must be finite and >= 0")
