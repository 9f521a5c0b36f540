"""Helpers for the scheduler tests: the tiny asv project and the Slack-compatible HTTP
server of ``selftest`` (a throwaway git repository whose measured value is set by a file in
each commit, so a "planted slowdown" is one commit; the real asv with environments shared
across the session), configurations, and ways to run the CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from selftest.slack import SlackServer as FakeSlack
from selftest.tinyproj import PY, REPO_ROOT, TinyRepo, git
from selftest.tinyproj import write_config as tiny_config

__all__ = ["PY", "REPO_ROOT", "FakeSlack", "TinyRepo", "git"]

def write_config(tmp_path: Path, shared: Path, repo: TinyRepo, *, slack: str = "",
                 extra: str = "", limits: str = "", initial_commits: int = 1,
                 max_queue: int = 50) -> Path:
    """A scheduler config for the tiny project; returns its path."""
    return tiny_config(tmp_path, shared, str(repo.path), asv='pass_env = ["TINY_*"]',
                       initial_commits=initial_commits, max_queue=max_queue, limits=limits,
                       extra=slack + extra)


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scheduler", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def bot_slack_config(fake: FakeSlack) -> str:
    return textwrap.dedent(f"""
        [slack]
        backend = "bot"
        channel = "#perf"
        base_url = "{fake.base_url}"
        """)


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def once(cfg: Path, **env: str) -> subprocess.CompletedProcess[str]:
    proc = run_cli("--config", str(cfg), "once", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def runs(state_dir: Path) -> dict[str, str]:
    with sqlite3.connect(state_dir / "state.sqlite3") as db:
        return dict(db.execute("SELECT commit_hash, status FROM runs"))


def texts(fake: FakeSlack, needle: str) -> list[str]:
    return [b["text"] for b in fake.ok_calls("chat.postMessage") if needle in b["text"]]


def alerts_file(state_dir: Path) -> list[dict[str, object]]:
    path = state_dir / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
