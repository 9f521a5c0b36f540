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
from serverproc import ServerProcess, call, recv_all, rpc, text_of

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


@pytest.fixture(scope="module")
def postgres_cluster() -> Iterator[str]:
    """One throwaway cluster for the module (initdb costs seconds); URL of its server."""
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
            yield f"postgresql://toolserver@127.0.0.1:{port}"
        finally:
            run(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster: str, request: pytest.FixtureRequest) -> str:
    """A fresh database of the module's cluster for each test."""
    import psycopg

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:40].lower()
    with psycopg.connect(f"{postgres_cluster}/postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_cluster}/{name}"


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


def test_a_locked_table_times_out_instead_of_hanging_the_writer(
    start_server: StartServer, postgres_url: str
) -> None:
    """statement_timeout on the log's connection (issue 19): a write blocked on a lock
    fails after --request-log-timeout, its rows are counted as dropped, and the writer
    goes on once the table is free again, instead of hanging for as long as the lock."""
    import json
    import time
    import urllib.request

    import psycopg

    server = start_server("--request-log-timeout", "0.5", request_log=postgres_url)

    def dropped() -> dict[str, int]:
        with urllib.request.urlopen(server.http_url + "/api/metrics", timeout=5) as r:
            return json.loads(r.read())["requestlog"]["rows_dropped_by_reason"]  # type: ignore[no-any-return]

    with server.connect() as ws, psycopg.connect(postgres_url) as locker:
        locker.execute("LOCK TABLE requests IN ACCESS EXCLUSIVE MODE")  # until rollback
        assert text_of(rpc(ws, call("echo", 1, text="during"))) == "during"
        deadline = time.monotonic() + 15
        while dropped()["write_failed"] == 0:
            assert time.monotonic() < deadline, "the write hung on the lock"
            time.sleep(0.1)
        locker.rollback()
        for i in range(3):
            assert text_of(rpc(ws, call("echo", f"after{i}", text="x"))) == "x"
    assert server.terminate() == 0
    with psycopg.connect(postgres_url) as db:
        (n,) = db.execute("SELECT count(*) FROM requests").fetchone()  # type: ignore[misc]
        (timeout,) = db.execute("SHOW statement_timeout").fetchone()  # type: ignore[misc]
    assert n == 3  # the rows after the lock; the one during it was dropped (counted)
    assert timeout == "0", "the test's own session keeps the server default"
