"""Several generator processes for one phase, histograms merged exactly.

One Python process tops out at a few tens of thousands of messages per second; on a
larger machine that would make the *instrument* the bottleneck. ``--workers N`` splits the
phase's connections, rate and request bound across N spawned processes (spawn, not fork:
the parent has a sampler thread), lines them up on a barrier once their connections are
open so the traffic starts together, and merges their recorders (HDR-encoded histograms
added bucket-wise, counters summed): the merged figures are those of one big client.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import phase
from .recorder import Recorder
from .runtime import StopFlag
from .spec import PhaseSpec


def run_phase(spec: PhaseSpec, stop: StopFlag | None = None,
              on_go: Callable[[], None] | None = None,
              out: phase.ProgressOut | None = None) -> dict[str, Any]:
    """Run ``spec`` with ``spec.workers`` processes (in this process when 1); merged wire.

    ``on_go`` is called once the connections are open and traffic is about to start (the
    moment timed actions count from).
    """
    if spec.workers <= 1:
        progress = phase.print_progress(spec.name, spec.warmup_s + spec.duration_s, out) \
            if spec.progress_s > 0 else None
        return phase.run_in_process(spec, stop=stop, progress=progress, ready=on_go)
    return _run_workers(spec, stop, on_go, out or phase.to_stderr)


def _worker(spec: PhaseSpec, index: int, barrier: Any, stop: Any, counters: Any,
            results: Any) -> None:
    """Child process body: run the slice, report progress in ``counters``, ship the result."""
    def ready() -> None:
        barrier.wait(timeout=spec.connect_timeout_s * 4 + 60)

    def progress(rec: Recorder, _elapsed: float) -> None:
        counters[3 * index] = rec.sent
        counters[3 * index + 1] = rec.ok
        counters[3 * index + 2] = sum(rec.errors.values())

    try:
        wire = phase.run_in_process(spec, stop=stop, progress=progress, ready=ready)
        results.put((index, wire, None))
    except BaseException:  # report, never hang the parent
        results.put((index, None, traceback.format_exc()))


def _run_workers(spec: PhaseSpec, stop: StopFlag | None,
                 on_go: Callable[[], None] | None,
                 say: phase.ProgressOut) -> dict[str, Any]:
    n = min(spec.workers, max(1, spec.connections))  # every worker needs a connection
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n + 1)
    stop_ev = ctx.Event()
    counters = ctx.Array("q", 3 * n, lock=False)
    results = ctx.Queue()
    progress_s = spec.progress_s if spec.progress_s > 0 else 1.0
    procs = [ctx.Process(target=_worker, name=f"load-worker-{i}",
                         args=(spec.share(i, n), i, barrier, stop_ev, counters, results),
                         daemon=True)
             for i in range(n)]
    for p in procs:
        p.start()
    merged = Recorder(timeline_bucket_s=spec.timeline_bucket_s)
    extras: dict[str, Any] = {"connect_wall_s": 0.0, "go": float("inf"), "phase_end": 0.0,
                              "send_stopped": 0.0,
                              "connections_opened": 0, "worker_errors": []}
    try:
        barrier.wait(timeout=spec.connect_timeout_s * 4 + 60)
    except Exception:  # a worker died while connecting: collect what there is
        barrier.abort()
    if on_go is not None:
        on_go()
    hard_deadline = time.monotonic() + spec.warmup_s + spec.duration_s \
        + 2 * spec.timeout_s + 60
    t0 = time.monotonic()
    last = t0
    pending = set(range(n))
    while pending and time.monotonic() < hard_deadline:
        if stop is not None and stop.is_set():
            stop_ev.set()
        try:
            index, wire, err = results.get(timeout=0.2)
        except queue.Empty:
            now = time.monotonic()
            if spec.progress_s > 0 and now - last >= progress_s:
                last = now
                sent = sum(counters[3 * i] for i in range(n))
                ok = sum(counters[3 * i + 1] for i in range(n))
                errs = sum(counters[3 * i + 2] for i in range(n))
                say(f"{spec.name} {now - t0:6.1f}/{spec.warmup_s + spec.duration_s:.0f}s"
                    f" sent={sent} ok={ok} err={errs} ({n} workers)")
            if not any(p.is_alive() for p in procs) and results.empty():
                break
            continue
        pending.discard(index)
        if err is not None:
            extras["worker_errors"].append(err)
            continue
        assert wire is not None
        merged.merge_wire(wire)
        extras["connect_wall_s"] = max(extras["connect_wall_s"], wire["connect_wall_s"])
        extras["go"] = min(extras["go"], wire["go"])
        extras["phase_end"] = max(extras["phase_end"], wire["phase_end"])
        extras["send_stopped"] = max(extras["send_stopped"], wire["send_stopped"])
        extras["connections_opened"] += wire["connections_opened"]
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
    if pending:
        extras["worker_errors"].append(f"workers {sorted(pending)} returned no result")
    out = merged.to_wire()
    out.update(extras)
    return out
