"""The history store's circuit breaker, driven by a fake clock."""

from __future__ import annotations

import pytest

from service.history.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_refuses_calls() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_after=1.0, clock=clock)
    assert breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=Clock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED


def test_half_open_lets_one_probe_through_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=1.0, clock=clock)
    breaker.failure()
    clock.now = 1.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # others keep failing fast while it runs
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_a_failed_probe_opens_again_for_another_wait() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after=1.0, clock=clock)
    for _ in range(3):
        breaker.failure()
    clock.now = 1.5
    assert breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now = 2.5
    assert breaker.allow()


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
