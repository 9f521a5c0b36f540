"""The request log's writer thread and SQLite backend, without a server."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from serverproc import ServerProcess, call, recv_all, request, rpc, text_of

from toolserver.requestlog import Backend, NullRequestLog, RequestLog, Row, open_request_log


@pytest.mark.parametrize("nrows", [0, 1, 149, 150, 151, 12_345])
def test_close_flushes_every_row(tmp_path: Path, nrows: int) -> None:
    path = tmp_path / "log.sqlite3"
    log = open_request_log(f"sqlite:///{path}", flush_interval_s=10)  # only close() flushes
    log.start()
    for i in range(nrows):
        log.append((1000.0 + i, f"s{i % 3}", "echo", None if i % 2 else "glm", "ok", i / 10))
    log.close()
    assert log.stats() == (0, nrows, 0, 0)
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM requests ORDER BY ts").fetchall()
    assert len(rows) == nrows
    if nrows:
        assert rows[0] == (1000.0, "s0", "echo", "glm", "ok", 0.0)
        assert rows[-1][0] == 1000.0 + nrows - 1


def test_appends_from_the_hot_path_never_wait_for_the_writer(tmp_path: Path) -> None:
    log = open_request_log(f"sqlite:///{tmp_path / 'log.sqlite3'}", flush_interval_s=0.01)
    log.start()
    row = (0.0, "s", "echo", None, "ok", 0.1)
    started = time.perf_counter()
    for _ in range(100_000):
        log.append(row)
    assert time.perf_counter() - started < 1.0  # plain deque appends
    deadline = time.monotonic() + 10
    while log.stats()[1] < 100_000:  # the periodic flush catches up on its own
        assert time.monotonic() < deadline
        time.sleep(0.01)
    log.close()
    assert not any(t.name == "requestlog-writer" for t in threading.enumerate())


def test_none_and_bad_urls(tmp_path: Path) -> None:
    log = open_request_log("none")
    assert isinstance(log, NullRequestLog)
    log.start()
    log.append((0.0, "s", "echo", None, "ok", 0.1))
    log.close()
    assert log.stats() == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="unsupported request log URL"):
        open_request_log("mysql://x")
    with pytest.raises(ValueError, match="needs a path"):
        open_request_log("sqlite:///")
    bad = open_request_log(f"sqlite:///{tmp_path}/missing-dir/x.sqlite3")
    with pytest.raises(RuntimeError, match="cannot open request log"):
        bad.start()


class FlakyBackend(Backend):
    """Fails its first ``failures`` writes (a database restarting), then works."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.opened = 0
        self.rows: list[Row] = []

    def open(self) -> None:
        self.opened += 1

    def write(self, rows: list[Row]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database restarting")
        self.rows.extend(rows)

    def close(self) -> None:
        pass


def test_write_failures_drop_visibly_then_the_log_reconnects() -> None:
    backend = FlakyBackend(failures=1)
    log = RequestLog(backend, flush_interval_s=10)
    log.start()
    log.append((0.0, "s", "echo", None, "ok", 0.1))
    log._drain_once()  # fails: dropped and counted, the writer keeps running
    assert (log.rows_written, log.rows_dropped) == (0, 1)
    log.append((1.0, "s", "echo", None, "ok", 0.1))
    log.close()
    assert (log.rows_written, log.rows_dropped) == (1, 1)
    assert log.stats() == (0, 1, 0, 1)  # the one lost row is a failed write
    assert backend.opened == 2  # reopened before the next write
    assert [row[0] for row in backend.rows] == [1.0]


class StuckBackend(Backend):
    """A database that hangs in write() until released (a locked table, a dead server)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.writing = threading.Event()
        self.rows: list[Row] = []

    def open(self) -> None:
        pass

    def write(self, rows: list[Row]) -> None:
        self.writing.set()
        self.release.wait(30)
        self.rows.extend(rows)

    def close(self) -> None:
        pass


def test_a_full_queue_drops_rows_counts_them_and_never_blocks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = StuckBackend()
    log = RequestLog(backend, flush_interval_s=0.01, max_queue=100)
    log.start()
    try:
        log.append((0.0, "s", "echo", None, "ok", 0.1))
        assert backend.writing.wait(10)  # the writer holds that row and hangs
        with caplog.at_level(logging.WARNING, logger="toolserver.requestlog"):
            started = time.perf_counter()
            for i in range(10_000):
                log.append((float(i), "s", "echo", None, "ok", 0.1))
            assert time.perf_counter() - started < 2.0  # never waits for the writer
        depth, written, full, failed = log.stats()
        assert (depth, written, full, failed) == (100, 0, 9_900, 0)
        warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
        assert len(warnings) == 1, "the warning is rate-limited (one per 10 s)"
    finally:
        backend.release.set()
        log.close()
    assert len(backend.rows) == 101  # everything that was queued is written
    assert log.stats() == (0, 101, 9_900, 0)


StartServer = Callable[..., ServerProcess]


def test_a_locked_database_costs_log_rows_never_answers(
    start_server: StartServer, tmp_path: Path
) -> None:
    """End to end: SQLite locked by another process; calls keep being answered at once,
    the lost rows show in /api/metrics and /metrics, one warning line on stderr."""
    server = start_server("--request-log-max-queue", "20", "--request-log-timeout", "0.5")
    with server.connect() as ws:
        assert text_of(rpc(ws, call("echo", "first", text="x"))) == "x"
        deadline = time.monotonic() + 10
        while not server.rows():  # the table exists and holds the first row
            assert time.monotonic() < deadline
            time.sleep(0.05)
        lock = sqlite3.connect(server.db_path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            for i in range(200):
                ws.send(call("echo", i, text=str(i)))
            answers = recv_all(ws, 200)
            assert all(text_of(answers[i]) == str(i) for i in range(200))
            started = time.monotonic()
            assert rpc(ws, request("ping", "p"))["result"] == {}
            assert time.monotonic() - started < 1.0
            with urllib.request.urlopen(server.http_url + "/api/metrics", timeout=5) as r:
                doc = json.loads(r.read())["requestlog"]
            # 200 rows for a queue of 20 and a writer stuck on the lock: most are dropped
            assert doc["rows_dropped_by_reason"]["queue_full"] >= 160, doc
            with urllib.request.urlopen(server.http_url + "/metrics", timeout=5) as r:
                text = r.read().decode()
            assert 'toolserver_requestlog_rows_dropped_total{reason="queue_full"}' in text
            # the stuck write gives up after --request-log-timeout instead of hanging
            deadline = time.monotonic() + 10
            while doc["rows_dropped_by_reason"]["write_failed"] == 0:
                assert time.monotonic() < deadline, doc
                time.sleep(0.1)
                with urllib.request.urlopen(server.http_url + "/api/metrics", timeout=5) as r:
                    doc = json.loads(r.read())["requestlog"]
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        for i in range(5):  # once the database is back, rows are written again
            assert text_of(rpc(ws, call("echo", f"after{i}", text="y"))) == "y"
    assert server.terminate() == 0
    assert sum(1 for row in server.rows() if row[4] == "ok") >= 6
    assert server.stderr().count("request log queue full") == 1
