"""Start ``python -m toolserver serve`` as a real subprocess for the tests.

The server prints ``listening on ws://HOST:PORT`` as its first stdout line
(the process contract); everything here goes through that, real sockets on
127.0.0.1 and the real ``websockets`` client.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

STARTUP_TIMEOUT = 15.0


class ServerProcess:
    def __init__(
        self,
        tmp: Path,
        *args: str,
        env: dict[str, str] | None = None,
        request_log: str | None = None,
    ) -> None:
        self.db_path = tmp / f"requests-{os.getpid()}-{time.monotonic_ns()}.sqlite3"
        self.stderr_path = tmp / f"server-{time.monotonic_ns()}.stderr"
        log_url = request_log if request_log is not None else f"sqlite:///{self.db_path}"
        cmd = [
            sys.executable, "-m", "toolserver", "serve", "--port", "0",
            "--request-log", log_url, "--request-log-flush", "0.05", *args,
        ]  # fmt: skip
        # A token in the developer's environment must not leak into tests.
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLSERVER_")}
        full_env.update(env or {})
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, env=full_env, text=True
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], STARTUP_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening on ws://"):
            self.kill()
            raise RuntimeError(f"server did not start: {line!r}\n{self.stderr()}")
        self.url = line.split()[-1]
        self.http_url = "http" + self.url[2:]
        self.port = int(self.url.rsplit(":", 1)[1])

    def stderr(self) -> str:
        # The child writes this file directly; our handle is only for Popen.
        return self.stderr_path.read_text(errors="replace")

    def connect(self, **kwargs: Any) -> ClientConnection:
        kwargs.setdefault("subprotocols", ["mcp"])
        kwargs.setdefault("open_timeout", 5)
        return connect(self.url, **kwargs)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def rows(self) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_path) as db:
            return db.execute(
                "SELECT ts, session, tool, provider, status, latency_ms FROM requests"
            ).fetchall()


def request(method: str, id: int | str | None = 1, **params: Any) -> str:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        msg["id"] = id
    if params:
        msg["params"] = params
    return json.dumps(msg)


def call(name: str, id: int | str = 1, **arguments: Any) -> str:
    return request("tools/call", id, name=name, arguments=arguments)


def rpc(ws: ClientConnection, frame: str | bytes, timeout: float = 5.0) -> dict[str, Any]:
    """Send one frame and return the next answer, decoded."""
    ws.send(frame)
    return json.loads(ws.recv(timeout))


def recv_all(ws: ClientConnection, n: int, timeout: float = 10.0) -> dict[Any, dict[str, Any]]:
    """Receive ``n`` answers, keyed by id (asserting ids are unique)."""
    out: dict[Any, dict[str, Any]] = {}
    for _ in range(n):
        msg = json.loads(ws.recv(timeout))
        assert msg["id"] not in out, f"duplicate answer for id {msg['id']}"
        out[msg["id"]] = msg
    return out


def text_of(response: dict[str, Any]) -> str:
    assert "result" in response, response
    content = response["result"]["content"]
    assert content[0]["type"] == "text"
    return str(content[0]["text"])
