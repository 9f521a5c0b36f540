"""The commit under test runs with an allow-listed environment: a commit whose benchmark
prints its environment (and fails, so that the log's tail is posted to Slack) finds no
secret of the scheduler's, with the real asv and the real slack-sdk."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sched_helpers import FakeSlack, TinyRepo, bot_slack_config, once, runs, write_config

TOKEN = "xoxb-must-not-leak-7781"
HOOK = "https://hooks.slack.example/services/T0/B0/must-not-leak"
API_KEY = "sk-provider-must-not-leak"

PRINT_ENV = """
import json, os, sys
print("ENVIRONMENT " + json.dumps(dict(os.environ), sort_keys=True), file=sys.stderr)
raise RuntimeError("this commit printed its environment")
"""


def test_a_commit_that_prints_its_environment_sees_no_secret(
        tmp_path: Path, shared: Path, tiny_repo: TinyRepo, fake_slack: FakeSlack) -> None:
    leak = tiny_repo.commit(0.010, "prints its environment", code=PRINT_ENV)
    cfg = write_config(tmp_path, shared, tiny_repo, slack=bot_slack_config(fake_slack))
    proc = once(cfg, SLACK_BOT_TOKEN=TOKEN, SLACK_WEBHOOK_URL=HOOK, TOOLSERVER_API_KEY=API_KEY,
                BENCH_SEEN_BY_THE_COMMIT="yes", NOT_ALLOWED="no")
    state = tmp_path / "state"
    assert runs(state) == {leak: "failed"}
    with sqlite3.connect(state / "state.sqlite3") as db:
        (log,) = db.execute("SELECT log FROM runs").fetchone()
    printed = json.loads(log.split("ENVIRONMENT ", 1)[1].splitlines()[0])
    assert printed["BENCH_SEEN_BY_THE_COMMIT"] == "yes" and printed["BENCH_PROFILE"] == "smoke"
    assert {"SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL", "TOOLSERVER_API_KEY", "NOT_ALLOWED",
            "PYTHONPATH"}.isdisjoint(printed)
    # the failure alert went out, with the log's tail, and carries none of them
    (alert,) = [b for b in fake_slack.ok_calls("chat.postMessage")
                if "failed" in b["text"] and leak[:8] in b["text"]]
    assert "printed its environment" in json.dumps(alert)
    sent = json.dumps(fake_slack.calls)
    stored = b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())
    for secret in (TOKEN, HOOK, API_KEY):
        assert secret not in sent and secret not in proc.stdout + proc.stderr
        assert secret.encode() not in stored
