"""Bot-token backend: ``chat.postMessage`` with Block Kit, then the plot with
``files_upload_v2`` into the message's thread — each exactly once, across crashes.

Why it can be exactly once: Slack keeps what was posted and lets us look. Every message
carries ``metadata`` with its outbox key, and "posting" is saved as progress *before* the
call. A delivery that finds "posting" without the message's ``ts`` (the daemon was killed
mid-call, or the call timed out or got a 5xx after Slack may have taken it) first looks for
the key in the channel's recent history (``conversations.history``,
``include_all_metadata``) and posts only when it is not there. The plot upload is guarded
the same way (``conversations.replies``: a file of that name in the thread). This needs
the ``channels:history`` (``groups:history`` for a private channel) scope, and
``channels:read`` when the channel is configured by name; without them the check is
skipped with a warning and delivery falls back to at least once.

In-call retries are only where a retry cannot duplicate: 429 (honouring Retry-After) and
a connection that was never made. A 5xx, a timeout or a reset after the request went out
may have been posted: it is looked up before it is retried.

The token is never logged (not in repr, not in errors).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.jitter import RandomJitter

from ..mrkdwn import escape
from .base import DeliveryError, Progress

log = logging.getLogger("scheduler.publish.notify")

# Errors where retrying cannot help; everything else is retried by the outbox.
FATAL_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked",
                "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks",
                "missing_scope", "no_permission", "msg_too_long"}

#: ``metadata.event_type`` of every message this backend posts.
EVENT_TYPE = "benchmark_scheduler_message"
#: Posting attempts within one delivery (each after looking the message up).
POST_ATTEMPTS = 3
#: The history looked through for a message "posting" since t starts at t minus this
#: (the clocks of this host and Slack differ).
CLOCK_SLACK_S = 300.0
HISTORY_PAGES = 10

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")


class _Ambiguous(Exception):
    """The call may or may not have reached Slack (5xx, timeout, reset)."""


def retry_handlers() -> list[RetryHandler]:
    """In-call retries that cannot send anything twice: 429 (Slack did not take the
    request) and a connection that could not be made (``URLError`` without a response:
    urllib raises it only while connecting or sending). Durability across outages and
    restarts is the outbox's job."""
    backoff = BackoffRetryIntervalCalculator(backoff_factor=0.5, jitter=RandomJitter())
    return [ConnectionErrorRetryHandler(max_retry_count=3, interval_calculator=backoff,
                                        error_types=[URLError]),
            RateLimitErrorRetryHandler(max_retry_count=4)]


class SlackBotNotifier:
    name = "bot"

    def __init__(self, token: str, channel: str, *, base_url: str, timeout: int = 30,
                 upload_plots: bool = True, retry_pause_s: float = 1.0) -> None:
        self._client = WebClient(token=token, base_url=base_url, timeout=timeout,
                                 retry_handlers=retry_handlers())
        self.channel = channel
        self.upload_plots = upload_plots
        self.retry_pause_s = retry_pause_s
        self._channel_id = channel if _CHANNEL_ID.match(channel) else ""

    def __repr__(self) -> str:
        return f"SlackBotNotifier(channel={self.channel!r}, token=<hidden>)"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """One Web API call. Raises DeliveryError when Slack said no (``ok: false``, 4xx)
        or could not be reached, ``_Ambiguous`` when it may have done it anyway."""
        try:
            return fn(**kwargs)
        except SlackApiError as exc:
            resp = exc.response
            error = str(resp.get("error", "")) if resp is not None else ""
            status = getattr(resp, "status_code", 0)
            text = f"slack {what}: HTTP {status} {error}".strip()
            if status >= 500:
                raise _Ambiguous(text) from None
            raise DeliveryError(text, retryable=error not in FATAL_ERRORS) from None
        except URLError as exc:  # never connected, after the in-call retries
            raise DeliveryError(f"slack {what}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # timeout or reset: the request may have arrived
            raise _Ambiguous(f"slack {what}: {type(exc).__name__}: {exc}") from None

    def _definite(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """A call that changes nothing (a lookup): ambiguous is just retryable."""
        try:
            return self._call(what, fn, **kwargs)
        except _Ambiguous as exc:
            raise DeliveryError(str(exc)) from None

    def send(self, message: dict[str, Any], progress: dict[str, Any],
             save_progress: Progress, *, key: str = "") -> None:
        if "ts" not in progress:
            self._post(message, progress, save_progress, key)
        plot = message.get("plot")
        if self.upload_plots and plot and not progress.get("plot_done"):
            path = Path(plot)
            if path.is_file() and not (progress.get("plot_uploading")
                                       and self._find_file(progress, path.name)):
                progress["plot_uploading"] = time.time()
                save_progress(progress)
                try:
                    self._call("files_upload_v2", self._client.files_upload_v2,
                               channel=progress.get("channel") or self.channel,
                               file=str(path), filename=path.name,
                               title=message.get("plot_title", path.stem),
                               thread_ts=progress.get("ts") or None)
                except _Ambiguous as exc:
                    raise DeliveryError(str(exc)) from None  # looked up at the next try
            progress["plot_done"] = True
            save_progress(progress)

    def _post(self, message: dict[str, Any], progress: dict[str, Any],
              save_progress: Progress, key: str) -> None:
        last = ""
        for attempt in range(POST_ATTEMPTS):
            if progress.get("posting") and key:
                found = self._find_message(key, progress)
                if found:
                    progress["ts"], progress["channel"] = found
                    save_progress(progress)
                    log.info("message %s was already posted (ts %s); not posted again",
                             key, found[0])
                    return
            progress.setdefault("posting", time.time())
            if self._channel_id:
                progress["channel"] = self._channel_id
            save_progress(progress)  # before the call: a kill after it is looked up
            try:
                resp = self._call(
                    "chat.postMessage", self._client.chat_postMessage,
                    channel=self.channel, text=escape(message.get("text", "")),
                    blocks=message.get("blocks") or None, unfurl_links=False,
                    metadata={"event_type": EVENT_TYPE,
                              "event_payload": {"outbox_key": key}} if key else None)
            except _Ambiguous as exc:
                last = str(exc)
                time.sleep(self.retry_pause_s * (attempt + 1))
                continue
            except DeliveryError:
                # Slack said no, or was never reached: nothing was posted, nothing to look up
                progress.pop("posting", None)
                save_progress(progress)
                raise
            progress["ts"] = str(resp.get("ts", ""))
            progress["channel"] = str(resp.get("channel", "") or progress.get("channel", "")
                                      or self.channel)
            if _CHANNEL_ID.match(progress["channel"]):
                self._channel_id = progress["channel"]
            save_progress(progress)
            return
        raise DeliveryError(f"{last} ({POST_ATTEMPTS} attempts, each looked up first)")

    # ---- looking up what was posted ------------------------------------------------------

    def _lookup(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """A lookup; None when Slack refuses it for good (no scope): the caller then
        delivers at least once instead of exactly once."""
        try:
            return self._definite(what, fn, **kwargs)
        except DeliveryError as exc:
            if exc.retryable:
                raise
            log.warning("cannot check what was already posted (%s): delivering anyway, "
                        "a duplicate is possible", exc)
            return None

    def _resolve_channel(self) -> str:
        if self._channel_id:
            return self._channel_id
        name = self.channel.lstrip("#")
        cursor = None
        for _ in range(HISTORY_PAGES):
            resp = self._lookup("conversations.list", self._client.conversations_list,
                                types="public_channel,private_channel",
                                exclude_archived=True, limit=1000, cursor=cursor)
            if resp is None:
                return ""
            for ch in resp.get("channels", []):
                if ch.get("name") == name or ch.get("id") == self.channel:
                    self._channel_id = str(ch["id"])
                    return self._channel_id
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return ""

    def _find_message(self, key: str, progress: dict[str, Any]) -> tuple[str, str] | None:
        """(ts, channel id) of the message carrying outbox key ``key``, if it was posted."""
        channel = progress.get("channel") or self._resolve_channel()
        if not channel:
            return None
        oldest = float(progress.get("posting", 0)) - CLOCK_SLACK_S
        cursor = None
        for _ in range(HISTORY_PAGES):
            resp = self._lookup("conversations.history", self._client.conversations_history,
                                channel=channel, oldest=f"{max(oldest, 0):.6f}",
                                include_all_metadata=True, limit=200, cursor=cursor)
            if resp is None:
                return None
            for m in resp.get("messages", []):
                meta = m.get("metadata") or {}
                if (meta.get("event_type") == EVENT_TYPE
                        and (meta.get("event_payload") or {}).get("outbox_key") == key):
                    return str(m["ts"]), str(channel)
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return None

    def _find_file(self, progress: dict[str, Any], name: str) -> bool:
        """Whether the thread of the posted message already holds a file ``name``."""
        channel, ts = progress.get("channel") or self._resolve_channel(), progress.get("ts")
        if not channel or not ts:
            return False
        resp = self._lookup("conversations.replies", self._client.conversations_replies,
                            channel=channel, ts=ts, limit=200)
        if resp is None:
            return False
        return any(f.get("name") == name for m in resp.get("messages", [])
                   for f in m.get("files", []))
