"""The request log's writer thread, shared by every backend.

The hot path must never wait on a database, so :meth:`RequestLog.append`
only appends a tuple to a ``collections.deque`` (atomic under the GIL, no
lock, no wake-up). A daemon thread wakes every ``flush_interval_s``, takes
everything queued and writes it in one transaction. :meth:`RequestLog.close`
wakes the thread, lets it drain the queue completely and joins it, so a
clean shutdown loses nothing.

The queue is bounded (``max_queue`` rows): when the database stalls, rows
past the bound are dropped and counted (``dropped_queue_full``, with a
warning at most every 10 s) rather than held in memory. Rows of a write that
fails (including one cancelled by the backend's timeout) are dropped and
counted too (``dropped_write_failed``). Both counts are in :meth:`stats`.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Final, NamedTuple

__all__ = ["COLUMNS", "Backend", "LogStats", "NullRequestLog", "RequestLog", "Row"]

logger = logging.getLogger("toolserver.requestlog")

#: ts (Unix seconds), session, tool, provider (or None), status, latency_ms.
Row = tuple[float, str, str, str | None, str, float]
COLUMNS: Final = ("ts", "session", "tool", "provider", "status", "latency_ms")

#: Rows per transaction; bounds memory held by one write and its duration.
BATCH: Final = 5000
#: Default bound of the queue: seconds of backlog at a high call rate, tens of MB.
MAX_QUEUE: Final = 100_000
#: At most one "rows dropped" log line per this many seconds.
LOG_EVERY_S: Final = 10.0


class _Throttle:
    """``due()`` is true at most once per ``every_s`` seconds (rate-limited log lines)."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last = -1e9

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return False
        self._last = now
        return True


class LogStats(NamedTuple):
    """What the metrics and the ``status`` tool show of the request log."""

    queue_depth: int
    rows_written: int
    #: Rows refused because the queue was full (the database fell behind).
    dropped_queue_full: int
    #: Rows of batches whose write failed or timed out.
    dropped_write_failed: int


class Backend(abc.ABC):
    """Database-specific part; every method runs in the writer thread."""

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def write(self, rows: list[Row]) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        return type(self).__name__


class RequestLog:
    """Queue + writer thread in front of a :class:`Backend`."""

    def __init__(
        self, backend: Backend, *, flush_interval_s: float = 0.2, max_queue: int = MAX_QUEUE
    ) -> None:
        self.backend = backend
        self.flush_interval_s = flush_interval_s
        self.max_queue = max(1, max_queue)
        self._queue: collections.deque[Row] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.rows_written = 0
        self.dropped_write_failed = 0
        self.dropped_queue_full = 0
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._broken = False
        self._error_logged = _Throttle(LOG_EVERY_S)
        self._full_logged = _Throttle(LOG_EVERY_S)
        #: Queue one row (event-loop thread); never blocks, drops when the queue is full.
        #: A closure over the deque: the hot path pays a call, a len() and an append.
        self.append: Callable[[Row], None] = self._bounded_append()

    def _bounded_append(self) -> Callable[[Row], None]:
        queue = self._queue
        push = queue.append
        cap = self.max_queue
        full = self._queue_full

        def append(row: Row) -> None:
            if len(queue) < cap:
                push(row)
            else:
                full()

        return append

    def _queue_full(self) -> None:
        self.dropped_queue_full += 1
        if self._full_logged.due():
            logger.warning(
                "request log queue full (%d rows, %s is behind): %d rows dropped so far",
                self.max_queue,
                self.backend.describe(),
                self.dropped_queue_full,
            )

    @property
    def rows_dropped(self) -> int:
        """Rows lost for any reason (queue full or a failed write)."""
        return self.dropped_queue_full + self.dropped_write_failed

    def start(self) -> None:
        """Start the writer and wait until the backend is open (fail early on a bad URL)."""
        self._thread = threading.Thread(target=self._run, name="requestlog-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise RuntimeError(
                f"cannot open request log {self.backend.describe()}: {self._open_error}"
            ) from self._open_error

    @property
    def depth(self) -> int:
        return len(self._queue)

    def stats(self) -> LogStats:
        """Queue depth, rows written and rows dropped; what ``ServerMetrics.attach`` reads."""
        return LogStats(
            len(self._queue), self.rows_written, self.dropped_queue_full, self.dropped_write_failed
        )

    def close(self) -> None:
        """Flush everything queued and stop the writer. Blocking: call it off the loop."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _drain_once(self) -> None:
        queue = self._queue
        while queue:
            batch: list[Row] = []
            popleft = queue.popleft
            try:
                while len(batch) < BATCH:
                    batch.append(popleft())
            except IndexError:
                pass
            try:
                if self._broken:
                    self._reopen()
                self.backend.write(batch)
                self.rows_written += len(batch)
            except Exception:
                # The log is diagnostic: a broken database must not take the
                # server down (nor fill its memory), but losing rows must be
                # visible: counted in rows_dropped, logged at most every 10 s.
                self._broken = True
                self.dropped_write_failed += len(batch)
                if self._error_logged.due():
                    logger.exception(
                        "request log write failed; %d rows dropped so far",
                        self.dropped_write_failed,
                    )

    def _reopen(self) -> None:
        """Reconnect after a failure (a restarted PostgreSQL, a full disk that got space)."""
        with contextlib.suppress(Exception):  # the old connection is broken anyway
            self.backend.close()
        self.backend.open()
        self._broken = False
        logger.warning("request log reopened after a failure")

    def _run(self) -> None:
        try:
            self.backend.open()
        except BaseException as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stopping:
                self._wake.wait(self.flush_interval_s)
                self._wake.clear()
                self._drain_once()
            self._drain_once()
        finally:
            try:
                self.backend.close()
            except Exception:
                logger.exception("closing the request log failed")


class NullRequestLog(RequestLog):
    """``--request-log none``: same interface, nothing stored, no thread."""

    def __init__(self) -> None:
        super().__init__(_NullBackend())
        self.append = self._discard

    def _discard(self, row: Row) -> None:
        pass

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


class _NullBackend(Backend):
    def open(self) -> None:
        pass

    def write(self, rows: list[Row]) -> None:
        pass

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "none"
