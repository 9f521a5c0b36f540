"""Connection churn: clients that connect, initialize, make one call and disconnect, again
and again. This is what leaks file descriptors and per-connection memory in a server, so
the concurrent-connections scenario runs it and then checks the server's resources return
to their baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from . import protocol as P
from .client import open_session
from .runtime import Context, perf_counter


async def run(ctx: Context) -> None:
    """``connections`` concurrent churners until the phase's time or count bound."""
    spec = ctx.spec
    rec = ctx.rec
    prefix, suffix = spec.call.frame_parts()
    ctx.start_clock()

    async def churner() -> None:
        while ctx.may_send():
            ws = await open_session(spec.url, spec.token, rec, timeout_s=spec.connect_timeout_s)
            if ws is None:
                await asyncio.sleep(0.05)
                continue
            intended = perf_counter()
            rec.sent += 1
            try:
                await ws.send(prefix + "1" + suffix)
                raw = await asyncio.wait_for(ws.recv(), spec.timeout_s)
                now = perf_counter()
                msg = json.loads(raw)
                kind = P.classify(msg, spec.call) if msg.get("id") == 1 else P.KIND_UNMATCHED
                if kind is None:
                    rec.success(intended, now)
                else:
                    rec.failure(kind, intended, now, replied=True)
            except TimeoutError:
                rec.failure(P.KIND_TIMEOUT, intended, perf_counter(), replied=False)
            except Exception as exc:  # closed under us, bad JSON: data, not a crash
                code = getattr(getattr(exc, "rcvd", None), "code", None)
                rec.failure(P.close_kind(code), intended, perf_counter(), replied=False)
            finally:
                with contextlib.suppress(Exception):  # already broken: nothing to close
                    await ws.close()

    tasks = [asyncio.create_task(churner()) for _ in range(spec.connections)]
    sweeper = asyncio.create_task(ctx.sweeper(refill=False))
    try:
        await ctx.drain()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True),
                               spec.timeout_s + spec.connect_timeout_s + 2)
    finally:
        sweeper.cancel()
        for t in tasks:
            t.cancel()
