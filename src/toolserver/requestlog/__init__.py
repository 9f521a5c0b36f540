"""The request log: one row per ``tools/call``, written off the event loop.

:func:`open_request_log` picks the backend from a URL:
``sqlite:///relative/or/absolute/path``, ``postgresql://...`` (or
``postgres://``), or ``none``.
"""

from __future__ import annotations

from .base import COLUMNS, MAX_QUEUE, Backend, LogStats, NullRequestLog, RequestLog, Row

__all__ = [
    "COLUMNS",
    "Backend",
    "LogStats",
    "NullRequestLog",
    "RequestLog",
    "Row",
    "open_request_log",
]


def open_request_log(
    url: str,
    *,
    flush_interval_s: float = 0.2,
    max_queue: int = MAX_QUEUE,
    timeout_s: float = 5.0,
) -> RequestLog:
    """Build (not start) the request log for ``url``; raise ValueError on an unknown scheme.

    ``timeout_s`` bounds one batch write (SQLite's busy timeout, PostgreSQL's
    ``statement_timeout``); ``max_queue`` bounds the rows waiting for the writer.
    """
    if url in ("", "none"):
        return NullRequestLog()
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteBackend

        # sqlite:///x.db is relative, sqlite:////tmp/x.db absolute (SQLAlchemy style).
        path = url.removeprefix("sqlite://").removeprefix("/")
        if not path:
            raise ValueError("sqlite request log URL needs a path: sqlite:///file.sqlite3")
        return RequestLog(
            SQLiteBackend(path, timeout_s=timeout_s),
            flush_interval_s=flush_interval_s,
            max_queue=max_queue,
        )
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresBackend

        return RequestLog(
            PostgresBackend(url, statement_timeout_s=timeout_s),
            flush_interval_s=flush_interval_s,
            max_queue=max_queue,
        )
    raise ValueError(
        f"unsupported request log URL {url!r}: use sqlite:///path, postgresql://..., or none"
    )
