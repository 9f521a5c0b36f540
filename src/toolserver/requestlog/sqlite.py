"""SQLite backend: the default, a single file next to the server."""

from __future__ import annotations

import sqlite3

from .base import Backend, Row

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
INSERT = (
    "INSERT INTO requests (ts, session, tool, provider, status, latency_ms) VALUES (?,?,?,?,?,?)"
)


class SQLiteBackend(Backend):
    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def open(self) -> None:
        # Opened in the writer thread: sqlite3 connections are bound to the
        # thread that created them.
        db = sqlite3.connect(self.path)
        # WAL lets readers (tests, dashboards) query while the server writes;
        # synchronous=NORMAL is durable across process crashes, which is all a
        # request log needs.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(SCHEMA)
        db.commit()
        self._db = db

    def write(self, rows: list[Row]) -> None:
        assert self._db is not None
        with self._db:
            self._db.executemany(INSERT, rows)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
