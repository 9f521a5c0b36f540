"""Helpers for the scheduler tests: a throwaway git repository with a tiny asv project whose
measured value is set by a file in each commit (so a "planted slowdown" is one commit), the
real asv (environments shared across the session), and a Slack-compatible HTTP server.
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
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"

BENCHMARK = '''
"""Tiny suite: the value comes from the commit under test (tinyproj.VALUE)."""
import os
import random
import time


class Suite:
    version = "1"
    unit = "seconds"

    def track_latency(self):
        import tinyproj

        delay = float(os.environ.get("TINY_SLEEP", "0"))
        if delay:
            time.sleep(delay)
        if getattr(tinyproj, "FAIL", False):
            raise RuntimeError("planted benchmark failure")
        rnd = random.Random(int(tinyproj.VALUE * 1e6))
        samples = [tinyproj.VALUE * (1 + rnd.uniform(-0.01, 0.01)) for _ in range(20)]
        # A disturbance from outside the commit (another load on the machine): the file
        # holds "RUNS FACTOR"; the next RUNS measurements are FACTOR times slower (FACTOR
        # "fail": they fail, whatever the commit).
        disturb = os.environ.get("TINY_DISTURB_FILE")
        if disturb and os.path.exists(disturb):
            runs, factor = open(disturb).read().split()
            if int(runs) > 0:
                open(disturb, "w").write(f"{int(runs) - 1} {factor}")
                if factor == "fail":
                    raise RuntimeError("planted disturbance: the measurement fails")
                samples = [s * float(factor) for s in samples]
        return {"samples": samples, "number": 1}

    if os.environ.get("TINY_OTHER_FILE"):
        def track_other(self):
            # A second series, only when asked for: the file holds one factor per coming
            # measurement ("1.0 1.0 1.8": the third measurement from now is 80 % slow).
            path = os.environ["TINY_OTHER_FILE"]
            factors = open(path).read().split() if os.path.exists(path) else []
            factor = float(factors[0]) if factors else 1.0
            if factors:
                open(path, "w").write(" ".join(factors[1:]))
            rnd = random.Random(7)
            return {"samples": [factor * (1 + rnd.uniform(-0.01, 0.01)) for _ in range(20)],
                    "number": 1}
'''

INSTALLER = '''
"""asv install_command of the tiny project: check pyproject.toml, put the checkout on
sys.path of the environment (a .pth file)."""
import site
import sys
import tomllib
from pathlib import Path

build_dir = Path(sys.argv[1])
try:
    tomllib.loads((build_dir / "pyproject.toml").read_text())
except tomllib.TOMLDecodeError as exc:
    print(f"build failed: pyproject.toml: tomllib.TOMLDecodeError: {exc}", file=sys.stderr)
    sys.exit(1)
Path(site.getsitepackages()[0], "tinyproj_checkout.pth").write_text(str(build_dir) + "\\n")
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tinyproj"
version = "0.1"

[tool.setuptools]
packages = ["tinyproj"]
'''








def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada Author", "GIT_AUTHOR_EMAIL": "ada@example.com",
           "GIT_COMMITTER_NAME": "Ada Author", "GIT_COMMITTER_EMAIL": "ada@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


class TinyRepo:
    """A throwaway git repository of the tiny project."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")
        (path / "tinyproj").mkdir()
        (path / "pyproject.toml").write_text(PYPROJECT)
        self._n = 0

    def commit(self, value: float, msg: str = "", *, broken_build: bool = False,
               fail_bench: bool = False) -> str:
        self._n += 1
        (self.path / "tinyproj" / "__init__.py").write_text(
            f"VALUE = {value!r}\nFAIL = {fail_bench!r}\nSERIAL = {self._n}\n")
        text = PYPROJECT + ("\nthis is [[ not toml\n" if broken_build else "")
        (self.path / "pyproject.toml").write_text(text)
        git(self.path, "add", "-A")
        # distinct, increasing commit dates keep "newest first" deterministic
        date = f"2026-01-01T00:{self._n:02d}:00Z"
        env_date = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        subprocess.run(["git", "commit", "-q", "-m", msg or f"commit {self._n}"],
                       cwd=self.path, check=True, capture_output=True,
                       env={**os.environ, **env_date, "GIT_AUTHOR_NAME": "Ada Author",
                            "GIT_AUTHOR_EMAIL": "ada@example.com",
                            "GIT_COMMITTER_NAME": "Ada Author",
                            "GIT_COMMITTER_EMAIL": "ada@example.com"})
        return git(self.path, "rev-parse", "HEAD")





def write_config(tmp_path: Path, shared: Path, repo: TinyRepo, *, slack: str = "",
                 extra: str = "", limits: str = "", initial_commits: int = 1,
                 max_queue: int = 50) -> Path:
    """A scheduler config for the tiny project; returns its path."""
    (tmp_path / "baselines").mkdir(exist_ok=True)
    if limits:
        (tmp_path / "baselines" / "limits.toml").write_text(limits)
    text = textwrap.dedent(f"""\
        [repository]
        url = "{repo.path}"
        branches = ["main"]
        initial_commits = {initial_commits}
        max_queue_per_poll = {max_queue}

        [asv]
        config = "{shared / 'asv.conf.json'}"
        env_dir = "{shared / 'env'}"
        machine = "testbox"

        [profiles]
        premerge = "smoke"
        nightly = "full"

        [schedule]
        poll_interval_s = 2
        work_interval_s = 1

        [site]
        html_dir = "{tmp_path / 'html'}"
        port = 0
        public_url = "http://bench.example/"

        [state]
        dir = "{tmp_path / 'state'}"

        [baselines]
        dir = "{tmp_path / 'baselines'}"
        """) + slack + extra
    path = tmp_path / "scheduler.toml"
    path.write_text(text)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scheduler", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# ---- a Slack-compatible server -----------------------------------------------------------

class FakeSlack:
    """Answers auth.test, chat.postMessage, files.getUploadURLExternal, the upload URL,
    files.completeUploadExternal and an incoming webhook (see the notes for the minimal
    answers). ``script[method]`` is a list of (status, body, headers) served first."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any] | str, int]] = []
        self.script: dict[str, list[tuple[int, Any, dict[str, str]]]] = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                method = path.rsplit("/", 1)[-1] if path.startswith("/api/") else path
                body: Any
                ctype = self.headers.get("Content-Type", "")
                if path.startswith("/upload/"):
                    body = f"<{len(raw)} bytes>"
                elif "json" in ctype:
                    body = json.loads(raw or b"{}")
                elif "x-www-form-urlencoded" in ctype:
                    from urllib.parse import parse_qs

                    body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                else:
                    body = raw.decode(errors="replace")[:200]
                with fake.lock:
                    scripted = fake.script.get(method, [])
                    step = scripted.pop(0) if scripted else None
                if step is not None:
                    status, answer, headers = step
                else:
                    status, answer, headers = 200, fake.answer(method, body), {}
                with fake.lock:
                    fake.calls.append((method, body, status))
                data = answer.encode() if isinstance(answer, str) else json.dumps(
                    answer).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "text/plain" if isinstance(answer, str)
                                 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, method: str, body: Any) -> Any:
        if method == "auth.test":
            return {"ok": True, "team_id": "T0", "user_id": "U0", "bot_id": "B0",
                    "url": "https://x.slack.com/", "team": "T", "user": "bot"}
        if method == "chat.postMessage":
            return {"ok": True, "channel": "C1", "ts": "1700000000.000100",
                    "message": {"text": body.get("text", ""), "ts": "1700000000.000100"}}
        if method == "files.getUploadURLExternal":
            return {"ok": True, "file_id": "F1",
                    "upload_url": f"http://127.0.0.1:{self.port}/upload/F1"}
        if method == "files.completeUploadExternal":
            return {"ok": True, "files": [{"id": "F1"}]}
        if method == "/webhook":
            return "ok"
        return "ok"  # the raw upload

    def ok_calls(self, method: str) -> list[Any]:
        with self.lock:
            return [b for m, b, s in self.calls if m == method and s == 200]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()





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
