"""Open loop: requests at a target rate whatever the server does (no coordinated omission).

A single sender computes each request's *intended* send time from the schedule
(constant spacing or Poisson arrivals) and sends, round-robin over the live sessions,
every request that is due. Latency is measured from the intended time, so when the server
(or the generator itself) falls behind, the delay shows up as latency instead of as fewer
requests; the lag between intended and actual send is recorded separately (``send_lag``)
so a saturated generator is visible. Requests due while no session is open count as
``no_connection`` errors.
"""

from __future__ import annotations

import asyncio
import random

from websockets.asyncio.client import ClientConnection

from . import histogram as H
from .client import Session
from .runtime import Context, perf_counter

KIND_NO_CONNECTION = "no_connection"


async def run(ctx: Context, sockets: list[ClientConnection]) -> None:
    """Hold the sessions, issue the schedule, drain, close."""
    spec = ctx.spec
    rec = ctx.rec
    live: list[Session] = []

    async def hold(ws: ClientConnection | None) -> None:
        while ws is not None:
            session = Session(ws, rec, spec.call)
            ctx.sessions.add(session)
            live.append(session)
            kind = await session.read()
            now = perf_counter()
            ctx.sessions.discard(session)
            if session in live:
                live.remove(session)
            lost = bool(session.pending)
            session.fail_all(kind, now)
            if not ctx.sending and not lost:
                return
            rec.conn_error(kind, now)
            ws = await ctx.reconnect() if spec.reconnect and ctx.sending else None

    ctx.start_clock()
    tasks = [asyncio.create_task(hold(ws)) for ws in sockets]
    sweeper = asyncio.create_task(ctx.sweeper(refill=False))
    sender = asyncio.create_task(send_schedule(ctx, live)) if spec.rate > 0 else None
    try:
        await ctx.drain()
        if sender is not None:
            await asyncio.wait_for(sender, 10)
        await ctx.close_all()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    finally:
        sweeper.cancel()
        for t in tasks:
            t.cancel()
        if sender is not None:
            sender.cancel()


async def send_schedule(ctx: Context, live: list[Session]) -> None:
    """Issue ``ctx.spec``'s schedule over the live sessions until the phase's bounds."""
    spec = ctx.spec
    rec = ctx.rec
    rng = random.Random(spec.seed)
    rate = spec.rate
    poisson = spec.arrival == "poisson"
    next_t = ctx.go
    index = 0
    while ctx.may_send():
        now = perf_counter()
        if next_t > now:
            await asyncio.sleep(next_t - now)
            continue
        batch = 0
        while next_t <= now and batch < 1000 and rec.sent < ctx.max_requests:
            intended = next_t
            next_t += rng.expovariate(rate) if poisson else 1.0 / rate
            batch += 1
            session = None
            for _ in range(len(live)):
                candidate = live[index % len(live)]
                index += 1
                if not candidate.closed:
                    session = candidate
                    break
            if session is None:
                rec.sent += 1
                rec.failure(KIND_NO_CONNECTION, intended, now, replied=False)
                continue
            if rec.in_window(intended):
                H.record_seconds(rec.send_lag, perf_counter() - intended)
            try:
                await session.send(intended)
            except Exception:  # the session broke under us: its reader will account for it
                session.closed = True
        await asyncio.sleep(0)
