"""One client connection: handshake + MCP initialize, request ids, matching of responses.

The reader side is the hot path of the instrument. It does as little as possible per
frame: ``json.loads``, a dict pop by id, :func:`protocol.classify`, one histogram record,
and (closed loop) the next send from the same task, so no future or task is created per
request. Everything observed goes into the shared :class:`Recorder` of the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.typing import Subprotocol

from . import histogram as H
from . import protocol as P
from .recorder import Recorder

perf_counter = time.perf_counter


def connect_error_kind(exc: BaseException) -> str:
    """Stable error kind for a failed connection attempt (``connect:...``)."""
    if isinstance(exc, InvalidStatus):
        return f"connect:http_{exc.response.status_code}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "connect:timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect:refused"
    if isinstance(exc, ConnectionResetError):
        return "connect:reset"
    if isinstance(exc, ConnectionClosed):
        return "connect:" + P.close_kind(_close_code(exc))
    if isinstance(exc, OSError):
        return f"connect:oserror_{exc.errno}"
    if isinstance(exc, InvalidHandshake | InvalidURI):
        return f"connect:{type(exc).__name__}"
    return f"connect:{type(exc).__name__}"


def _close_code(exc: ConnectionClosed) -> int | None:
    frame = exc.rcvd
    return frame.code if frame is not None else None


async def open_session(url: str, token: str | None, rec: Recorder, *,
                       timeout_s: float) -> ClientConnection | None:
    """Connect, send ``initialize`` and wait for its answer; None (error counted) on failure.

    Two durations are recorded: ``connect`` (TCP + WebSocket handshake) and ``ready``
    (handshake + the initialize round trip, i.e. until the session can call tools).
    """
    rec.connect_attempts += 1
    headers = {"Authorization": f"Bearer {token}"} if token else None
    t0 = perf_counter()
    try:
        ws = await connect(url, subprotocols=[Subprotocol(P.SUBPROTOCOL)],
                           additional_headers=headers, open_timeout=timeout_s,
                           compression=None, ping_interval=None, close_timeout=2,
                           max_size=2**24, max_queue=None)
    except Exception as exc:  # every failure is data for the result, never a crash
        rec.conn_error(connect_error_kind(exc), perf_counter())
        return None
    t1 = perf_counter()
    H.record_seconds(rec.connect, t1 - t0)
    try:
        await ws.send(P.initialize_frame(0))
        raw = await asyncio.wait_for(ws.recv(), timeout_s)
        msg = json.loads(raw)
        if msg.get("id") != 0 or "result" not in msg:
            kind = "init:" + (P.rpc_kind(msg["error"].get("code")) if "error" in msg
                              else P.KIND_BAD_RESPONSE)
            rec.conn_error(kind, perf_counter())
            await ws.close()
            return None
        await ws.send(P.INITIALIZED_NOTIFICATION)
    except ConnectionClosed as exc:
        rec.conn_error("init:" + P.close_kind(_close_code(exc)), perf_counter())
        return None
    except TimeoutError:
        rec.conn_error("init:timeout", perf_counter())
        await ws.close()
        return None
    except (ValueError, AttributeError):
        rec.conn_error("init:" + P.KIND_BAD_RESPONSE, perf_counter())
        await ws.close()
        return None
    H.record_seconds(rec.ready, perf_counter() - t0)
    rec.connects_ok += 1
    return ws


class Session:
    """An open connection with its outstanding requests (id -> intended send time).

    ``refill`` is asked after every finished request (success or error); when it returns True
    the reader sends the replacement request itself (closed loop), so no task is created
    per request.
    """

    __slots__ = ("call", "closed", "next_id", "pending", "prefix", "rec", "refill",
                 "suffix", "timed_out", "ws")

    def __init__(self, ws: ClientConnection, rec: Recorder, call: P.Call,
                 refill: Callable[[], bool] | None = None) -> None:
        self.ws = ws
        self.rec = rec
        self.call = call
        self.prefix, self.suffix = call.frame_parts()
        self.pending: dict[int, float] = {}
        self.timed_out: set[int] = set()
        self.next_id = 1
        self.refill = refill
        self.closed = False

    async def send(self, intended: float) -> None:
        """Send one request whose latency is measured from ``intended``."""
        rid = self.next_id
        self.next_id = rid + 1
        self.pending[rid] = intended
        self.rec.sent += 1
        await self.ws.send(self.prefix + str(rid) + self.suffix)

    def expire(self, now: float, timeout_s: float) -> int:
        """Turn requests older than ``timeout_s`` into ``timeout`` errors; returns how many."""
        limit = now - timeout_s
        expired = [rid for rid, t in self.pending.items() if t < limit]
        for rid in expired:
            intended = self.pending.pop(rid)
            self.timed_out.add(rid)
            self.rec.failure(P.KIND_TIMEOUT, intended, now, replied=False)
        return len(expired)

    def fail_all(self, kind: str, now: float) -> None:
        """The connection is gone: every outstanding request is lost with ``kind``."""
        for intended in self.pending.values():
            self.rec.failure(kind, intended, now, replied=False)
        self.pending.clear()

    async def read(self) -> str:
        """Read until the connection closes; returns its close kind (``close:CODE``)."""
        pending = self.pending
        call = self.call
        loads = json.loads
        classify = P.classify
        try:
            async for raw in self.ws:
                now = perf_counter()
                rec = self.rec  # per frame: a duet's rounds swap the recorder under a reader
                try:
                    msg: Any = loads(raw)
                    rid = msg.get("id")
                except (ValueError, AttributeError):
                    rec.failure(P.KIND_BAD_RESPONSE, now, now, replied=True)
                    continue
                intended = pending.pop(rid, None)
                if intended is None:
                    if rid in self.timed_out:
                        self.timed_out.discard(rid)
                        rec.late_replies += 1
                    else:
                        rec.conn_error(P.KIND_UNMATCHED, now)
                    continue
                kind = classify(msg, call)
                if kind is None:
                    rec.success(intended, now)
                else:
                    rec.failure(kind, intended, now, replied=True)
                if self.refill is not None and self.refill():
                    await self.send(perf_counter())
        except ConnectionClosed as exc:
            self.closed = True
            return P.close_kind(_close_code(exc))
        self.closed = True
        return P.close_kind(self.ws.close_code)

    async def close(self) -> None:
        """Close politely (code 1000); errors while closing do not matter any more."""
        self.closed = True
        with contextlib.suppress(Exception):  # the connection may already be broken
            await self.ws.close()
