"""Admission control: the one place that decides to shed a request (503), and its log."""

from __future__ import annotations

import logging
import time
from typing import Protocol, runtime_checkable

from service.errors import Overloaded
from service.logs import LOGGER_NAME

logger = logging.getLogger(LOGGER_NAME)


@runtime_checkable
class QueueClock(Protocol):
    """What admission needs from the adaptive batcher: how long its oldest job has waited."""

    def oldest_wait_s(self, now: float) -> float:
        """Seconds the oldest unanswered job has been queued or scored."""
        ...


class Admission:
    """Per-worker admission control, the one place that decides to shed (503).

    * at most ``limit`` ``/v1`` requests in flight;
    * single scores also while the adaptive batcher's oldest job has waited longer than
      ``queue_budget_s`` and at least ``queue_floor`` requests (one full adaptive batch) are
      in flight: queueing delay, not a count, says when the worker is behind, so the
      requests it admits during an overload still meet their latency objective;
    * with ``per_key_limit`` set, each API key holds at most that many slots, so one client
      cannot take every slot from the others.
    """

    __slots__ = (
        "by_key",
        "in_flight",
        "limit",
        "per_key_limit",
        "queue",
        "queue_budget_s",
        "queue_floor",
    )

    def __init__(
        self,
        limit: int,
        per_key_limit: int = 0,
        queue_budget_s: float = 0.0,
        queue_floor: int = 0,
        queue: QueueClock | None = None,
    ) -> None:
        self.limit = limit
        self.queue_floor = queue_floor
        self.per_key_limit = per_key_limit
        self.queue_budget_s = queue_budget_s
        self.queue = queue
        self.in_flight = 0
        self.by_key: dict[int, int] = {}

    @property
    def full(self) -> bool:
        """No room for one more request."""
        return self.in_flight >= self.limit

    def behind(self) -> bool:
        """The batcher's oldest job has waited past the queueing budget, with a queue to show.

        Below ``queue_floor`` requests in flight nothing is shed on delay alone: a pause of
        the whole process (a busy neighbour, the batcher's warm-up) delays a handful of
        requests without the worker being overloaded.
        """
        if self.queue is None or self.queue_budget_s <= 0 or self.in_flight < self.queue_floor:
            return False
        return self.queue.oldest_wait_s(time.perf_counter()) > self.queue_budget_s

    def enter(self, key: int | None) -> None:
        """Count a request (of API key number ``key``) in flight, or shed it (503)."""
        if self.in_flight >= self.limit:
            raise Overloaded
        if key is not None and self.per_key_limit:
            held = self.by_key.get(key, 0)
            if held >= self.per_key_limit:
                raise Overloaded("Too many requests in flight for this API key; retry shortly.")
            self.by_key[key] = held + 1
        self.in_flight += 1

    def leave(self, key: int | None) -> None:
        """The request is answered."""
        self.in_flight -= 1
        if key is not None and self.per_key_limit:
            self.by_key[key] -= 1


class ShedLog:
    """One log line per interval for load shedding, not one per shed request.

    Under overload a line per 503 would add work exactly when the worker has none to spare;
    the counts reach the logs with the next shed request after the interval, and
    ``fraud_input_rejections_total{reason="overloaded"}`` counts each one as it happens.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.shed: dict[str, int] = {}
        self.since = time.monotonic()

    def count(self, path: str) -> None:
        """Count one shed request; log the counts when the interval has passed."""
        self.shed[path] = self.shed.get(path, 0) + 1
        now = time.monotonic()
        if now - self.since >= self.interval_s:
            logger.warning(
                "requests shed (503 overloaded)",
                extra={"shed": self.shed, "interval_s": round(now - self.since, 3)},
            )
            self.shed = {}
            self.since = now
