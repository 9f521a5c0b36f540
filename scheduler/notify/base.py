"""What every notification backend implements, and the error it raises.

Why one tiny interface: the outbox owns durability (retry, backoff, never twice); a
backend only knows how to deliver one message once and says whether a failure is worth
retrying. Messages are plain dicts (``text``, ``blocks``, optional ``plot`` path), built when
the alert is queued, so what is in the outbox is exactly what is sent.
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
             save_progress: Progress) -> None:
        """Deliver ``message``. ``progress`` holds what an earlier, partial attempt already
        did (e.g. the posted message's ts); call ``save_progress`` after each step that
        must not be repeated. Raise DeliveryError on failure."""
        ...
