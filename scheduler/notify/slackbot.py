"""Bot-token backend: ``chat.postMessage`` with Block Kit, then the plot with
``files_upload_v2`` into the message's thread.

Why two persisted steps: if the upload fails after the message went out, the retry must
upload only the plot, not post the message again — the posted ``ts`` is saved as progress.
The token is never logged (not in repr, not in errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
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

from .base import DeliveryError, Progress

# Errors where retrying cannot help; everything else is retried by the outbox.
FATAL_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked",
                "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks",
                "missing_scope", "no_permission", "msg_too_long"}


class _ServerErrors(ServerErrorRetryHandler):
    """5xx in general, not only 500/503."""

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        return response is not None and 500 <= response.status_code <= 599


def retry_handlers() -> list[RetryHandler]:
    """In-call retries: 429 (honouring Retry-After), 5xx and connection errors with
    backoff. Durability across outages and restarts is the outbox's job."""
    backoff = BackoffRetryIntervalCalculator(backoff_factor=0.5, jitter=RandomJitter())
    return [ConnectionErrorRetryHandler(max_retry_count=3, interval_calculator=backoff),
            RateLimitErrorRetryHandler(max_retry_count=4),
            _ServerErrors(max_retry_count=3, interval_calculator=backoff)]


class SlackBotNotifier:
    name = "bot"

    def __init__(self, token: str, channel: str, *, base_url: str, timeout: int = 30,
                 upload_plots: bool = True) -> None:
        self._client = WebClient(token=token, base_url=base_url, timeout=timeout,
                                 retry_handlers=retry_handlers())
        self.channel = channel
        self.upload_plots = upload_plots

    def __repr__(self) -> str:
        return f"SlackBotNotifier(channel={self.channel!r}, token=<hidden>)"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except SlackApiError as exc:
            resp = exc.response
            error = str(resp.get("error", "")) if resp is not None else ""
            status = getattr(resp, "status_code", 0)
            retryable = error not in FATAL_ERRORS
            raise DeliveryError(f"slack {what}: HTTP {status} {error}".strip(),
                                retryable=retryable) from None
        except Exception as exc:  # connection errors after the in-call retries
            raise DeliveryError(f"slack {what}: {type(exc).__name__}: {exc}") from None

    def send(self, message: dict[str, Any], progress: dict[str, Any],
             save_progress: Progress) -> None:
        if "ts" not in progress:
            resp = self._call("chat.postMessage", self._client.chat_postMessage,
                              channel=self.channel, text=message.get("text", ""),
                              blocks=message.get("blocks") or None, unfurl_links=False)
            progress["ts"] = str(resp.get("ts", ""))
            progress["channel"] = str(resp.get("channel", self.channel))
            save_progress(progress)
        plot = message.get("plot")
        if self.upload_plots and plot and not progress.get("plot_done"):
            path = Path(plot)
            if path.is_file():
                self._call("files_upload_v2", self._client.files_upload_v2,
                           channel=progress.get("channel") or self.channel,
                           file=str(path), filename=path.name,
                           title=message.get("plot_title", path.stem),
                           thread_ts=progress.get("ts") or None)
            progress["plot_done"] = True
            save_progress(progress)
