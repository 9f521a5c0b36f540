"""Incoming-webhook backend (slack_sdk.webhook.WebhookClient).

A webhook cannot upload files, so the plot is linked (served by the daemon's site) rather
than attached. ``WebhookClient.send`` never raises on HTTP errors: success is exactly
status 200 with body ``ok``.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.webhook import WebhookClient

from .base import DeliveryError, Progress
from .slackbot import retry_handlers


class WebhookNotifier:
    name = "webhook"

    def __init__(self, url: str, *, timeout: int = 30) -> None:
        self._client = WebhookClient(url, timeout=timeout, retry_handlers=retry_handlers())

    def __repr__(self) -> str:  # the URL is a secret
        return "WebhookNotifier(url=<hidden>)"

    def send(self, message: dict[str, Any], progress: dict[str, Any],
             save_progress: Progress) -> None:
        blocks = list(message.get("blocks", []))
        if message.get("plot_url"):
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"<{message['plot_url']}|history plot>"}]})
        try:
            resp = self._client.send(text=message.get("text", ""), blocks=blocks or None)
        except Exception as exc:  # connection refused, timeouts after retries
            raise DeliveryError(f"webhook: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 200 and resp.body == "ok":
            return
        retryable = resp.status_code == 429 or resp.status_code >= 500
        raise DeliveryError(f"webhook answered {resp.status_code}: {resp.body[:200]}",
                            retryable=retryable)
