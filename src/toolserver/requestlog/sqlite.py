"""SQLite backend: the default, a single file next to the server."""

from __future__ import annotations

import itertools
import sqlite3

from .base import COLUMNS, Backend, Row

__all__ = ["SQLiteBackend"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    ts REAL NOT NULL,
    session TEXT NOT NULL,
    tool TEXT NOT NULL,
    provider TEXT,
    status TEXT NOT NULL,
    latency_ms REAL NOT NULL
)
"""

#: Rows per INSERT statement. executemany() steps the statement once per row,
#: and sqlite3 releases the GIL around every step: thousands of GIL hand-offs
#: per batch, each a chance to stall the event-loop thread. One multi-row
#: INSERT binds everything with the GIL held and steps once, at half the CPU
#: per row. 6 x 150 = 900 parameters stays under the 999 limit of SQLite
#: builds older than 3.32.
ROWS_PER_STATEMENT = 150


def _insert(nrows: int) -> str:
    row = "(" + ",".join("?" * len(COLUMNS)) + ")"
    return f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES {','.join([row] * nrows)}"


_INSERT_FULL = _insert(ROWS_PER_STATEMENT)


class SQLiteBackend(Backend):
    def __init__(self, path: str, *, timeout_s: float = 5.0) -> None:
        self.path = path
        #: How long a write waits for another process's lock before it fails.
        self.timeout_s = timeout_s
        self._db: sqlite3.Connection | None = None

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def open(self) -> None:
        # Opened in the writer thread: sqlite3 connections are bound to the
        # thread that created them.
        db = sqlite3.connect(self.path, timeout=self.timeout_s)
        # WAL lets readers (tests, dashboards) query while the server writes;
        # synchronous=NORMAL is durable across process crashes, which is all a
        # request log needs.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(SCHEMA)
        db.commit()
        self._db = db

    def write(self, rows: list[Row]) -> None:
        db = self._db
        assert db is not None
        flatten = itertools.chain.from_iterable
        with db:  # one transaction per batch
            for i in range(0, len(rows), ROWS_PER_STATEMENT):
                chunk = rows[i : i + ROWS_PER_STATEMENT]
                sql = _INSERT_FULL if len(chunk) == ROWS_PER_STATEMENT else _insert(len(chunk))
                db.execute(sql, list(flatten(chunk)))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
