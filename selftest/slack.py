"""A Slack-compatible HTTP server for the tests and the fault-injection run.

It answers the Web API calls the scheduler makes, with the answers the real API gives
(see /work/shared/notes/apscheduler-slack.md): ``auth.test``, ``chat.postMessage`` (with
``metadata``), ``conversations.history`` (``oldest``, ``include_all_metadata``, paging),
``conversations.replies``, ``conversations.list``, the three steps of ``files_upload_v2``
and an incoming webhook (``/webhook``). It keeps what was posted, per channel and thread,
so a client can look up what it posted before — as it can on Slack.

Faults, per method, served in order before normal answers (``script[method]``):

* ``(status, body, headers)``: answer this without doing anything (429 with
  ``Retry-After``, a 500 before posting, ``ok: false``);
* ``Process(status=500)``: do it (the message is posted), then answer ``status`` — the
  ambiguous failure a client cannot tell from a failure before posting;
* ``Process(delay_s=3)``: do it, then hang before answering (a client timeout);

and :meth:`SlackServer.stop` / :meth:`SlackServer.restart` on the same port for
"connection refused". ``on_post`` is called with each posted message before the answer
goes out (the fault-injection run kills the daemon there).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CHANNEL_ID = "C0PERF0001"
CHANNEL_NAME = "perf"


@dataclass(frozen=True)
class Process:
    """A scripted step that does the call, then answers ``status`` after ``delay_s``."""

    status: int = 200
    delay_s: float = 0.0


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


class SlackServer:
    """The server, on 127.0.0.1 and a free port (``base_url`` for ``WebClient``)."""

    def __init__(self, port: int = 0) -> None:
        self.calls: list[tuple[str, Any, int]] = []
        self.script: dict[str, list[Any]] = {}
        self.messages: list[dict[str, Any]] = []  # in posting order, replies included
        self.files: dict[str, dict[str, Any]] = {}
        self.on_post: Callable[[dict[str, Any]], None] | None = None
        self.lock = threading.Lock()
        self._ts = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._start(port)

    # ---- lifecycle -------------------------------------------------------------------

    def _start(self, port: int) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                body = {k: v[0] for k, v in parse_qs(url.query).items()}
                server._handle(self, url.path, body, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                body: Any
                ctype = self.headers.get("Content-Type", "")
                if url.path.startswith("/upload/"):
                    body = f"<{len(raw)} bytes>"
                elif "json" in ctype:
                    body = json.loads(raw or b"{}")
                elif "x-www-form-urlencoded" in ctype:
                    body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                else:
                    body = raw.decode(errors="replace")[:200]
                server._handle(self, url.path, body, raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/"
        self.webhook_url = f"http://127.0.0.1:{self.port}/webhook"
        # a short poll interval: stop() returns at once (every test stops one)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop listening: clients get "connection refused" until :meth:`restart`."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def restart(self) -> None:
        """Listen again on the same port, with everything posted so far."""
        self._start(self.port)

    # ---- requests ---------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, path: str, body: Any,
                raw: bytes) -> None:
        method = path.rsplit("/", 1)[-1] if path.startswith("/api/") else path
        if method.startswith("/upload/"):
            method = "/upload"
        with self.lock:
            scripted = self.script.get(method, [])
            step = scripted.pop(0) if scripted else None
        headers: dict[str, str] = {}
        if step is not None and not isinstance(step, Process):
            status, answer, headers = step
        else:
            status, answer = 200, self.answer(method, body, raw)
            if isinstance(step, Process):
                status = step.status
                if status != 200:
                    answer = {"ok": False, "error": "internal_error"}
                time.sleep(step.delay_s)
        with self.lock:
            self.calls.append((method, body, status))
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        try:
            handler.send_response(status)
            for k, v in headers.items():
                handler.send_header(k, v)
            handler.send_header("Content-Type", "text/plain" if isinstance(answer, str)
                                else "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout) or was killed

    def answer(self, method: str, body: Any, raw: bytes = b"") -> Any:
        """The normal answer (and effect) of one call."""
        if method == "auth.test":
            return {"ok": True, "team_id": "T0", "user_id": "U0", "bot_id": "B0",
                    "url": "https://x.slack.com/", "team": "T", "user": "bot"}
        if method == "chat.postMessage":
            channel = self._channel(str(body.get("channel", "")))
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            msg = {"type": "message", "channel": channel, "ts": self._next_ts(),
                   "text": body.get("text", ""), "blocks": body.get("blocks"),
                   "metadata": body.get("metadata"), "bot_id": "B0"}
            if body.get("thread_ts"):
                msg["thread_ts"] = body["thread_ts"]
            with self.lock:
                self.messages.append(msg)
            if self.on_post is not None:
                self.on_post(msg)
            return {"ok": True, "channel": channel, "ts": msg["ts"],
                    "message": {k: v for k, v in msg.items() if k != "channel"}}
        if method == "conversations.history":
            return self._history(body)
        if method == "conversations.replies":
            channel, ts = str(body.get("channel", "")), str(body.get("ts", ""))
            if channel != CHANNEL_ID:
                return {"ok": False, "error": "channel_not_found"}
            with self.lock:
                thread = [m for m in self.messages if m["channel"] == channel
                          and (m["ts"] == ts or m.get("thread_ts") == ts)]
            return {"ok": True, "messages": thread, "has_more": False,
                    "response_metadata": {"next_cursor": ""}}
        if method == "conversations.list":
            return {"ok": True, "channels": [{"id": CHANNEL_ID, "name": CHANNEL_NAME}],
                    "response_metadata": {"next_cursor": ""}}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._file_ids):07d}"
            with self.lock:
                self.files[file_id] = {"id": file_id, "name": body.get("filename", ""),
                                       "uploaded": False}
            return {"ok": True, "file_id": file_id,
                    "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}"}
        if method == "files.completeUploadExternal":
            return self._complete_upload(body)
        return "ok"  # the raw upload, the webhook

    def _channel(self, name: str) -> str:
        return CHANNEL_ID if name in (CHANNEL_ID, CHANNEL_NAME, f"#{CHANNEL_NAME}") else ""

    def _next_ts(self) -> str:
        # seconds of now, a unique sequence in the fraction: increasing like Slack's
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _history(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel", ""))
        if channel != CHANNEL_ID:  # like Slack: an id, not a name
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(body.get("oldest") or 0)
        limit = int(body.get("limit") or 100)
        start = int(body.get("cursor") or 0)
        with self.lock:
            top = [m for m in self.messages if m["channel"] == channel
                   and "thread_ts" not in m and float(m["ts"]) > oldest]
        top.reverse()  # newest first
        page = top[start:start + limit]
        if not _truthy(body.get("include_all_metadata")):
            page = [{k: v for k, v in m.items() if k != "metadata"} for m in page]
        more = start + limit < len(top)
        return {"ok": True, "messages": page, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    def _complete_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        files = json.loads(body.get("files", "[]"))
        channel = self._channel(str(body.get("channel_id", "")))
        shared = []
        with self.lock:
            for f in files:
                meta = self.files.get(str(f.get("id")))
                if meta is None:
                    return {"ok": False, "error": "file_not_found"}
                meta["title"] = f.get("title", "")
                shared.append(dict(meta))
            if channel and body.get("thread_ts"):
                self.messages.append({"type": "message", "channel": channel,
                                      "ts": self._next_ts(), "thread_ts": body["thread_ts"],
                                      "text": "", "files": shared})
        return {"ok": True, "files": [{"id": f["id"]} for f in shared]}

    # ---- what the tests look at -------------------------------------------------------

    def ok_calls(self, method: str) -> list[Any]:
        with self.lock:
            return [b for m, b, s in self.calls if m == method and s == 200]

    def posted(self) -> list[dict[str, Any]]:
        """Top-level messages posted (not thread replies), in order."""
        with self.lock:
            return [m for m in self.messages if "thread_ts" not in m]

    def outbox_keys(self) -> list[str]:
        """The outbox key of every posted message (repeated when posted twice)."""
        return [((m.get("metadata") or {}).get("event_payload") or {}).get("outbox_key", "")
                for m in self.posted()]

    def thread_files(self) -> list[tuple[str, str]]:
        """(thread ts, file name) of every file shared into a thread (repeated when shared
        twice into the same thread)."""
        with self.lock:
            return [(str(m.get("thread_ts", "")), f["name"]) for m in self.messages
                    for f in m.get("files", [])]
