"""Start, pin, restart and stop the server under test as a subprocess.

Contract (ARCHITECTURE.md section 1): ``PYTHON -m toolserver serve --port 0`` prints
``listening on ws://HOST:PORT`` as its first stdout line once it accepts connections, and
exits cleanly on SIGTERM. The server is pinned to core 0 and the generator to the other
cores when there are 2+, so that the two do not fight over one core and the server's CPU
figures are its own. Restart keeps the port, so clients can reconnect to the same URL.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

URL_RE = re.compile(r"ws://\S+")
REPO_ROOT = Path(__file__).resolve().parents[2]


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def pin_generator(server_core: int = 0) -> list[int] | None:
    """Keep the generator off the server's core (2+ cores); returns the generator cores."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    mine = [c for c in cores if c != server_core] or cores
    os.sched_setaffinity(0, mine)
    return mine


def pin_process(pid: int, core: int) -> bool:
    """Pin every thread of ``pid`` to ``core`` (threads made later inherit it)."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    ok = False
    task_dir = Path(f"/proc/{pid}/task")
    tids = [int(p.name) for p in task_dir.iterdir()] if task_dir.exists() else [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, {core})
            ok = True
        except OSError:
            pass
    return ok


_LIBC: Any = None
if sys.platform.startswith("linux"):
    import ctypes

    # loaded here, in the parent: the child between fork and exec should only call prctl
    _LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the instrument dies, even by SIGKILL
    (Linux ``PR_SET_PDEATHSIG``), so an interrupted run never leaves a server behind."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


#: PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process.
#: A server restarted from a short-lived thread (the restart action of the overload
#: scenario) would be killed the moment that thread ends, so every server is forked from
#: this one long-lived thread, which lives as long as the instrument process.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                 thread_name_prefix="server-spawner")


class ServerProcess:
    """A server subprocess (toolserver by default, or any module with the same contract).

    ``args`` follow the module (for the toolserver ``serve --port 0 ...``); ``pythonpath``
    is prepended to PYTHONPATH (e.g. ``src`` of a checkout that is not installed).
    """

    def __init__(self, python: str, args: list[str] | None = None, *,
                 module: str = "toolserver", pythonpath: list[str] | None = None,
                 env: dict[str, str] | None = None, core: int | None = 0,
                 startup_timeout_s: float = 30.0, cwd: str | None = None,
                 log_path: str | None = None) -> None:
        self.python = python
        self.module = module
        self.args = list(args) if args is not None else [
            "serve", "--host", "127.0.0.1", "--port", "0"]
        self.env = dict(os.environ)
        if env:
            self.env.update(env)
        if pythonpath:
            parts = [*pythonpath]
            if self.env.get("PYTHONPATH"):
                parts.append(self.env["PYTHONPATH"])
            self.env["PYTHONPATH"] = os.pathsep.join(parts)
        self.core = core if core is not None and cpu_count() >= 2 else None
        self.startup_timeout_s = startup_timeout_s
        self.cwd = cwd or str(REPO_ROOT)
        #: temporary files and folders made for this server, removed by :meth:`discard`
        self.owned: list[str] = []
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="loadgen-server-", suffix=".log")
            os.close(fd)
            self.owned.append(log_path)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self.starts = 0
        self._log: IO[bytes] | None = None

    #: In the child before exec: how it learns that the instrument died.
    death_signal_setter = staticmethod(die_with_parent)

    @property
    def pid(self) -> int | None:
        """PID of the running server."""
        return self.proc.pid if self.proc is not None else None

    def command(self) -> list[str]:
        """The command line, with ``--port`` fixed after the first start (restart keeps it)."""
        args = list(self.args)
        if self.port and "--port" in args:
            args[args.index("--port") + 1] = str(self.port)
        return [self.python, "-m", self.module, *args]

    def start(self) -> str:
        """Start, wait for the ``listening on`` line, pin; returns the ws:// URL."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        log = self._log
        self.proc = _SPAWNER.submit(
            subprocess.Popen, self.command(), stdout=subprocess.PIPE, stderr=log,
            stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
            preexec_fn=self.death_signal_setter).result()
        if self.core is not None:
            pin_process(self.proc.pid, self.core)
        line = self._first_line()
        match = URL_RE.search(line)
        if not match:
            rc = self.proc.poll()
            self.stop()
            raise RuntimeError(f"server did not announce its URL (exit {rc}): {line!r}; "
                               f"log: {self.tail_log()}")
        self.url = match.group(0).rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        if self.core is not None:
            pin_process(self.proc.pid, self.core)
        threading.Thread(target=self._drain_stdout, daemon=True).start()
        self.starts += 1
        return self.url

    def _first_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.startup_timeout_s
        buf = b""
        try:
            while b"\n" not in buf and time.monotonic() < deadline:
                if not sel.select(timeout=0.1):
                    if self.proc.poll() is not None:
                        break
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        finally:
            sel.close()
        return buf.decode(errors="replace").split("\n", 1)[0]

    def _drain_stdout(self) -> None:
        proc = self.proc
        if proc is None or proc.stdout is None:
            return
        fd = proc.stdout.fileno()
        with contextlib.suppress(OSError, ValueError):
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                if self._log is not None and not self._log.closed:
                    self._log.write(chunk)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, wait (the server drains in-flight calls), SIGKILL as a last resort."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        if self._log is not None:
            self._log.close()
        return proc.returncode

    def discard(self, timeout_s: float = 15.0) -> int | None:
        """Stop for good and remove what was made for this server (its log, its request
        log): every benchmark run starts servers, and /tmp would keep one of each."""
        rc = self.stop(timeout_s)
        for path in self.owned:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
        self.owned.clear()
        return rc

    def restart(self) -> dict[str, float | int | None]:
        """Stop and start again on the same port; returns the timings and the exit code."""
        t0 = time.perf_counter()
        rc = self.stop()
        t1 = time.perf_counter()
        self.start()
        t2 = time.perf_counter()
        return {"stop_s": round(t1 - t0, 3), "start_s": round(t2 - t1, 3), "exit_code": rc,
                "stopped_at": t1, "ready_at": t2}

    def tail_log(self, nbytes: int = 2000) -> str:
        """The end of the server's stderr (for error messages)."""
        try:
            data = Path(self.log_path).read_bytes()
        except OSError:
            return ""
        return data[-nbytes:].decode(errors="replace")

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def http_base(ws_url: str) -> str:
    """``ws://h:p/...`` -> ``http://h:p``."""
    rest = ws_url.split("://", 1)[1]
    return "http://" + rest.split("/", 1)[0]


def fetch_health(ws_url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """``GET /health`` of the server (version, connections); None when unavailable."""
    try:
        with urllib.request.urlopen(http_base(ws_url) + "/health", timeout=timeout_s) as r:
            data = json.loads(r.read())
            return data if isinstance(data, dict) else None
    except Exception:  # a bare echo server has no /health: that is fine
        return None
