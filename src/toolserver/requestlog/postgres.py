"""PostgreSQL backend (psycopg 3), for logs shared by several servers."""

from __future__ import annotations

from typing import Any

from .base import Backend, Row

__all__ = ["PostgresBackend"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    ts DOUBLE PRECISION NOT NULL,
    session TEXT NOT NULL,
    tool TEXT NOT NULL,
    provider TEXT,
    status TEXT NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL
)
"""
COPY = "COPY requests (ts, session, tool, provider, status, latency_ms) FROM STDIN"


class PostgresBackend(Backend):
    def __init__(self, url: str, *, statement_timeout_s: float = 5.0) -> None:
        self.url = url
        #: Server-side bound on every statement of this connection (a locked table, a
        #: stuck server): the write fails, its rows are counted as dropped, the writer
        #: reconnects and goes on instead of hanging.
        self.statement_timeout_s = statement_timeout_s
        self._conn: Any = None

    def describe(self) -> str:
        # Hide any password embedded in the URL.
        _, sep, tail = self.url.rpartition("@")
        return f"postgresql://***@{tail}" if sep else self.url

    def open(self) -> None:
        # Imported lazily: psycopg is an optional dependency (extra "postgres").
        import psycopg

        kwargs: dict[str, Any] = {}
        if "connect_timeout" not in self.url:  # the URL's own setting wins
            kwargs["connect_timeout"] = max(1, round(self.statement_timeout_s))
        self._conn = psycopg.connect(self.url, **kwargs)
        with self._conn.transaction():
            # Session-wide (not SET LOCAL): it outlives this transaction, and comes
            # first so that even the schema statement cannot hang.
            self._conn.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                [f"{max(1, round(self.statement_timeout_s * 1000))}ms"],
            )
            self._conn.execute(SCHEMA)

    def write(self, rows: list[Row]) -> None:
        # COPY is the fastest bulk path and one round trip per batch.
        with self._conn.transaction(), self._conn.cursor() as cur, cur.copy(COPY) as copy:
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
