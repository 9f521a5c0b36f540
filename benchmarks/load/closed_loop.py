"""Closed loop: N sessions, each keeping ``inflight`` requests outstanding (pipelining).

The reply to a request triggers the next one on the same session, from the reader task.
Closed-loop latency is measured from the actual send: when the server stalls, the clients
stall with it and send less, so these figures understate tail latency under stalls (the
open loop exists for that); the result JSON therefore says ``"loop": "closed"``.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import ClientConnection

from .client import Session
from .runtime import Context, perf_counter


async def run(ctx: Context, sockets: list[ClientConnection]) -> None:
    """Drive the sessions until the phase's bounds; reconnect when the spec asks for it."""
    spec = ctx.spec
    ctx.start_clock()

    async def drive(ws: ClientConnection | None) -> None:
        while ws is not None:
            session = Session(ws, ctx.rec, spec.call, refill=ctx.may_send)
            ctx.sessions.add(session)
            try:
                for _ in range(spec.inflight):
                    if ctx.may_send():
                        await session.send(perf_counter())
                kind = await session.read()
            except Exception:  # a send on a connection that just broke
                kind = "close:send_failed"
            now = perf_counter()
            ctx.sessions.discard(session)
            lost = bool(session.pending)
            session.fail_all(kind, now)
            if not ctx.sending and not lost:
                return  # we closed it at the end of the phase
            if ctx.sending or lost:
                ctx.rec.conn_error(kind, now)
            ws = await ctx.reconnect() if spec.reconnect and ctx.sending else None

    tasks = [asyncio.create_task(drive(ws)) for ws in sockets]
    sweeper = asyncio.create_task(ctx.sweeper(refill=True))
    try:
        await ctx.drain()
        await ctx.close_all()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    finally:
        sweeper.cancel()
        for t in tasks:
            t.cancel()
