"""The outbox with the real slack-sdk against a Slack-compatible local server: retries,
outages, restarts — every alert delivered exactly once."""

from __future__ import annotations

import socket
from pathlib import Path

from sched_helpers import FakeSlack

from scheduler.cli import outbox_lines
from scheduler.config import SlackConfig
from scheduler.notify.console import ConsoleNotifier
from scheduler.notify.slackbot import SlackBotNotifier
from scheduler.notify.webhook import WebhookNotifier
from scheduler.outbox import Outbox
from scheduler.state import State

MSG = {"text": "Performance regression: x", "blocks": [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*x* 1 ms → 2 ms"}}]}


def bot(url: str) -> SlackBotNotifier:
    return SlackBotNotifier("xoxb-test-token", "#perf", base_url=url, timeout=5)


def test_429_then_500_then_ok_delivers_once(tmp_path: Path, fake_slack: FakeSlack) -> None:
    fake_slack.script["chat.postMessage"] = [
        (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"}),
        (500, "internal error", {}),
    ]
    state = State(tmp_path / "s.sqlite3")
    box = Outbox(state, bot(fake_slack.base_url))
    assert box.put("alert|1", "regression", MSG)
    assert not box.put("alert|1", "regression", MSG)  # queued once only
    assert box.flush() == (1, 0)
    statuses = [s for m, _b, s in fake_slack.calls if m == "chat.postMessage"]
    assert statuses == [429, 500, 200]
    assert len(fake_slack.ok_calls("chat.postMessage")) == 1
    assert box.flush() == (0, 0)
    assert len(fake_slack.ok_calls("chat.postMessage")) == 1
    assert state.outbox_all("sent")[0].key == "alert|1"


def test_outage_and_restart_lose_nothing_and_send_nothing_twice(tmp_path: Path,
                                                                 fake_slack: FakeSlack) -> None:
    with socket.socket() as s:  # a port nobody listens on: Slack is down
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}/api/"
    state = State(tmp_path / "s.sqlite3")
    box = Outbox(state, bot(dead_url))
    box.put("alert|a", "regression", MSG)
    box.put("alert|b", "regression", {**MSG, "text": "second"})
    assert box.flush() == (0, 1)  # Slack is down: the second waits for the next flush
    pending = state.outbox_all("pending")
    assert len(pending) == 2 and "slack chat.postMessage" in pending[0].last_error
    assert "xoxb" not in pending[0].last_error
    state.close()
    # "restart": a new process opens the same database, Slack is back
    state2 = State(tmp_path / "s.sqlite3")
    box2 = Outbox(state2, bot(fake_slack.base_url))
    assert box2.flush(now=1e12) == (2, 0)  # backoff elapsed
    assert box2.flush(now=1e12) == (0, 0)
    texts = [b["text"] for b in fake_slack.ok_calls("chat.postMessage")]
    assert texts == ["Performance regression: x", "second"]


def test_plot_upload_failure_does_not_repost_message(tmp_path: Path,
                                                     fake_slack: FakeSlack) -> None:
    png = tmp_path / "p.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    fake_slack.script["files.getUploadURLExternal"] = [
        (200, {"ok": False, "error": "internal_error"}, {})]
    state = State(tmp_path / "s.sqlite3")
    box = Outbox(state, bot(fake_slack.base_url))
    box.put("alert|p", "regression", {**MSG, "plot": str(png), "plot_title": "history"})
    assert box.flush() == (0, 1)
    assert box.flush(now=1e12) == (1, 0)
    assert len(fake_slack.ok_calls("chat.postMessage")) == 1
    assert len(fake_slack.ok_calls("files.completeUploadExternal")) == 1
    assert len(fake_slack.ok_calls("/upload/F1")) == 1


def test_fatal_error_is_parked_not_retried(tmp_path: Path, fake_slack: FakeSlack) -> None:
    fake_slack.script["chat.postMessage"] = [(200, {"ok": False, "error": "invalid_auth"}, {})]
    state = State(tmp_path / "s.sqlite3")
    box = Outbox(state, bot(fake_slack.base_url))
    box.put("alert|x", "regression", MSG)
    assert box.flush() == (0, 1)
    dead = state.outbox_all("dead")
    assert len(dead) == 1 and "invalid_auth" in dead[0].last_error
    # `status` shows it with its error, so a silent channel can be explained
    box.put("alert|y", "failure", {**MSG, "text": "Build failed for abc"})
    lines = outbox_lines([i.__dict__ for i in state.outbox_all("pending")],
                         [i.__dict__ for i in dead], SlackConfig())
    assert lines[0] == "alerts waiting for delivery: 1, undeliverable: 1"
    assert "  waiting: failure after 0 attempt(s): not tried yet" in lines
    assert any(ln.startswith("  undeliverable: regression after 1 attempt(s): ")
               and "invalid_auth" in ln for ln in lines)
    assert "    Build failed for abc" in lines


def test_webhook_and_console(tmp_path: Path, fake_slack: FakeSlack) -> None:
    url = fake_slack.base_url.replace("/api/", "/webhook")
    fake_slack.script["/webhook"] = [(500, "server_error", {})]
    state = State(tmp_path / "s.sqlite3")
    box = Outbox(state, WebhookNotifier(url, timeout=5))
    box.put("alert|w", "regression", MSG)
    assert box.flush() == (1, 0)  # 500 retried inside the call
    assert len(fake_slack.ok_calls("/webhook")) == 1
    assert "webhook" not in repr(box.notifier).replace("WebhookNotifier", "")
    console_file = tmp_path / "alerts.jsonl"
    cbox = Outbox(state, ConsoleNotifier(console_file))
    cbox.put("alert|c", "regression", MSG)
    assert cbox.flush() == (1, 0)
    assert "Performance regression: x" in console_file.read_text()
