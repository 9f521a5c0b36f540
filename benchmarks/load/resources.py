"""Resource sampling of the server process (psutil, by PID) every 0.1 s.

A thread, not an asyncio task: the generator's event loop may be saturated, and samples
must keep their cadence regardless. Samples are cumulative CPU user/sys seconds, RSS,
open file descriptors, threads and the precise CPU total; a phase takes the slice of
samples within its own time span (plus an exact sample at each boundary via :meth:`mark`)
and derives CPU %, server CPU time per message, and RSS / fd slopes (least squares) for
leak detection.

CPU time comes from the process's POSIX CPU clock (``clock_gettime`` on the clock id
``clock_getcpuclockid(pid)`` would return), which the kernel keeps in nanoseconds. psutil's
user/system split comes from ``/proc/PID/stat`` in 10 ms clock ticks: a 0.5 s slice that
uses 0.2 s of CPU would carry +-5 % quantisation noise from the ticks alone, more than the
effects asv is asked to find. Where the clock cannot be read (not Linux, permissions) the
ticks are the fallback.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import psutil

#: t, user s, sys s (ticks), rss bytes, fds, threads, total CPU s (precise clock, or
#: user + sys when the clock is unavailable)
Sample = tuple[float, float, float, int, int, int, float]


def process_cpu_clock(pid: int) -> int | None:
    """The clock id of ``pid``'s CPU-time clock, or None when it cannot be read.

    Python has no ``clock_getcpuclockid``; this is its Linux encoding (``~pid << 3`` with
    CPUCLOCK_SCHED = 2, include/linux/posix-timers.h): the process's summed runtime of all
    threads, in ns.
    """
    if not hasattr(time, "clock_gettime"):
        return None
    clock = ((~pid) << 3) | 2
    try:
        time.clock_gettime(clock)
    except OSError:
        return None
    return clock


def cpu_s(s: Sample) -> float:
    """Cumulative CPU seconds of a sample (precise when the clock was readable)."""
    return s[6]


class ResourceSampler:
    """Samples one PID until stopped; survives the process disappearing (restart)."""

    def __init__(self, pid: int | None, interval_s: float = 0.1) -> None:
        # 0.1 s, not the 0.5 s the plan asks for at least: the per-slice server CPU
        # figures (asv samples) interpolate between samples, and slices are ~0.5 s.
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._proc: psutil.Process | None = None
        self._thread: threading.Thread | None = None
        self.set_pid(pid)

    def set_pid(self, pid: int | None) -> None:
        """Follow a new server process (after a restart)."""
        try:
            self._proc = psutil.Process(pid) if pid else None
        except psutil.Error:
            self._proc = None
        self._clock = process_cpu_clock(pid) if self._proc is not None and pid else None

    @property
    def precise_cpu(self) -> bool:
        """True when CPU time is read from the process CPU clock (ns), not ticks."""
        return self._clock is not None

    def start(self) -> ResourceSampler:
        """Start the sampling thread (no-op without a PID)."""
        if self._proc is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="resource-sampler",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def mark(self) -> Sample | None:
        """Take a sample now (phase boundaries) and return it."""
        return self._sample()

    def cpu_now(self) -> float | None:
        """The process's cumulative CPU seconds now, nothing else (cheap: the duet reads
        it at every round boundary; a full sample lists every open fd)."""
        proc, clock = self._proc, self._clock
        try:
            if clock is not None:
                return time.clock_gettime(clock)
            if proc is not None:
                cpu = proc.cpu_times()
                return float(cpu.user + cpu.system)
        except (psutil.Error, OSError):
            pass
        return None

    def _sample(self) -> Sample | None:
        proc, clock = self._proc, self._clock
        if proc is None:
            return None
        try:
            with proc.oneshot():
                t = time.perf_counter()
                total = time.clock_gettime(clock) if clock is not None else None
                cpu = proc.cpu_times()
                s: Sample = (t, cpu.user, cpu.system, proc.memory_info().rss,
                             proc.num_fds(), proc.num_threads(),
                             total if total is not None else cpu.user + cpu.system)
        except (psutil.Error, OSError):  # the process went away (restart, exit)
            return None
        with self._lock:
            self.samples.append(s)
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def window(self, t0: float, t1: float) -> list[Sample]:
        """Samples taken within [t0, t1]."""
        with self._lock:
            return [s for s in self.samples if t0 <= s[0] <= t1]


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t seconds, value) in value per minute; None if < 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(p[0] for p in points) / n
    mv = sum(p[1] for p in points) / n
    var = sum((p[0] - mt) ** 2 for p in points)
    if var == 0:
        return None
    cov = sum((p[0] - mt) * (p[1] - mv) for p in points)
    return cov / var * 60.0


def summarize(samples: list[Sample], ok_messages: int) -> dict[str, Any]:
    """Server figures of one span: CPU %, CPU µs per message, RSS/fds/threads, slopes.

    CPU time per message counts user+system seconds between the first and last sample
    divided by the successful messages of the span, the cost measure asv compares. A
    restart in between (cumulative CPU going down) counts the new process from zero.
    """
    if len(samples) < 2:
        return {"samples_n": len(samples)}
    first, last = samples[0], samples[-1]
    wall = last[0] - first[0]
    cpu = 0.0
    pcts = []
    for a, b in itertools.pairwise(samples):
        used = cpu_s(b) - cpu_s(a)
        if used < 0:  # the server restarted in between: the new process starts from 0
            used = cpu_s(b)
        cpu += used
        dt = b[0] - a[0]
        if dt > 0:
            pcts.append(100.0 * used / dt)
    t0 = first[0]
    rss_pts = [(s[0] - t0, s[3] / 1024.0) for s in samples]
    fd_pts = [(s[0] - t0, float(s[4])) for s in samples]
    rss_slope = slope_per_min(rss_pts)
    fd_slope = slope_per_min(fd_pts)
    return {
        "samples_n": len(samples),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 4),
        "cpu_percent_mean": round(100.0 * cpu / wall, 1) if wall > 0 else None,
        "cpu_percent_max": round(max(pcts), 1) if pcts else None,
        "cpu_us_per_msg": round(cpu * 1e6 / ok_messages, 3) if ok_messages else None,
        "rss_kib_start": first[3] // 1024,
        "rss_kib_end": last[3] // 1024,
        "rss_kib_max": max(s[3] for s in samples) // 1024,
        "fds_start": first[4],
        "fds_end": last[4],
        "fds_max": max(s[4] for s in samples),
        "threads_max": max(s[5] for s in samples),
        "rss_slope_kib_per_min": round(rss_slope, 3) if rss_slope is not None else None,
        "fd_slope_per_min": round(fd_slope, 4) if fd_slope is not None else None,
    }


def cpu_series(samples: list[Sample]) -> list[tuple[float, float]]:
    """(t, cumulative server CPU s) made monotonic across a restart (new process from 0)."""
    out: list[tuple[float, float]] = []
    total = 0.0
    prev: float | None = None
    for s in samples:
        cpu = cpu_s(s)
        if prev is not None:
            total += cpu - prev if cpu >= prev else cpu
        prev = cpu
        out.append((s[0], total))
    return out


def cpu_between(series: list[tuple[float, float]], t0: float, t1: float) -> float | None:
    """Server CPU seconds used in [t0, t1], linearly interpolated between samples."""
    if len(series) < 2 or t0 < series[0][0] or t1 > series[-1][0]:
        return None

    def at(t: float) -> float:
        for (ta, ca), (tb, cb) in itertools.pairwise(series):
            if ta <= t <= tb:
                return ca if tb == ta else ca + (cb - ca) * (t - ta) / (tb - ta)
        return series[-1][1]

    return at(t1) - at(t0)


def compact(samples: list[Sample], t0: float) -> list[list[float]]:
    """Samples for the JSON: [t_rel_s, cpu_user_s, cpu_sys_s, rss_kib, fds, threads, cpu_s]."""
    return [[round(s[0] - t0, 3), round(s[1], 3), round(s[2], 3), s[3] // 1024, s[4], s[5],
             round(s[6], 6)] for s in samples]
