"""Interleaved rounds against two servers that are both up: the commit's and the reference.

On a shared machine the host's state (other tenants' processes on our core, the
hypervisor taking the vCPU away) moves wall-clock figures by tens of percent between
runs minutes apart, and within a run from one second to the next. A fixed-length phase
cannot tell that from a slower commit. So a load point is measured as short *rounds*
that alternate between the commit's server and a reference server that never changes
(:mod:`reference`), in ABBA order (commit, reference, reference, commit, ...: a linear
drift biases alternate pairs in opposite directions). The two rounds of a pair saw
nearly the same host, so per pair the commit/reference ratio of a figure carries the
commit's speed without the host's state.

Rounds are as short as the load allows: the closer the two rounds of a pair, the
better they share the host's state (docs/BENCHMARKS.md has the measurements). A round
ends by draining what is in flight, which costs about one latency, so a round lasts at
least :data:`ROUND_LATENCIES` times the reference's median latency at that load point
(its calibrated nominal value: a constant, so how a point is cut never depends on the
host's state of the day), and never less than ``duration_s / max_pairs``. Consecutive
pairs are pooled into ``blocks`` (exactly merged histograms and counters): one block is
one sample for asv, and a block's percentiles come from a block's worth of requests,
so a p99 still means the tail of that much traffic however short the rounds.

What keeps the two sides comparable:

* **both servers are up the whole time, with their sessions open**: each side's
  ``connections`` sessions are opened once, warmed up once, and reused by every round;
* **the same load**: same loop kind, connections, in-flight count, rate and call; an
  open loop's Poisson schedule of a pair is seeded alike for both sides (common random
  numbers: the same arrival pattern hits both servers, and a seeded simulated provider
  draws the same latencies on both);
* **the same core**: the caller pins both servers to the server core, the generator
  (this process, one event loop) to the others;
* a closed-loop round starts with ``settle_s`` of load outside its window, and every
  round drains before the next begins: no request of one side is in flight during
  the other side's round.

The commit's blocks are its raw figures (one sample per block, as the slices of a
single phase were), so the raw series keep meaning what they meant: the commit's
server under that load.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import histogram as H
from . import open_loop
from . import resources as R
from .client import Session
from .phase import new_event_loop
from .recorder import Recorder
from .result import build_phase
from .runtime import Context, perf_counter
from .spec import PhaseSpec

#: The two sides, in the order of the first pair.
COMMIT, REFERENCE = "commit", "reference"
#: A round lasts at least this many median latencies (its drain costs about one).
ROUND_LATENCIES = 4
#: Per-block figures: the raw samples of a side, and what the correction pairs up.
BLOCK_FIGURES = ("msg_s", "us_per_msg", "p50_ms", "p95_ms", "p99_ms",
                 "server_cpu_us_per_msg", "error_p99_ms")


@dataclass
class Side:
    """One server of the duet: where it listens, how its CPU is read, its sessions."""

    label: str
    url: str
    sampler: R.ResourceSampler | None = None
    sessions: list[Session] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    connect_wire: dict[str, Any] = field(default_factory=dict)
    connect_wall_s: float = 0.0
    warmup_p50_ms: float | None = None
    rounds: list[Round] = field(default_factory=list)
    closing: bool = False


@dataclass
class Round:
    """One round of one side: its recorder's wire form and the server's CPU in it."""

    side: str
    pair: int
    go: float
    end: float
    window: tuple[float, float]
    wire: dict[str, Any]
    server_cpu_s: float | None

    @property
    def window_s(self) -> float:
        return max(0.0, self.window[1] - self.window[0])


@dataclass(frozen=True)
class Plan:
    """How a duet was cut: pairs, their length, and how many pairs make a block."""

    pairs: int
    blocks: int
    round_s: float
    settle_s: float

    @property
    def pairs_per_block(self) -> int:
        return self.pairs // self.blocks

    def settings(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "blocks": self.blocks,
                "round_s": round(self.round_s, 4), "settle_s": self.settle_s,
                "order": "ABBA"}


def order(pair: int) -> tuple[str, str]:
    """ABBA: even pairs commit first, odd pairs reference first."""
    return (COMMIT, REFERENCE) if pair % 2 == 0 else (REFERENCE, COMMIT)


def pair_seed(seed: int, pair: int) -> int:
    """The schedule seed of a pair, the same for both sides (pair -1: the warm-up)."""
    return seed * 1000 + pair + 1


def plan(duration_s: float, *, max_pairs: int, blocks: int, settle_s: float,
         latency_ms: float | None) -> Plan:
    """The cut of a duet (pure): as many pairs as the latency allows, up to ``max_pairs``,
    a whole number of pairs per block, at least one."""
    fit = max_pairs
    if latency_ms is not None and latency_ms > 0:
        fit = math.floor(duration_s / (ROUND_LATENCIES * latency_ms / 1000))
    per_block = max(1, min(max_pairs, fit) // blocks)
    pairs = per_block * blocks
    return Plan(pairs=pairs, blocks=blocks, round_s=duration_s / pairs, settle_s=settle_s)


def run(spec: PhaseSpec, sides: dict[str, Side], *, max_pairs: int, blocks: int,
        settle_s: float, latency_ms: float | None = None) -> Plan:
    """Run the duet of ``spec`` (one event loop in this process); fills ``side.rounds``.

    ``spec.duration_s`` is what each side measures in total, ``spec.warmup_s`` each
    side's one warm-up. The rounds are cut by ``latency_ms`` (the reference's calibrated
    median latency at this load point: a constant, so the cut does not depend on the
    host's state); without it, by the median latency the warm-up measured.
    """
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_duet(spec, sides, max_pairs=max_pairs,
                                             blocks=blocks, settle_s=settle_s,
                                             latency_ms=latency_ms))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _duet(spec: PhaseSpec, sides: dict[str, Side], *, max_pairs: int, blocks: int,
                settle_s: float, latency_ms: float | None) -> Plan:
    settle = settle_s if spec.loop == "closed" else 0.0
    try:
        for side in sides.values():
            await _open(side, spec)
        for label in order(0):
            warm = await _round(sides[label], spec, pair=-1, warmup_s=0.0,
                                duration_s=spec.warmup_s)
            hist = H.decode(warm.wire["latency"])
            if hist.get_total_count():
                sides[label].warmup_p50_ms = hist.get_value_at_percentile(50) / 1000
        latencies = [s.warmup_p50_ms for s in sides.values() if s.warmup_p50_ms]
        if latency_ms is None and latencies:
            latency_ms = max(latencies)
        cut = plan(spec.duration_s, max_pairs=max_pairs, blocks=blocks, settle_s=settle,
                   latency_ms=latency_ms)
        for pair in range(cut.pairs):
            for label in order(pair):
                sides[label].rounds.append(await _round(
                    sides[label], spec, pair=pair, warmup_s=settle, duration_s=cut.round_s))
        return cut
    finally:
        for side in sides.values():
            await _close(side)


async def _open(side: Side, spec: PhaseSpec) -> None:
    ctx = Context(replace(spec, url=side.url))
    sockets = await ctx.connect_all(spec.connections)
    side.connect_wall_s = ctx.connect_wall_s
    side.sessions = [Session(ws, ctx.rec, spec.call) for ws in sockets]
    side.readers = [asyncio.create_task(_hold(s, side)) for s in side.sessions]
    side.connect_wire = ctx.rec.to_wire()


async def _hold(session: Session, side: Side) -> None:
    """The session's reader for the whole duet; an unexpected close is counted."""
    kind = await session.read()
    now = perf_counter()
    lost = bool(session.pending)
    session.fail_all(kind, now)
    if not side.closing or lost:
        session.rec.conn_error(kind, now)


async def _close(side: Side) -> None:
    side.closing = True
    await asyncio.gather(*(s.close() for s in side.sessions), return_exceptions=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*side.readers, return_exceptions=True), 10)
    for task in side.readers:
        task.cancel()


async def _round(side: Side, spec: PhaseSpec, *, pair: int, warmup_s: float,
                 duration_s: float) -> Round:
    """One round: ``warmup_s`` of load outside the window, ``duration_s`` measured, drain."""
    ctx = Context(replace(spec, url=side.url, warmup_s=warmup_s, duration_s=duration_s,
                          seed=pair_seed(spec.seed, pair), slices=0))
    closed = spec.loop == "closed"
    live = [s for s in side.sessions if not s.closed]
    ctx.sessions = set(live)
    for s in live:
        s.rec = ctx.rec
        s.refill = ctx.may_send if closed else None
    cpu0 = side.sampler.cpu_now() if side.sampler else None
    gen0 = time.process_time()
    ctx.start_clock()
    sweeper = asyncio.create_task(ctx.sweeper(refill=closed))
    sender = None
    try:
        if closed:
            for s in live:
                for _ in range(spec.inflight):
                    if ctx.may_send():
                        try:
                            await s.send(perf_counter())
                        except Exception:  # broken under us: its reader accounts for it
                            s.closed = True
        elif spec.rate > 0:
            sender = asyncio.create_task(open_loop.send_schedule(ctx, live))
        await _drain(ctx)
    finally:
        sweeper.cancel()
        if sender is not None:  # sending has stopped: it only sleeps towards its next
            sender.cancel()
    for s in live:
        s.refill = None
    ctx.rec.cpu_s = time.process_time() - gen0
    end = perf_counter()
    cpu1 = side.sampler.cpu_now() if side.sampler else None
    return Round(side=side.label, pair=pair, go=ctx.go, end=end,
                 window=(ctx.window_start, min(ctx.window_end, ctx.send_stopped)),
                 wire=ctx.rec.to_wire(),
                 server_cpu_s=cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None)


async def _drain(ctx: Context) -> None:
    """Stop at the window's end, wait for what is in flight, expire what never comes.

    Like ``Context.drain`` but without its 20 ms polling: a round is short, and every
    millisecond after the window is a millisecond the other side waits for.
    """
    now = perf_counter()
    if ctx.window_end > now:
        await asyncio.sleep(ctx.window_end - now)
    ctx.stop_sending(perf_counter())
    deadline = perf_counter() + ctx.spec.timeout_s
    while any(s.pending for s in ctx.sessions) and perf_counter() < deadline:
        await asyncio.sleep(0.001)
    now = perf_counter()
    for session in list(ctx.sessions):
        session.expire(now + ctx.spec.timeout_s + 1.0, ctx.spec.timeout_s)


def block_figures(rounds: Sequence[Round]) -> dict[str, float | None]:
    """The figures of consecutive rounds pooled (histograms merged exactly)."""
    lat = H.new_histogram()
    err = H.new_histogram()
    for r in rounds:
        H.merge_into(lat, r.wire["latency"])
        H.merge_into(err, r.wire["error_latency"])
    ok = sum(r.wire["ok"] for r in rounds)
    sent = sum(r.wire["sent"] for r in rounds)
    span = sum(r.window_s for r in rounds)
    cpus = [r.server_cpu_s for r in rounds]
    cpu = sum(c for c in cpus if c is not None) if cpus and None not in cpus else None
    gen = sum(r.wire["cpu_s"] for r in rounds)
    return {
        "ok": ok, "errors": sum(sum(r.wire["errors"].values()) for r in rounds),
        "window_s": round(span, 4),
        "msg_s": round(ok / span, 2) if ok and span > 0 else None,
        "us_per_msg": round(span * 1e6 / ok, 3) if ok and span > 0 else None,
        "p50_ms": lat.get_value_at_percentile(50) / 1000 if ok else None,
        "p95_ms": lat.get_value_at_percentile(95) / 1000 if ok else None,
        "p99_ms": lat.get_value_at_percentile(99) / 1000 if ok else None,
        # the rounds' whole spans (settle, window, drain) over every request they sent
        "server_cpu_us_per_msg": round(cpu * 1e6 / sent, 3) if cpu is not None and sent
        else None,
        "generator_cpu_us_per_msg": round(gen * 1e6 / sent, 3) if sent else None,
        "error_p99_ms": err.get_value_at_percentile(99) / 1000
        if err.get_total_count() else None,
    }


def blocks_of(rounds: Sequence[Round], cut: Plan) -> list[dict[str, float | None]]:
    """Per block (``cut.pairs_per_block`` consecutive pairs): the pooled figures."""
    k = cut.pairs_per_block
    return [block_figures([r for r in rounds if b * k <= r.pair < (b + 1) * k])
            for b in range(cut.blocks)]


def side_phase(spec: PhaseSpec, side: Side, cut: Plan, *, t0: float) -> dict[str, Any]:
    """The PHASE document of one side's rounds pooled (the raw figures of that side).

    Histograms and counters are merged exactly; the window is the sum of the rounds'
    windows (the other side's rounds are not this side's time); ``slices`` holds one
    value per block, so asv gets one sample per block; ``blocks`` has every figure of
    every block, ``rounds`` when and how long each round ran.
    """
    rounds = side.rounds
    merged = Recorder()
    merged.merge_wire(side.connect_wire)
    for r in rounds:
        merged.merge_wire(r.wire)
    wire = merged.to_wire()
    measured = sum(r.window_s for r in rounds)
    start = rounds[0].window[0] if rounds else perf_counter()
    wire.update(window_start=start, window_end=start + measured, send_stopped=start + measured,
                go=rounds[0].go if rounds else start,
                phase_end=rounds[-1].end if rounds else start,
                connect_wall_s=side.connect_wall_s, connections_opened=merged.connects_ok)
    phase = build_phase(spec, wire, None)
    phase["settings"]["duet"] = {**cut.settings(), "side": side.label,
                                 "warmup_p50_ms": side.warmup_p50_ms}
    blocks = blocks_of(rounds, cut)
    total = block_figures(rounds)
    wall = sum(r.end - r.go for r in rounds)
    phase["generator"].update(
        cpu_percent=round(100 * merged.cpu_s / wall, 1) if wall else None,
        cpu_us_per_msg=total["generator_cpu_us_per_msg"])
    phase["server"] = _server_summary(side, rounds, merged.ok, total, wall)
    phase["slices"] = {"n": len(blocks), "slice_s": round(measured / max(1, len(blocks)), 4),
                       **{name: [b[name] for b in blocks if b[name] is not None]
                          for name in BLOCK_FIGURES}}
    phase["blocks"] = blocks
    phase["rounds"] = [{"pair": r.pair, "t_s": round(r.go - t0, 3),
                        "wall_s": round(r.end - r.go, 4), "window_s": round(r.window_s, 4),
                        "ok": r.wire["ok"]} for r in rounds]
    return phase


def _server_summary(side: Side, rounds: list[Round], ok: int, total: dict[str, Any],
                    wall: float) -> dict[str, Any]:
    """RSS, fds and threads over the duet; CPU counted over this side's rounds only."""
    if side.sampler is None or not rounds:
        return {}
    out = R.summarize(side.sampler.window(rounds[0].go, rounds[-1].end), ok)
    cpu = [r.server_cpu_s for r in rounds]
    if None not in cpu:
        cpu_s = sum(c for c in cpu if c is not None)
        out.update(cpu_s=round(cpu_s, 4),
                   cpu_percent_mean=round(100 * cpu_s / wall, 1) if wall else None,
                   cpu_us_per_msg=total["server_cpu_us_per_msg"])
    return out
