"""The request log in PostgreSQL: a throwaway cluster (initdb/pg_ctl) on a free port."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator

import pytest
from serverproc import ServerProcess, call, recv_all, text_of

StartServer = Callable[..., ServerProcess]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    pytest.importorskip("psycopg")
    base = tempfile.mkdtemp(prefix="toolserver-pg-")
    data = os.path.join(base, "data")
    run_as: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run the cluster as the postgres user.
        if shutil.which("runuser") is None:
            pytest.skip("running as root and no runuser to drop privileges for PostgreSQL")
        try:
            shutil.chown(base, user="postgres")
        except (LookupError, PermissionError) as exc:
            pytest.skip(f"running as root and no usable 'postgres' user: {exc}")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*run_as, *cmd], check=True, capture_output=True, timeout=60)

    try:
        run(initdb, "-D", data, "-U", "toolserver", "--auth=trust", "--no-sync", "-E", "UTF8")
        run(pg_ctl, "-D", data, "-l", os.path.join(base, "pg.log"), "-w", "-t", "30",
            "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start")  # fmt: skip
        try:
            yield f"postgresql://toolserver@127.0.0.1:{port}/postgres"
        finally:
            run(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_request_log_in_postgres_keeps_every_row(
    start_server: StartServer, postgres_url: str
) -> None:
    import psycopg

    server = start_server("--provider-latency-ms", "2", request_log=postgres_url)
    n = 500
    with server.connect() as ws:
        for i in range(n):
            ws.send(call("echo", i, text=str(i)) if i % 50 else call("chat", i, prompt="x"))
        answers = recv_all(ws, n)
        assert text_of(answers[1]) == "1"
    assert server.terminate() == 0
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT tool, status, count(*) FROM requests GROUP BY 1, 2").fetchall()
    assert sorted(rows) == [("chat", "ok", n // 50), ("echo", "ok", n - n // 50)]


def test_bad_request_log_url_fails_at_startup(start_server: StartServer) -> None:
    with pytest.raises(RuntimeError, match="unsupported request log URL"):
        start_server(request_log="mysql://nope")
    with pytest.raises(RuntimeError, match="cannot open request log"):
        start_server(request_log="sqlite:////nonexistent-dir/x.sqlite3")
