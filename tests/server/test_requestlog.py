"""The request log's writer thread and SQLite backend, without a server."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from toolserver.requestlog import Backend, NullRequestLog, RequestLog, Row, open_request_log


@pytest.mark.parametrize("nrows", [0, 1, 149, 150, 151, 12_345])
def test_close_flushes_every_row(tmp_path: Path, nrows: int) -> None:
    path = tmp_path / "log.sqlite3"
    log = open_request_log(f"sqlite:///{path}", flush_interval_s=10)  # only close() flushes
    log.start()
    for i in range(nrows):
        log.append((1000.0 + i, f"s{i % 3}", "echo", None if i % 2 else "glm", "ok", i / 10))
    log.close()
    assert log.stats() == (0, nrows)
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
    assert log.stats() == (0, 0)
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
    assert backend.opened == 2  # reopened before the next write
    assert [row[0] for row in backend.rows] == [1.0]
