"""Incoming-webhook backend (slack_sdk.webhook.WebhookClient).

A webhook cannot upload files, so the plot is linked (served by the daemon's site) rather
than attached. ``WebhookClient.send`` never raises on HTTP errors: success is exactly
status 200 with body ``ok``.

At least once, not exactly once: a webhook cannot look up what it posted, so a delivery
interrupted after Slack took the message (a kill, a timeout, a 5xx after the fact) posts
it again. Use the bot backend where a duplicate matters.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.jitter import RandomJitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook import WebhookClient

from ..mrkdwn import escape, mrkdwn_link
from .base import DeliveryError, Progress


class _ServerErrors(ServerErrorRetryHandler):
    """5xx in general, not only 500/503."""

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        return response is not None and 500 <= response.status_code <= 599


def retry_handlers() -> list[RetryHandler]:
    """In-call retries: 429 (honouring Retry-After), 5xx and connection errors with
    backoff (at least once: a 5xx may follow a post that got through)."""
    backoff = BackoffRetryIntervalCalculator(backoff_factor=0.5, jitter=RandomJitter())
    return [ConnectionErrorRetryHandler(max_retry_count=3, interval_calculator=backoff),
            RateLimitErrorRetryHandler(max_retry_count=4),
            _ServerErrors(max_retry_count=3, interval_calculator=backoff)]


class WebhookNotifier:
    name = "webhook"

    def __init__(self, url: str, *, timeout: int = 30) -> None:
        self._client = WebhookClient(url, timeout=timeout, retry_handlers=retry_handlers())

    def __repr__(self) -> str:  # the URL is a secret
        return "WebhookNotifier(url=<hidden>)"

    def send(self, message: dict[str, Any], progress: dict[str, Any],
             save_progress: Progress, *, key: str = "") -> None:
        blocks = list(message.get("blocks", []))
        if message.get("plot_url"):
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": mrkdwn_link(message["plot_url"], "history plot")}]})
        try:
            resp = self._client.send(text=escape(message.get("text", "")),
                                     blocks=blocks or None)
        except Exception as exc:  # connection refused, timeouts after retries
            raise DeliveryError(f"webhook: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 200 and resp.body == "ok":
            return
        retryable = resp.status_code == 429 or resp.status_code >= 500
        raise DeliveryError(f"webhook answered {resp.status_code}: {resp.body[:200]}",
                            retryable=retryable)
