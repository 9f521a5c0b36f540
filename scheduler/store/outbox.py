"""The persistent outbox: alerts are written to the state database first and delivered
from there, so a Slack outage or a restart loses none and sends none twice.

Why: a regression found at 03:00 while Slack is down must still arrive, exactly once.
Each message has a unique key (e.g. the regression's identity), so queuing it again is a
no-op; delivery marks it ``sent`` right after the backend returns. What a delivery has
started or done (posting, the posted message's ts, the plot uploaded) is saved as
progress before and after each step, and handed back to the backend on the next try: a
delivery cut short by a kill, a timeout or a 5xx is looked up before it is repeated
(bot, console: exactly once; webhook: at least once, it cannot look anything up).
Failed deliveries are retried with exponential backoff; after ``max_attempts`` (or a
non-retryable error such as a bad token) a message is parked as ``dead`` — still in the
database and shown by ``status``, never silently dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..publish.notify.base import DeliveryError, Notifier
from .state import State

log = logging.getLogger("scheduler.store.outbox")


def backoff_s(attempts: int) -> float:
    """5 s, 10 s, 20 s ... capped at 10 minutes."""
    return float(min(5 * 2 ** max(attempts - 1, 0), 600))


class Outbox:
    """Queue and deliver messages through one notifier."""

    def __init__(self, state: State, notifier: Notifier, *, max_attempts: int = 8) -> None:
        self.state = state
        self.notifier = notifier
        self.max_attempts = max_attempts
        # the work job and the outbox job may both flush: never deliver one item twice
        self._flushing = threading.Lock()

    def put(self, key: str, kind: str, message: dict[str, Any]) -> bool:
        """Queue a message once (False if this key was queued before)."""
        return self.state.outbox_put(key, kind, message)

    def flush(self, *, now: float | None = None) -> tuple[int, int]:
        """Try due messages in order; returns (sent, failed). Stops at the first retryable
        failure (the rest are still due at the next flush)."""
        with self._flushing:
            return self._flush(now)

    def _flush(self, now: float | None) -> tuple[int, int]:
        sent = failed = 0
        for item in self.state.outbox_due(now):
            progress = dict(item.progress)

            def save(p: dict[str, Any], _id: int = item.id) -> None:
                self.state.outbox_progress(_id, p)

            try:
                self.notifier.send(item.payload, progress, save, key=item.key)
            except DeliveryError as exc:
                failed += 1
                attempts = item.attempts + 1
                dead = (not exc.retryable) or attempts >= self.max_attempts
                retry_at = time.time() + backoff_s(attempts)
                self.state.outbox_failed(item.id, str(exc), retry_at, dead=dead)
                if dead:
                    log.error("alert %s parked after %d attempt(s): %s", item.key, attempts, exc)
                else:
                    log.warning("alert %s not delivered (attempt %d, retry in %.0fs): %s",
                                item.key, attempts, backoff_s(attempts), exc)
                    # the service is down or throttling us: leave the rest for the next
                    # flush instead of spending the in-call retries on each of them
                    break
                continue
            self.state.outbox_sent(item.id)
            sent += 1
        return sent, failed
