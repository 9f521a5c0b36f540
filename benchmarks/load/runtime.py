"""Shared machinery of the load loops: the phase clock, connecting, timeouts and drain.

Kept apart from the loops so that closed loop, open loop and churn differ only in how they
*issue* requests, while window, bounds, timeouts and shutdown are identical (the figures
of different loop kinds are then comparable).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

from websockets.asyncio.client import ClientConnection

from .client import Session, open_session
from .recorder import Recorder
from .spec import PhaseSpec

perf_counter = time.perf_counter


class StopFlag(Protocol):
    """``threading.Event`` in-process, ``multiprocessing.Event`` across workers."""

    def is_set(self) -> bool: ...


class Context:
    """State shared by all tasks of one phase in one event loop."""

    def __init__(self, spec: PhaseSpec, stop: StopFlag | None = None,
                 progress: Callable[[Recorder, float], None] | None = None) -> None:
        self.spec = spec
        self.rec = Recorder(timeline_bucket_s=spec.timeline_bucket_s, slices=spec.slices)
        self.stop = stop
        self.progress = progress
        self.max_requests = spec.bounded_max_requests()
        self.sessions: set[Session] = set()
        self.sending = True
        self.go = 0.0
        self.window_start = float("inf")
        self.window_end = float("inf")
        self.connect_wall_s = 0.0
        self.send_stopped = float("inf")

    # -- bounds -------------------------------------------------------------------------
    def start_clock(self) -> None:
        """Start traffic now: warm-up first, then the measurement window."""
        self.go = perf_counter()
        self.window_start = self.go + self.spec.warmup_s
        self.window_end = self.window_start + self.spec.duration_s
        self.rec.set_window(self.window_start, self.window_end)
        self.rec.first_send = self.go

    def may_send(self) -> bool:
        """False once the time bound, the count bound or an external stop is reached."""
        if not self.sending:
            return False
        now = perf_counter()
        if now >= self.window_end or self.rec.sent >= self.max_requests:
            self.stop_sending(now)
        return self.sending

    def stop_sending(self, now: float) -> None:
        """No new requests from now on (the time at which it happened is kept)."""
        if self.sending:
            self.sending = False
            self.send_stopped = min(now, self.window_end)

    # -- connecting ---------------------------------------------------------------------
    async def connect_all(self, count: int) -> list[ClientConnection]:
        """Open ``count`` sessions, at most ``connect_concurrency`` handshakes at a time.

        The wall time from the first attempt to the last ready session is kept as
        ``connect_wall_s`` (the "100 connections in under 1 s" criterion).
        """
        sem = asyncio.Semaphore(max(1, self.spec.connect_concurrency))
        spec = self.spec

        async def one() -> ClientConnection | None:
            async with sem:
                return await open_session(spec.url, spec.token, self.rec,
                                          timeout_s=spec.connect_timeout_s)

        t0 = perf_counter()
        results = await asyncio.gather(*(one() for _ in range(count)))
        self.connect_wall_s = perf_counter() - t0
        return [ws for ws in results if ws is not None]

    async def reconnect(self) -> ClientConnection | None:
        """Retry with backoff (50 ms doubling to 500 ms) until a session opens or time's up."""
        delay = 0.05
        while self.sending and perf_counter() < self.window_end:
            ws = await open_session(self.spec.url, self.spec.token, self.rec,
                                    timeout_s=min(self.spec.connect_timeout_s, 5.0))
            if ws is not None:
                return ws
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        return None

    # -- background ---------------------------------------------------------------------
    async def sweeper(self, refill: bool) -> None:
        """Every 100 ms: honour the external stop; expire requests past ``timeout_s``.

        With ``refill`` (closed loop) an expired request is replaced, otherwise a session
        whose only requests timed out would stall for the rest of the phase.
        """
        timeout = self.spec.timeout_s
        last_progress = perf_counter()
        while True:
            await asyncio.sleep(0.1)
            now = perf_counter()
            if self.stop is not None and self.sending and self.stop.is_set():
                self.stop_sending(now)
            for session in list(self.sessions):
                expired = session.expire(now, timeout)
                if refill and expired and not session.closed:
                    for _ in range(expired):
                        if self.may_send():
                            asyncio.get_running_loop().create_task(_send_quietly(session, now))
            if (self.progress is not None and self.spec.progress_s > 0
                    and now - last_progress >= self.spec.progress_s):
                last_progress = now
                self.progress(self.rec, now - self.go)

    async def drain(self) -> None:
        """Wait for answers to what was sent (bounded by ``timeout_s``), then expire the rest."""
        while self.sending and perf_counter() < self.window_end:
            await asyncio.sleep(0.02)
        self.stop_sending(perf_counter())
        deadline = perf_counter() + self.spec.timeout_s
        while perf_counter() < deadline:
            if not any(s.pending for s in self.sessions):
                break
            await asyncio.sleep(0.01)
        now = perf_counter()
        for session in list(self.sessions):
            session.expire(now + self.spec.timeout_s + 1.0, self.spec.timeout_s)

    async def close_all(self) -> None:
        """Close every session (code 1000) concurrently."""
        await asyncio.gather(*(s.close() for s in list(self.sessions)),
                             return_exceptions=True)


async def _send_quietly(session: Session, intended: float) -> None:
    """A replacement send from the sweeper; a broken connection is its reader's business."""
    with contextlib.suppress(Exception):
        await session.send(intended)
