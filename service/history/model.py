"""Typed values of the history store's API: settings, inputs, results and status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, NamedTuple, Protocol

from fraud_contract import windows as w

_EPOCH: Final = datetime(1970, 1, 1)
_SECOND: Final = timedelta(seconds=1)
#: Event times the store can hold (records keep unsigned 32-bit epoch seconds).
MIN_SECONDS: Final = 0
MAX_SECONDS: Final = 2**32 - 1


class RawTransaction(Protocol):
    """What the store needs of a transaction (``fraud_contract.schema.Transaction`` fits)."""

    @property
    def transaction_id(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def customer_id(self) -> str: ...
    @property
    def terminal_id(self) -> str: ...
    @property
    def amount(self) -> float: ...


class InvalidHistoryRowError(ValueError):
    """A transaction the store cannot hold; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class LateTransactionError(InvalidHistoryRowError):
    """Rows more than ``max_lateness`` behind their card's or terminal's newest transaction.

    Such a row is never recorded: its windows could miss rows the store has already trimmed.
    ``refused`` maps each refused row (index in the call) to ``"card"`` or ``"terminal"``
    (whose newest row is too far ahead) or ``"batch"`` (all or nothing: not recorded because
    another row was refused). ``results`` are the other rows' aggregates (``None`` for the
    refused ones); ``recorded`` says whether those other rows were recorded.
    """

    def __init__(
        self,
        refused: dict[int, str],
        results: list[Aggregates | None],
        *,
        recorded: bool,
        max_lateness: int,
    ) -> None:
        super().__init__(
            "timestamp",
            f"more than {max_lateness} s behind the newest transaction of its card or terminal",
        )
        self.refused = refused
        self.results = results
        self.recorded = recorded
        self.max_lateness = max_lateness

    def reason(self, row: int) -> str:
        """Why ``row`` was refused, for a 422's ``reason``."""
        entity = self.refused.get(row)
        if entity in ("card", "terminal"):
            return (
                f"more than {self.max_lateness} s behind the newest transaction of its {entity} "
                "(its windows may miss rows already trimmed)"
            )
        return "not recorded: another transaction of the call was refused"


class HistoryUnavailableError(RuntimeError):
    """The store did not answer (down, slow, or the circuit breaker is open)."""


def event_seconds(moment: datetime) -> int:
    """Epoch seconds of the wall-clock time as written (offset dropped, as the schema says).

    Fractions of a second are floored, as the offline aggregates' ``datetime64[s]`` does.
    """
    seconds = (moment.replace(tzinfo=None) - _EPOCH) // _SECOND
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise InvalidHistoryRowError("timestamp", "must lie between 1970 and 2106 for the history")
    return seconds


@dataclass(frozen=True)
class HistorySettings:
    """How the store trims, expires, deduplicates and gives up.

    Times are seconds. Event time (the transactions' timestamps) decides windows, trimming
    and the retention of remembered ids; the TTLs (wall clock, refreshed on every write)
    remove the keys of idle cards and terminals.
    """

    #: Key prefix (several deployments can share one Valkey).
    namespace: str = "fh"
    #: Valkey cluster mode (keys are hash-tagged per card / terminal either way).
    cluster: bool = False
    #: Socket connect and read timeout of the scoring path: a slower store counts as a failure.
    timeout: float = 0.1
    #: Read timeout of labels and backfill (many rows per call).
    bulk_timeout: float = 30.0
    #: Consecutive failures that open the circuit breaker, and how long it stays open.
    failure_threshold: int = 2
    reset_after: float = 1.0
    #: How long (event time) a transaction id is remembered for idempotent retries.
    id_retention: int = 24 * 3600
    #: How far (event time) a transaction may arrive behind its card's or terminal's newest
    #: and still find every row its windows need. Exact up to REFERENCE_LAG_DAYS (beyond that
    #: the high/plain flags of newer rows are not revised).
    max_lateness: int = 24 * 3600
    #: Refuse (never record) a transaction more than max_lateness behind its card's or
    #: terminal's newest: its windows could miss trimmed rows (LateTransactionError, a 422 in
    #: the service). Off: such rows are recorded, their windows approximate.
    refuse_late: bool = True
    #: Wall-clock TTLs; None derives them from the windows (history span + max_lateness).
    card_ttl: int | None = None
    terminal_ttl: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.max_lateness <= w.REFERENCE_LAG_DAYS * w.SECONDS_PER_DAY:
            msg = "max_lateness must be between 0 and the reference lag (14 days)"
            raise ValueError(msg)
        if self.id_retention <= 0 or self.timeout <= 0 or self.bulk_timeout <= 0:
            msg = "id_retention and the timeouts must be positive"
            raise ValueError(msg)

    @property
    def card_keep(self) -> int:
        """Event-time span of card rows kept behind the card's newest row."""
        return w.CARD_HISTORY_SECONDS + self.max_lateness

    @property
    def terminal_keep(self) -> int:
        """Event-time span of terminal rows kept (older ones fold into the run summary)."""
        return w.TERMINAL_HISTORY_SECONDS + self.max_lateness

    @property
    def card_ttl_s(self) -> int:
        """Wall-clock TTL of a card's keys."""
        return self.card_ttl if self.card_ttl is not None else self.card_keep

    @property
    def terminal_ttl_s(self) -> int:
        """Wall-clock TTL of a terminal's keys."""
        return self.terminal_ttl if self.terminal_ttl is not None else self.terminal_keep


class Aggregates(NamedTuple):
    """The contract's aggregates of one transaction, computed from the store.

    Field names are exactly ``fraud_contract.schema.AGGREGATE_FIELDS``; ``replayed`` says the
    transaction id was seen before and these are the aggregates stored the first time. A
    named tuple: built for every scored row, it must be cheap.
    """

    customer_nb_tx_1d: int
    customer_nb_tx_7d: int
    customer_nb_tx_30d: int
    customer_avg_amount_1d: float
    customer_avg_amount_7d: float
    customer_avg_amount_30d: float
    customer_std_amount_30d: float
    customer_avg_amount_ref: float
    customer_nb_high_amount_1d: int
    customer_nb_high_amount_7d: int
    terminal_nb_tx_1d: int
    terminal_nb_tx_7d: int
    terminal_nb_tx_30d: int
    terminal_risk_1d: float
    terminal_risk_7d: float
    terminal_risk_30d: float
    terminal_fraud_run_nb: int
    terminal_fraud_run_nb_plain: int
    terminal_fraud_run_days: float
    replayed: bool = False

    def as_fields(self) -> dict[str, float | int]:
        """The aggregates as contract field -> value (without ``replayed``)."""
        return dict(zip(AGGREGATE_NAMES, self[:-1], strict=True))


AGGREGATE_NAMES: Final[tuple[str, ...]] = Aggregates._fields[:-1]


@dataclass(frozen=True, slots=True)
class Label:
    """A fraud label (chargeback) or a confirmed genuine for one transaction.

    The record is found by terminal and time, and by transaction id when given. A fraud
    also needs its "plain amount" flag (amount at most 2x the card's reference): ``plain``
    when the caller knows it (the ledger keeps it per decision), else read from the card's
    history when ``customer_id`` is given (one more round trip), else not plain.
    """

    terminal_id: str
    timestamp: datetime
    fraud: bool
    transaction_id: str | None = None
    customer_id: str | None = None
    plain: bool | None = None


@dataclass(frozen=True)
class LabelReport:
    """What :meth:`HistoryStore.record_labels` did.

    ``found`` holds, per label in order, how many records it marked (0: not held).
    """

    labels: int
    matched: int
    found: tuple[int, ...] = ()

    @property
    def unmatched(self) -> int:
        """Labels whose transaction the store does not hold (not seen, or forgotten)."""
        return self.labels - self.matched


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill loaded and how fast."""

    rows: int
    cards: int
    terminals: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """Loading speed."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class HistoryStatus:
    """The store's health for readiness and metrics."""

    breaker: str
    available: bool
    calls: int
    unavailable_rows: int
    failures: int
    last_error: str | None
