"""Run one :class:`PhaseSpec` in this process (one event loop, uvloop when available).

This is the unit that worker processes execute; :mod:`workers` runs it N times in
parallel and merges the recorders.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

from . import churn, closed_loop, open_loop
from .recorder import Recorder
from .runtime import Context, StopFlag
from .spec import PhaseSpec

ProgressFn = Callable[[Recorder, float], None]
#: where progress lines go (stderr by default; the asv harness sends them to a file)
ProgressOut = Callable[[str], None]


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run_async(spec: PhaseSpec, stop: StopFlag | None = None,
                    progress: ProgressFn | None = None,
                    ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """Connect, (``ready`` callback: the cross-process barrier), drive, return the wire form."""
    ctx = Context(spec, stop=stop, progress=progress)
    cpu0 = time.process_time()
    if spec.loop == "churn":
        if ready is not None:
            await asyncio.get_running_loop().run_in_executor(None, ready)
        await churn.run(ctx)
    else:
        sockets = await ctx.connect_all(spec.connections)
        if ready is not None:
            await asyncio.get_running_loop().run_in_executor(None, ready)
        if spec.loop == "closed":
            await closed_loop.run(ctx, sockets)
        elif spec.loop == "open":
            await open_loop.run(ctx, sockets)
        else:
            raise ValueError(f"unknown loop kind {spec.loop!r}")
    ctx.rec.cpu_s = time.process_time() - cpu0
    ctx.rec.finalize()
    wire = ctx.rec.to_wire()
    wire["connect_wall_s"] = ctx.connect_wall_s
    wire["go"] = ctx.go
    wire["send_stopped"] = ctx.send_stopped
    wire["phase_end"] = time.perf_counter()
    wire["connections_opened"] = ctx.rec.connects_ok
    return wire


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when importable (the generator must be cheap), else the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of the instrument
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_in_process(spec: PhaseSpec, stop: StopFlag | None = None,
                   progress: ProgressFn | None = None,
                   ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """Synchronous wrapper: a fresh event loop per phase, closed afterwards."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(run_async(spec, stop, progress, ready))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def print_progress(name: str, duration_s: float,
                   out: ProgressOut | None = None) -> ProgressFn:
    """A progress line (stderr, or ``out``): elapsed, sent, ok, errors, the current rate."""
    state = {"t": 0.0, "ok": 0}
    write = out or to_stderr

    def report(rec: Recorder, elapsed: float) -> None:
        errs = sum(rec.errors.values())
        dt = max(1e-9, elapsed - state["t"])
        rate = (rec.ok - state["ok"]) / dt
        state["t"], state["ok"] = elapsed, rec.ok
        write(f"{name} {elapsed:6.1f}/{duration_s:.0f}s sent={rec.sent} ok={rec.ok} "
              f"err={errs} {rate:,.0f} msg/s")

    return report
