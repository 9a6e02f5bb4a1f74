"""A small thread-safe circuit breaker: stop waiting on a store that is down or slow.

Closed: every call goes through. After ``failure_threshold`` consecutive failures it opens:
calls are refused at once for ``reset_after`` seconds. Then one call is let through as a
probe (half-open); its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    """Where the breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures and decides whether the next call may try the store."""

    def __init__(
        self,
        failure_threshold: int = 2,
        reset_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_after <= 0:
            msg = "failure_threshold must be >= 1 and reset_after > 0"
            raise ValueError(msg)
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker past its wait reports half-open)."""
        with self._lock:
            if self._state is BreakerState.OPEN and self._wait_over():
                return BreakerState.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether a call may go to the store now (a True in half-open makes it the probe)."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.OPEN and self._wait_over():
                self._state = BreakerState.HALF_OPEN
                self._probing = False
            if self._state is BreakerState.HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        """Record a call that worked: the breaker closes."""
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._probing = False

    def failure(self) -> None:
        """Record a failed call: opens after the threshold, or at once from half-open."""
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()

    def _wait_over(self) -> bool:
        return self._clock() - self._opened_at >= self.reset_after
