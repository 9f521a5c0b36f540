"""The side-by-side check's edges: what it applies to, and clear errors instead of
verdicts when it cannot run. (Its verdicts on a real planted regression are tested
through the service in tests/detection/test_evaluate.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from sched_helpers import REPO_ROOT, TinyRepo

from scheduler.config import SideBySideConfig, load_config
from scheduler.measure.side_by_side import SideBySideError, SideBySideRunner, parse_versus
from scheduler.pipeline import Pipeline
from selftest.evaluate import _commit as eval_commit
from selftest.evaluate import _git as eval_git
from selftest.plant import copy_project


def _repo(tmp_path: Path, *, toolserver: bool) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    (repo / "src" / ("toolserver" if toolserver else "other")).mkdir(parents=True)
    (repo / "src" / ("toolserver" if toolserver else "other") / "__init__.py").write_text("")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    return repo, head


def test_applies_only_to_commits_with_the_toolserver(tmp_path: Path) -> None:
    repo, head = _repo(tmp_path, toolserver=False)
    assert not SideBySideRunner(SideBySideConfig(), repo=repo).applies(head)
    assert not SideBySideRunner(SideBySideConfig(), repo=repo).applies("no-such-commit")
    repo2, head2 = _repo(tmp_path / "2", toolserver=True)
    assert SideBySideRunner(SideBySideConfig(), repo=repo2).applies(head2)


def test_a_commit_that_cannot_be_checked_out_is_a_clear_error(tmp_path: Path) -> None:
    repo, head = _repo(tmp_path, toolserver=True)
    runner = SideBySideRunner(SideBySideConfig(rounds=2, duration_s=0.2), repo=repo)
    with pytest.raises(SideBySideError, match=r"versus .* failed \(exit 1\).*no-such-commit"):
        runner.run(head, "no-such-commit", project_dir=REPO_ROOT)
    # its worktrees are gone again
    listing = subprocess.run(["git", "-C", str(repo), "worktree", "list"], check=True,
                             capture_output=True, text=True).stdout
    assert listing.count("\n") == 1


@pytest.mark.parametrize("doc", [
    {"mode": "versus"},
    {"mode": "commits", "labels": ["a"], "rows": [], "verdict": {"points": []}},
    {"mode": "commits", "labels": ["a", "b"], "rows": [],
     "verdict": {"points": [{"point": "10x1"}]}},
])
def test_a_corrupt_versus_result_is_a_clear_error(doc: dict) -> None:
    with pytest.raises(SideBySideError, match="unreadable versus result"):
        parse_versus(doc, "a" * 40, "b" * 40)


def test_time_per_message_is_paired_from_the_rounds_throughput() -> None:
    side = {"server_cpu_us_per_msg_median": 30.0}
    doc = {"mode": "commits", "labels": ["a", "b"], "tool": "echo",
           "rows": [{"connections": 10, "inflight": 1,
                     "a": {**side, "msg_s_rounds": [1000.0] * 9 + [700.0]},
                     "b": {**side, "msg_s_rounds": [800.0] * 9 + [900.0]}}],
           "verdict": {"points": [{"point": "10x1", "paired_cpu_ratio_b_over_a": 1.0,
                                   "b_higher_rounds": 5, "rounds": 10,
                                   "sign_test_p": 0.62, "regression": False}]}}
    (point,) = parse_versus(doc, "a" * 40, "b" * 40, threshold=0.05, alpha=0.06).points
    assert point.tpm_ratio == 1.25 and point.tpm_higher == 9 and point.tpm_p < 0.06
    assert point.tpm_regression and not point.regression and not point.clean
    assert "time per message b/a 1.250 (9/10" in point.text()


def test_abandon_stops_the_run_and_leaves_no_servers_or_worktrees(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    copy_project(REPO_ROOT, repo)
    eval_git(repo, "init", "-q", "-b", "main")
    a = eval_commit(repo, "base")
    (repo / "README.md").write_text("changed\n")
    b = eval_commit(repo, "docs")
    runner = SideBySideRunner(SideBySideConfig(rounds=50, duration_s=1.0), repo=repo)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.run(a, b, project_dir=REPO_ROOT)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and eval_git(repo, "worktree", "list").count("\n") < 2:
        time.sleep(0.2)  # both worktrees are there: versus is running
    worktrees = [line.split()[0] for line in
                 eval_git(repo, "worktree", "list").splitlines()[1:]]
    time.sleep(3)
    serving = _processes_using(worktrees)
    runner.abandon()
    thread.join(60)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], SideBySideError), errors
    assert "abandoned" in str(errors[0])
    assert eval_git(repo, "worktree", "list").count("\n") == 0  # only the main one
    assert len(serving) == 2, serving  # the two servers (PYTHONPATH = their worktree)
    assert not _processes_using(worktrees)  # and are gone, servers included


def _processes_using(paths: list[str]) -> list[int]:
    """Processes whose command line or PYTHONPATH names one of ``paths``."""
    found = []
    for proc in psutil.process_iter():
        try:
            text = " ".join(proc.cmdline()) + " " + proc.environ().get("PYTHONPATH", "")
        except (psutil.Error, OSError):
            continue
        if any(p in text for p in paths):
            found.append(proc.pid)
    return found


# the smallest real daemon doing a side-by-side run: the service, its runner, this checkout
KILLED_DAEMON = """
import sys
from pathlib import Path
from scheduler.config import load_config
from scheduler.pipeline import Pipeline
svc = Pipeline(load_config(sys.argv[1]), verbose=False)
svc.side_by_side.run(sys.argv[2], sys.argv[3], project_dir=Path(sys.argv[4]))
"""


def test_a_side_by_side_run_left_by_a_killed_daemon_is_stopped_at_the_next_start(
        tmp_path: Path) -> None:
    repo = TinyRepo(tmp_path / "proj", toolserver=True)
    a = repo.commit(0.01, "parent")
    b = repo.commit(0.01, "commit")
    cfg = tmp_path / "scheduler.toml"
    cfg.write_text(f'[repository]\nurl = "{repo.path}"\n[state]\ndir = "{tmp_path / "st"}"\n'
                   '[side_by_side]\nrounds = 50\nduration_s = 1.0\n')
    secret = "xoxb-never-in-a-child-0042"
    daemon = subprocess.Popen(
        [sys.executable, "-c", KILLED_DAEMON, str(cfg), a, b, str(REPO_ROOT)],
        cwd=REPO_ROOT, env={**os.environ, "SLACK_BOT_TOKEN": secret,
                            "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        servers: list[int] = []
        while time.monotonic() < deadline and len(servers) < 2:
            time.sleep(0.2)
            worktrees = [line.split()[0] for line in
                         eval_git(repo.path, "worktree", "list").splitlines()[1:]]
            servers = _processes_using(worktrees) if len(worktrees) == 2 else []
        assert len(servers) == 2, "the side-by-side run did not start its two servers"
        versus = [p for p in psutil.Process(daemon.pid).children()
                  if "benchmarks.load.versus" in " ".join(p.cmdline())]
        assert len(versus) == 1
        group = [versus[0], *versus[0].children(recursive=True)]
        for proc in group:  # versus and the commits' servers: no secret in their environment
            assert "SLACK_BOT_TOKEN" not in proc.environ()
            assert secret not in " ".join(proc.environ().values())
        daemon.kill()  # SIGKILL: versus and its servers run on in their own session
        daemon.wait(timeout=10)
        time.sleep(0.5)
        assert all(p.is_running() for p in group), "expected the orphans to outlive it"
        svc = Pipeline(load_config(cfg, env={}), verbose=False)
        try:
            svc.recover()  # the next start
            assert svc.state.child_group("side_by_side") == (0, "")
        finally:
            svc.close()
        _gone, alive = psutil.wait_procs(group, timeout=10)
        assert not alive, [p.pid for p in alive]
        assert not _processes_using(worktrees)
        assert eval_git(repo.path, "worktree", "list").count("\n") == 0
        work_dir = Path(worktrees[0]).parents[2]  # <work dir>/worktrees/versus-commits-*/
        assert work_dir.name.startswith("scheduler-side-by-side-") and not work_dir.exists()
    finally:
        if daemon.poll() is None:
            daemon.kill()
