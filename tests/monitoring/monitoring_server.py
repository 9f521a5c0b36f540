"""Start and stop a real ``python -m toolserver serve --port 0`` process for the tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


@dataclass
class Server:
    """A running server process and how to reach it."""

    proc: subprocess.Popen[bytes]
    ws_url: str
    http_url: str
    log: Path

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
        """Plain HTTP GET: (status, content type, body); non-2xx statuses are returned."""
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=timeout) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()

    def api(self) -> dict[str, Any]:
        """``GET /api/metrics`` as a dict."""
        status, _, body = self.get("/api/metrics")
        assert status == 200, body
        doc: dict[str, Any] = json.loads(body)
        return doc

    def wait_api(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict:
        """Poll ``/api/metrics`` until ``pred(doc)`` holds; return that document."""
        deadline = time.monotonic() + timeout
        doc = self.api()
        while not pred(doc):
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s: {doc}")
            time.sleep(0.1)
            doc = self.api()
        return doc


def start_server(tmp_path: Path, *extra: str, timeout: float = 20.0) -> Server:
    """Start the server on a free port and wait for its ``listening on ws://...`` line.

    stdout goes to a file (not a pipe) so a chatty server can never block on a full pipe.
    """
    out = tmp_path / "server.stdout"
    log = tmp_path / "server.stderr"
    db = tmp_path / "requests.sqlite3"
    cmd = [
        sys.executable,
        "-m",
        "toolserver",
        "serve",
        "--port",
        "0",
        "--request-log",
        f"sqlite:///{db}",
        *extra,
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with out.open("wb") as fout, log.open("wb") as ferr:
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, env=env, cwd=tmp_path)
    deadline = time.monotonic() + timeout
    while True:
        text = out.read_text(errors="replace")
        m = re.search(r"ws://\S+", text)
        if m:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"server did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    ws_url = m.group(0)
    return Server(proc=proc, ws_url=ws_url, http_url="http" + ws_url[2:], log=log)


def stop_server(server: Server) -> None:
    """SIGTERM (the graceful path), then SIGKILL if it does not exit in time."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
