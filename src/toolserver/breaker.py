"""A circuit breaker per provider.

When an upstream is down, waiting for each call to time out ties up in-flight
slots and makes every client slow. After ``failures`` consecutive failures the
breaker *opens*: calls fail immediately with a clear tool error for
``cooldown_s``. Then it goes *half-open* and lets exactly one trial call
through; success closes it, failure opens it for another cool-down.

The breaker is driven by the event loop only (no locks) and reads the time
through an injectable clock so its state machine is testable without sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "CircuitOpenError"]

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"

T = TypeVar("T")


class CircuitOpenError(Exception):
    """Raised instead of calling the provider while the circuit is open."""

    def __init__(self, name: str, retry_in_s: float) -> None:
        super().__init__(f"circuit open for provider {name} (retry in {retry_in_s:.1f} s)")
        self.name = name
        self.retry_in_s = retry_in_s


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = max(1, failures)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state: str = CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self.opened_count = 0

    @property
    def state(self) -> str:
        """Current state; an open circuit whose cool-down elapsed reads as half-open."""
        if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            return HALF_OPEN
        return self._state

    def _admit(self) -> None:
        state = self.state
        if state == CLOSED:
            return
        if state == HALF_OPEN and not self._trial_in_flight:
            self._state = HALF_OPEN
            self._trial_in_flight = True
            return
        remaining = max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
        raise CircuitOpenError(self.name, remaining)

    def _record(self, ok: bool) -> None:
        if ok:
            self._consecutive_failures = 0
            self._state = CLOSED
            self._trial_in_flight = False
            return
        self._consecutive_failures += 1
        if self._state == HALF_OPEN or self._consecutive_failures >= self.threshold:
            self._state = OPEN
            self._opened_at = self._clock()
            self._trial_in_flight = False
            self.opened_count += 1

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` through the breaker; any exception counts as a failure."""
        self._admit()
        try:
            result = await fn()
        except BaseException as exc:
            # Cancellation (client gone, shutdown) says nothing about the
            # provider's health: free the trial slot without counting it.
            if isinstance(exc, Exception):
                self._record(False)
            elif self._trial_in_flight:
                self._trial_in_flight = False
            raise
        self._record(True)
        return result
