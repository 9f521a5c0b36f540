"""What every notification backend implements, and the error it raises.

Why one tiny interface: the outbox owns durability (retry, backoff, across restarts); a
backend knows how to deliver one message, how to tell whether an interrupted delivery
already got through (from ``progress`` and the message's outbox ``key``), and whether a
failure is worth retrying. Messages are plain dicts (``text``, ``blocks``, optional
``plot`` path), built when the alert is queued, so what is in the outbox is what is sent
(``text`` is plain text: the Slack backends escape it for mrkdwn).

Guarantees: bot and console deliver exactly once, even across a SIGKILL in mid-call (they
look up what an interrupted delivery did); the webhook backend cannot look anything up and
delivers at least once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Progress = Callable[[dict[str, Any]], None]


class DeliveryError(Exception):
    """Delivery failed. ``retryable`` False means retrying cannot help (bad token,
    unknown channel): the outbox parks the message as dead instead of retrying forever."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Notifier(Protocol):
    """A delivery backend (console, webhook, bot)."""

    name: str

    def send(self, message: dict[str, Any], progress: dict[str, Any],
             save_progress: Progress, *, key: str = "") -> None:
        """Deliver ``message`` (outbox key ``key``). ``progress`` holds what an earlier,
        interrupted attempt already did or started (e.g. the posted message's ts);
        call ``save_progress`` before and after each step that must not be repeated.
        Raise DeliveryError on failure."""
        ...
