"""Helpers for the distributed-runner tests: a real ``redis-server`` on a free port of
127.0.0.1 in its own directory, real runners (``python -m scheduler worker``) as
separate processes, and the coordinator's ledger read back from its state file.

Everything started here is stopped here: by its PID, its own process group, and a
SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sched_helpers import TinyRepo

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, predicate: Any, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _stop(proc: subprocess.Popen[Any], grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # what is left of its group
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


class RedisServer:
    """``redis-server`` with an append-only file in ``directory`` (it survives a restart,
    as a broker configured for it does)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        cmd = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port),
               "--dir", str(self.dir), "--save", "", "--appendonly", "yes",
               "--appendfsync", "always", "--protected-mode", "yes",
               "--logfile", str(self.dir / "redis.log"), "--daemonize", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_for("redis-server to accept connections", self.ping, 20)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)  # SIGTERM: redis writes the append-only file and exits
            self.proc = None

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)


class Runner:
    """One ``python -m scheduler worker`` process in its own process group."""

    def __init__(self, config: Path, machine: str, log: Path, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.machine = machine
        self.log = log
        cmd = [sys.executable, "-m", "scheduler", "--config", str(config), "worker",
               "--machine", machine, "--loglevel", "WARNING", *extra]
        self._fh = open(log, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **(env or {}),
                                          "PYTHONUNBUFFERED": "1"})

    def directory(self, state_dir: Path) -> Path:
        """Its working directory (``worker --dir`` default: <state>/runners/NAME)."""
        return state_dir / "runners" / f"{self.machine}_{socket.gethostname().split('.')[0]}"

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"runner {self.machine} exited:\n{self.text()[-3000:]}")
            return "ready: waiting for jobs" in self.text()

        wait_for(f"runner {self.machine} to consume its queues", ready, timeout, 0.5)

    def kill(self) -> None:
        """kill -9 of the runner's main process (its pool and asv must follow it)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        _stop(self.proc, grace=15)
        self._fh.close()


@dataclass
class Deployment:
    """A broker, a coordinator's configuration and state, the repository it watches,
    and its runners."""

    root: Path
    redis: RedisServer
    repo: TinyRepo
    config: Path
    runners: dict[str, Runner] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.root / "state"

    def start_runners(self, *machines: str, sleep: float = 0.0) -> list[Runner]:
        """(Re)start the runners of these machines, side by side (a runner's asv
        environment is kept across restarts: it lives under the runner's name). ``sleep``
        makes each measurement of the tiny suite take that much longer."""
        env = {"TINY_SLEEP": str(sleep)} if sleep else {}
        for m in machines:
            old = self.runners.pop(m, None)
            if old is not None:
                old.stop()
            self.runners[m] = Runner(self.config, m, self.root / f"runner-{m}.log", env=env)
        for m in machines:
            self.runners[m].wait_ready()
        return [self.runners[m] for m in machines]

    def stop(self) -> None:
        for r in self.runners.values():
            r.stop()
        self.runners.clear()
        self.redis.stop()


def ledger(state_dir: Path) -> list[dict[str, Any]]:
    """The coordinator's dispatched jobs, oldest first."""
    with sqlite3.connect(state_dir / "state.sqlite3") as db:
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM dispatched ORDER BY id")]
        except sqlite3.OperationalError:
            return []


def machine_runs(state_dir: Path, machine: str) -> dict[str, str]:
    path = state_dir / "machines" / machine / "state.sqlite3"
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT commit_hash, status FROM runs"))


def measured_lines(runner: Runner, commit: str) -> int:
    """How often a runner started ``asv run`` on a commit (its own say-line)."""
    return runner.text().count(f"measuring {commit[:8]} ")


DISPATCH = """
[dispatch]
broker = "{url}"
targets = {targets}
visibility_timeout_s = {visibility}
restore_interval_s = 1
lease_s = {lease}
lost_after_s = {lost}
{extra}
"""


def dispatch_config(url: str, *, targets: str = '["any"]', visibility: float = 8,
                    lease: float = 5, lost: float = 20, extra: str = "") -> str:
    return DISPATCH.format(url=url, targets=targets, visibility=visibility, lease=lease,
                           lost=lost, extra=extra)
