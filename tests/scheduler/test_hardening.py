"""Crash windows and hostile input (issue 19): a real SIGKILL of a process at the exact
step where the scheduler used to lose something, then the next start; secrets and
credentials out of what is stored and sent; commit texts that try to page a channel;
git arguments that look like options. No asv here: seconds in all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sched_helpers import REPO_ROOT, FakeSlack, TinyRepo

from scheduler import cli
from scheduler.children import child_env
from scheduler.config import load_config
from scheduler.measure.gitrepo import Commit, GitError, GitRepo
from scheduler.pipeline import Pipeline
from scheduler.policy import Bisect, Decision, OpenAlert, Recovery
from scheduler.policy.compare import Finding
from scheduler.publish.notify.slackbot import SlackBotNotifier
from scheduler.redact import redact_url
from scheduler.results import Measurement, ResultFile
from scheduler.store.outbox import Outbox
from scheduler.store.state import Run, State

BENCH = "bench_tiny.Suite.track_latency"
BAD = "b" * 40
RUN = Run(0, "c" * 40, "main", "smoke", "poll", "done", 200, 0, 0, "", False)

# A finding and a service, the same in the killed child and in the parent after it
SETUP = textwrap.dedent(f"""
    import os, signal, sys
    from pathlib import Path
    from scheduler.config import load_config
    from scheduler.policy import Bisect, Decision, OpenAlert, Recovery
    from scheduler.policy.compare import Finding
    from scheduler.results import Measurement, ResultFile
    from scheduler.pipeline import Pipeline
    from scheduler.store.state import Run
    FINDING = Finding("history", "box-smoke", "smoke", {BENCH!r}, {BENCH!r}, (), "seconds",
                      "a" * 40, {BAD!r}, 0.010, 0.020, "5% over the previous commit")
    MEASURED = ResultFile(path=Path("x.json"), commit="c" * 40, machine="box-smoke", date=0,
                          measurements=(Measurement({BENCH!r}, (), 0.010, (), (None, None),
                                                    "seconds", "1"),))
    BACK = [Recovery(OpenAlert(FINDING.key, "history", {BENCH!r}, {BAD!r}, 0.010,
                               {{"benchmark": {BENCH!r}, "params": [], "unit": "seconds"}}),
                     0.010, "seconds", 0.010)]
    RUN = Run(0, "c" * 40, "main", "smoke", "poll", "done", 200, 0, 0, "", False)
    svc = Pipeline(load_config(sys.argv[1], env={{}}), verbose=False)

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    """)


def _config(tmp_path: Path, repo: Path) -> Path:
    (tmp_path / "baselines").mkdir(exist_ok=True)
    path = tmp_path / "scheduler.toml"
    path.write_text(textwrap.dedent(f"""\
        [repository]
        url = "{repo}"
        [asv]
        machine = "box"
        max_attempts = 2
        [profiles]
        premerge = "smoke"
        [state]
        dir = "{tmp_path / 'state'}"
        [baselines]
        dir = "{tmp_path / 'baselines'}"
        [site]
        public_url = "http://bench.example/"
        """))
    return path


def _killed(cfg: Path, code: str) -> None:
    """Run SETUP + ``code`` in a child process; it must die by SIGKILL."""
    proc = subprocess.run([sys.executable, "-c", SETUP + textwrap.dedent(code), str(cfg)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _finding() -> Finding:
    return Finding("history", "box-smoke", "smoke", BENCH, BENCH, (), "seconds", "a" * 40, BAD,
                   0.010, 0.020, "5% over the previous commit")


@pytest.fixture
def cfg(tmp_path: Path, tiny_repo: TinyRepo) -> Path:
    tiny_repo.commit(0.010, "one")
    return _config(tmp_path, tiny_repo.path)


def test_a_kill_while_alerting_leaves_the_alert_to_be_sent(cfg: Path) -> None:
    # killed while rendering the alert's plot: the regression must not stay "already
    # open" without its message
    _killed(cfg, "svc._plot = die\nsvc._alert(FINDING, 'main', [])\n")
    svc = Pipeline(load_config(cfg, env={}), verbose=False)
    try:
        f = _finding()
        svc._alert(f, "main", [])  # the judgement repeated at the next start
        svc._alert(f, "main", [])  # and once more: still one alert
        assert [i.key for i in svc.state.outbox_all()] == [f"alert|{f.key}|{BAD}"]
        assert [a["key"] for a in svc.state.open_alerts()] == [f.key]
    finally:
        svc.close()


def test_a_kill_while_noting_a_recovery_leaves_the_note_to_be_sent(cfg: Path) -> None:
    svc = Pipeline(load_config(cfg, env={}), verbose=False)
    f = _finding()
    svc.state.open_alert(f.key, "history", "box-smoke", BENCH, good=f.good, bad=BAD,
                         before=0.010, after=0.020,
                         detail={"benchmark": BENCH, "params": [], "unit": "seconds"})
    svc.close()
    _killed(cfg, """
        import scheduler.publish.messages
        scheduler.publish.messages.recovery = die
        svc._apply(Decision(recoveries=BACK), RUN, [], MEASURED, "box-smoke")
        """)
    svc = Pipeline(load_config(cfg, env={}), verbose=False)
    try:
        measured = ResultFile(path=Path("x.json"), commit="c" * 40, machine="box-smoke",
                              date=0, measurements=(Measurement(BENCH, (), 0.010, (),
                                                                (None, None), "seconds", "1"),))
        back = [Recovery(OpenAlert(f.key, "history", BENCH, BAD, 0.010,
                                   {"benchmark": BENCH, "params": [], "unit": "seconds"}),
                         0.010, "seconds", 0.010)]
        for _ in range(2):  # the judgement repeated at the next start, and once more
            svc._apply(Decision(recoveries=back), RUN, [], measured, "box-smoke")
        assert [i.key for i in svc.state.outbox_all()] == [f"recovery|{f.key}|{'c' * 40}"]
        assert not svc.state.open_alerts()
    finally:
        svc.close()


def test_a_kill_while_applying_a_judgement_leaves_all_of_it_to_be_done(cfg: Path) -> None:
    # one judgement: a bisection, a new alert and a recovery, written in one transaction;
    # killed when the recovery is written, after the bisection and the alert: none of it
    # may stay, and the judgement repeated at the next start does all of it once
    svc = Pipeline(load_config(cfg, env={}), verbose=False)
    svc.state.record_commit("d" * 40, "main", "dev", 0, "middle")
    svc.state.open_alert("old", "history", "box-smoke", BENCH, good="", bad="e" * 40,
                         before=0.01, after=0.02, detail={})
    svc.close()
    _killed(cfg, """
        OLD = [Recovery(OpenAlert("old", "history", FINDING.bench, "e" * 40, 0.01, {}), 0.01,
                        "seconds", 0.01)]
        import scheduler.store.state
        scheduler.store.state.State._close = die
        svc._apply(Decision(alerts=[FINDING], recoveries=OLD,
                            bisect=[Bisect("d" * 40, "bisecting")]),
                   RUN, [], MEASURED, "box-smoke")
        """)
    svc = Pipeline(load_config(cfg, env={}), verbose=False)
    try:
        assert not svc.state.runs(status="queued") and not svc.state.outbox_all()
        assert [a["key"] for a in svc.state.open_alerts()] == ["old"]
        decision = Decision(alerts=[_finding()], bisect=[Bisect("d" * 40, "bisecting")],
                            recoveries=[Recovery(OpenAlert("old", "history", BENCH, "e" * 40,
                                                           0.01, {}), 0.01, "seconds", 0.01)])
        measured = ResultFile(path=Path("x.json"), commit="c" * 40, machine="box-smoke",
                              date=0, measurements=())
        for _ in range(2):  # the judgement repeated at the next start, and once more
            svc._apply(decision, RUN, [], measured, "box-smoke")
        assert [r.commit_hash for r in svc.state.runs(status="queued")] == ["d" * 40]
        assert [a["key"] for a in svc.state.open_alerts()] == [_finding().key]
        assert sorted(i.key.split("|")[0] for i in svc.state.outbox_all()) == [
            "alert", "recovery"]
    finally:
        svc.close()


def test_a_kill_in_the_middle_of_a_poll_does_not_skip_the_commit(cfg: Path) -> None:
    # killed when the poll queues the new commit (after recording it, before the fix)
    _killed(cfg, "import scheduler.store.state\nscheduler.store.state._enqueue = die\nsvc.poll()\n")
    svc = Pipeline(load_config(cfg, env={}), verbose=False)
    try:
        assert svc.poll() == 1
        assert len(svc.state.runs(status="queued")) == 1
    finally:
        svc.close()


def test_a_commit_that_kills_the_scheduler_is_given_up_after_max_attempts(cfg: Path) -> None:
    # a commit whose measurement takes the scheduler down (out of memory): each start
    # recovers, polls, and dies measuring it again
    for _ in range(2):  # [asv] max_attempts = 2 here (3 by default)
        _killed(cfg, "svc.recover()\nsvc.poll()\nsvc.asv.run = die\nsvc.measure_queued()\n")
    svc = Pipeline(load_config(cfg, env={}), verbose=False)
    try:
        assert [r.status for r in svc.state.runs()] == ["running"]
        svc.recover()
        (run,) = svc.state.runs()
        assert run.status == "failed" and "stopped 2 times" in run.error
        (item,) = svc.state.outbox_all()
        assert item.key == f"failure|{run.commit_hash}|smoke"
        assert item.payload["text"].startswith("Measurement given up for")
        assert "max_attempts" in item.payload["text"]
        svc.recover()
        assert svc.state.runs()[0].status == "failed"  # not re-queued
        assert len(svc.state.outbox_all()) == 1
    finally:
        svc.close()


def test_a_stop_that_re_queues_a_run_is_not_an_attempt(tmp_path: Path) -> None:
    state = State(tmp_path / "s.sqlite3")
    state.enqueue("d" * 40, "main", "smoke", "poll", 0)
    run = state.next_queued()
    assert run is not None
    for _ in range(5):  # SIGTERM five times while measuring: abandoned, re-queued
        assert state.claim(run.id)
        state.requeue(run.id)
    assert state.runs()[0].attempts == 0
    assert state.claim(run.id)
    assert [r.attempts for r in state.recover()] == [1]


# ---- secrets and credentials -----------------------------------------------------------

@pytest.mark.parametrize(("text", "shown"), [
    ("https://alice:s3cret@git.example/x.git", "https://***@git.example/x.git"),
    ("https://ghp_abcdefgh12345@github.com/o/r", "https://***@github.com/o/r"),
    ("fatal: unable to access 'https://x-access-token:tok3n@github.com/o/r/': 403",
     "fatal: unable to access 'https://***@github.com/o/r/': 403"),
    ("http://u:p@ss@host/r", "http://***@host/r"),
    ("https://host/r.git?private_token=abc123&ref=main",
     "https://host/r.git?private_token=***&ref=main"),
    ("ssh://git@host/r.git", "ssh://git@host/r.git"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),
    ("/srv/repos/project", "/srv/repos/project"),
])
def test_credentials_in_urls_are_redacted(text: str, shown: str) -> None:
    assert redact_url(text) == shown


def test_repository_credentials_reach_no_message(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    url = "https://alice:pw-s3cret-42@127.0.0.1:9/repo.git"  # nothing listens on port 9
    repo = GitRepo(url, local_path=None, mirror_dir=tmp_path / "m.git")
    with pytest.raises(GitError) as err:
        repo.fetch()
    assert "pw-s3cret-42" not in str(err.value) and "https://***@127.0.0.1:9" in str(err.value)
    # the effective configuration
    path = tmp_path / "scheduler.toml"
    path.write_text(f'[repository]\nurl = "{url}"\n[state]\ndir = "{tmp_path / "st"}"\n')
    assert cli.main(["--config", str(path), "config"]) == 0
    assert "pw-s3cret-42" not in capsys.readouterr().out
    # what the state database keeps for delivery, whatever put it there
    svc = Pipeline(load_config(path, env={"SLACK_BOT_TOKEN": "xoxb-kept-out-123"}),
                  verbose=False)
    try:
        svc.outbox.put("judge-error|x", "failure", {
            "text": f"cannot fetch {url}: xoxb-kept-out-123", "blocks": [{"text": url}]})
        svc.state.enqueue("d" * 40, "main", "smoke", "poll", 0)
        run = svc.state.next_queued()
        assert run is not None and svc.state.claim(run.id)
        svc.state.finish(run.id, "failed", log=f"git clone {url}", error=url)
        raw = svc.state.path.read_bytes() + Path(f"{svc.state.path}-wal").read_bytes()
        assert b"pw-s3cret-42" not in raw and b"xoxb-kept-out-123" not in raw
        assert svc.state.outbox_all()[0].payload["text"] == (
            "cannot fetch https://***@127.0.0.1:9/repo.git: ***")
    finally:
        svc.close()


def test_children_get_an_allow_listed_environment() -> None:
    base = {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_ALL": "C",
            "BENCH_PROFILE": "quick", "ASV_X": "1", "PIP_INDEX_URL": "http://mirror/",
            "UV_CACHE_DIR": "/c", "PYTHONHASHSEED": "0", "PYTHONPATH": "/checkout",
            "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_WEBHOOK_URL": "https://hooks/x",
            "TOOLSERVER_API_KEY": "sk-1", "AWS_SECRET_ACCESS_KEY": "k", "MY_FLAG": "on",
            "MY_OTHER": "x"}
    env = child_env(["MY_FLAG", "SLACK_*"], base=base, overrides={"BENCH_PROFILE": "smoke"})
    assert set(env) == {"PATH", "HOME", "LANG", "LC_ALL", "BENCH_PROFILE", "ASV_X",
                        "PIP_INDEX_URL", "UV_CACHE_DIR", "PYTHONHASHSEED", "MY_FLAG"}
    assert env["BENCH_PROFILE"] == "smoke"
    assert env["PATH"].endswith("/usr/bin") and str(Path(sys.executable).parent) in env["PATH"]


# ---- Slack mrkdwn ---------------------------------------------------------------------

def test_commit_texts_cannot_page_the_channel_or_spoof_links(tmp_path: Path,
                                                             fake_slack: FakeSlack) -> None:
    from scheduler.publish import messages

    evil = Commit("e" * 40, "<@U0ADMIN> & <!here>", 0,
                  "<!channel> fix <http://evil.example|bench.example> & co")
    f = _finding()
    link = "http://bench.example/index.html#x?machine=box-smoke&commits=a-b"
    payloads = [
        messages.regression(f, good=evil, bad=evil, link=link, plot=None, plot_url=None),
        messages.recovery(BENCH, "box-smoke", "history", 0.01, "seconds", 0.01, evil, evil.hash,
                          link),
        messages.failure(evil, evil.hash, "smoke", "<!channel> error",
                         "log line <!everyone> <http://evil.example|ok>\n", partial=False),
        messages.summary("b", "full", [("main", evil.hash, "failed (<!channel>)")], [],
                         "http://bench.example/"),
    ]
    box = Outbox(State(tmp_path / "s.sqlite3"), SlackBotNotifier(
        "xoxb-t", "#perf", base_url=fake_slack.base_url, timeout=5))
    for i, p in enumerate(payloads):
        p["text"] += " " + evil.subject  # the top-level text too (notifications)
        box.put(f"m|{i}", p["kind"], p)
    assert box.flush() == (len(payloads), 0)
    bodies = fake_slack.ok_calls("chat.postMessage")
    assert len(bodies) == len(payloads)
    for body in bodies:
        sent = json.dumps({"text": body["text"], "blocks": body["blocks"]})
        for bad in ("<!channel>", "<!here>", "<!everyone>", "<@U0ADMIN>", "<http://evil"):
            assert bad not in sent, (bad, sent)
        assert "&lt;!channel&gt;" in sent or "&lt;!here&gt;" in sent
    # our own links are still links
    blob = json.dumps(bodies[0]["blocks"])
    assert f"<{link}|{BENCH}>" in blob
    assert "&lt;http://evil.example|bench.example&gt;" in blob


def test_the_summary_details_read_as_typed_and_its_blocks_escaped() -> None:
    # the details are what the console and alerts.jsonl show: no Slack entities there
    from scheduler.publish import messages

    breached = messages.LimitVerdict("a.B.track_p99", messages.BREACHED, 0.3, "seconds",
                                     0.2, "p99 < 200 ms & steady")
    m = messages.summary("b", "full", [("main", "c" * 40, "done")], [],
                         "http://bench.example/", limits={"main": [breached]})
    details = "\n".join(m["details"])
    assert "✗ breached: a.B.track_p99: 300 ms > 200 ms — p99 < 200 ms & steady" in details
    assert "&gt;" not in details and "&lt;" not in details and "&amp;" not in details
    assert "&gt; 200 ms — p99 &lt; 200 ms &amp; steady" in json.dumps(m["blocks"],
                                                                    ensure_ascii=False)


# ---- git arguments ----------------------------------------------------------------------

def test_a_range_or_url_starting_with_a_dash_is_not_an_option(tmp_path: Path,
                                                              tiny_repo: TinyRepo) -> None:
    head = tiny_repo.commit(0.010, "one")
    repo = GitRepo(str(tiny_repo.path), local_path=tiny_repo.path, mirror_dir=tmp_path / "m")
    pwned = tmp_path / "pwned"
    for call in (lambda: repo.rev_list(f"--output={pwned}"),
                 lambda: repo.info(f"--output={pwned}"),
                 lambda: repo.parent(f"--output={pwned}"),
                 lambda: repo.resolve("--git-dir")):
        with pytest.raises(GitError):
            call()
    assert not pwned.exists()
    assert [c.hash for c in repo.rev_list(f"{head}^!")] == [head]
    mirror = GitRepo(f"--upload-pack=touch {pwned};", local_path=None,
                     mirror_dir=tmp_path / "m.git")
    with pytest.raises(GitError, match="repository '--upload-pack"):
        mirror.fetch()
    assert not pwned.exists()


def _own_session(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv],
                            start_new_session=True, env=env, stdin=subprocess.DEVNULL)


def test_an_asv_run_a_killed_scheduler_left_behind_is_stopped_at_the_next_start(
        cfg: Path) -> None:
    # What a SIGKILLed daemon leaves: its `asv run` in its own session, still measuring
    # (asv may die of the broken pipe first; tests/scheduler/test_end_to_end.py meets
    # that case). And a process that merely reuses a stored group id: left alone.
    svc = Pipeline(load_config(cfg, env={}), verbose=False)
    orphan = _own_session("asv", "run", "--config", str(svc.asv.config_path))
    stranger = _own_session("asv", "run", "--config", "/elsewhere/asv.conf.json")
    try:
        svc.state.set_child_group("asv", orphan.pid)
        svc.recover()
        assert orphan.wait(timeout=20) == -signal.SIGTERM
        assert svc.state.child_group("asv") == (0, "")
        svc.state.set_child_group("asv", stranger.pid)  # the id reused by someone else
        svc.recover()
        assert stranger.poll() is None, "recover stopped a process that is not ours"
    finally:
        for proc in (orphan, stranger):
            proc.kill()
            proc.wait(timeout=10)
        svc.close()
