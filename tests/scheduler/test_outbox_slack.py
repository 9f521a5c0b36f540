"""The outbox with the real slack-sdk against a Slack-compatible local server: retries,
outages, restarts — every alert delivered exactly once."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sched_helpers import REPO_ROOT, FakeSlack

from scheduler.cli import outbox_lines
from scheduler.config import SlackConfig
from scheduler.publish.notify.console import ConsoleNotifier
from scheduler.publish.notify.slackbot import SlackBotNotifier
from scheduler.publish.notify.webhook import WebhookNotifier
from scheduler.store.outbox import Outbox
from scheduler.store.state import State
from selftest.slack import Process

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
    assert len(fake_slack.ok_calls("/upload")) == 1


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


# ---- exactly once across a SIGKILL, and through Slack's faults -------------------------

KILLED_FLUSH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from scheduler.publish.notify.console import ConsoleNotifier
    from scheduler.publish.notify.slackbot import SlackBotNotifier
    from scheduler.store.outbox import Outbox
    from scheduler.store.state import State
    db, backend, url, plot, when = sys.argv[1:6]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    real = State.outbox_progress
    if when == "sent":  # delivered, not yet marked sent
        State.outbox_sent = die
    elif when == "answered":  # Slack answered ok, its answer (the ts) not yet recorded
        State.outbox_progress = lambda self, i, p: die() if "ts" in p else real(self, i, p)
    else:  # the plot is in the thread, its upload not recorded
        State.outbox_progress = lambda self, i, p: die() if p.get("plot_done") else real(self, i, p)
    notifier = (SlackBotNotifier("xoxb-test-token", "#perf", base_url=url, timeout=5)
                if backend == "bot" else ConsoleNotifier(Path(db).parent / "alerts.jsonl"))
    box = Outbox(State(Path(db)), notifier)
    box.put("alert|k", "regression", {"text": "Performance regression: x", "blocks": [],
                                      "plot": plot or None, "plot_title": "history"})
    box.flush()
    """)


def _flush_killed(tmp_path: Path, backend: str, url: str, *, plot: str = "",
                  when: str = "sent") -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_FLUSH, str(tmp_path / "s.sqlite3"),
                           backend, url, plot, when], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.parametrize(("backend", "when"), [("bot", "answered"), ("bot", "sent"),
                                               ("console", "sent")])
def test_a_kill_after_delivery_does_not_deliver_twice(tmp_path: Path, fake_slack: FakeSlack,
                                                      backend: str, when: str) -> None:
    _flush_killed(tmp_path, backend, fake_slack.base_url, when=when)
    state = State(tmp_path / "s.sqlite3")
    assert state.outbox_all("pending")[0].progress  # "posting" was saved before the call
    notifier = (bot(fake_slack.base_url) if backend == "bot"
                else ConsoleNotifier(tmp_path / "alerts.jsonl"))
    box = Outbox(state, notifier)
    assert box.flush() == (1, 0)  # the restarted daemon: found, marked sent, not re-sent
    assert box.flush() == (0, 0)
    assert state.outbox_all("sent")[0].key == "alert|k"
    if backend == "bot":
        assert fake_slack.outbox_keys() == ["alert|k"]
        lookups = [m for m, _b, _s in fake_slack.calls].count("conversations.history")
        assert lookups == (1 if when == "answered" else 0)  # looked up only without a ts
    else:
        lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
        assert [json.loads(x)["key"] for x in lines] == ["alert|k"]


def test_a_kill_after_the_plot_upload_does_not_share_it_twice(tmp_path: Path,
                                                               fake_slack: FakeSlack) -> None:
    png = tmp_path / "p.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    _flush_killed(tmp_path, "bot", fake_slack.base_url, plot=str(png), when="plot")
    box = Outbox(State(tmp_path / "s.sqlite3"), bot(fake_slack.base_url))
    assert box.flush() == (1, 0)
    assert fake_slack.outbox_keys() == ["alert|k"]
    assert [name for _ts, name in fake_slack.thread_files()] == ["p.png"]


def test_a_run_of_alerts_through_slack_faults_loses_none_and_sends_none_twice(
        tmp_path: Path, fake_slack: FakeSlack) -> None:
    fake_slack.script["chat.postMessage"] = [
        (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),  # a1: throttled,
        Process(status=500),  # retried: posted, then a 500 (was it posted? looked up: yes)
        Process(delay_s=3.0),  # a2: posted, the answer hangs past the client's timeout
        (500, "internal error", {}),  # a3: a 500 before posting (looked up: no)
        (503, "unavailable", {}),  # and again
    ]
    state = State(tmp_path / "s.sqlite3")
    notifier = SlackBotNotifier("xoxb-test-token", "#perf", base_url=fake_slack.base_url,
                                timeout=1, retry_pause_s=0.1)
    box = Outbox(state, notifier)
    keys = [f"alert|a{i}" for i in range(1, 7)]
    for key in keys[:4]:
        box.put(key, "regression", {**MSG, "text": key})
    assert box.flush(now=1e12) == (4, 0)  # a1..a4 through throttling, 5xx and a hang
    fake_slack.stop()  # Slack unreachable: connection refused
    for key in keys[4:]:
        box.put(key, "regression", {**MSG, "text": key})
    assert box.flush(now=1e12) == (0, 1)
    assert len(state.outbox_all("pending")) == 2
    fake_slack.restart()
    assert box.flush(now=1e12) == (2, 0)
    assert fake_slack.outbox_keys() == keys  # each once, in order
    assert [i.key for i in state.outbox_all("sent")] == keys
    statuses = [s for m, _b, s in fake_slack.calls if m == "chat.postMessage"]
    # (recorded when answered: the hung answer comes late)
    assert sorted(statuses) == [200, 200, 200, 200, 200, 429, 500, 500, 503]
    lookups = [m for m, _b, _s in fake_slack.calls].count("conversations.history")
    assert lookups == 4  # after the 500, the hang, the 500 and the 503
