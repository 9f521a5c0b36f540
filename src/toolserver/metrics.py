"""Server-side metrics: cheap hooks on the hot path, all the arithmetic off it.

The server handles tens of thousands of messages per second on one core, so every hook
the server calls per message is a handful of plain attribute/dict/list operations
(a few hundred nanoseconds). Nothing on the hot path touches ``prometheus_client``:

* Counters are plain ``int`` attributes and small dicts keyed by label tuples.
* Latencies go into fixed, log-spaced buckets (``bisect`` into ``FINE_BOUNDS``), one
  bucket array per tool (requests) or provider (provider calls).
* Once per second :meth:`ServerMetrics.tick` (driven by :meth:`ServerMetrics.run_ticker`,
  a task the server starts) copies the cumulative figures into a ring of per-second
  snapshots. Rolling rates (1/10/60 s) and sliding-window percentiles (p50/p95/p99) are
  differences between the newest snapshot and an older one, so they cost nothing per
  message and are computed from real traffic only.
* The Prometheus families are built at scrape time by a custom collector in a private
  ``CollectorRegistry``; psutil process figures are read there too.

With ``enabled=False`` (``--no-metrics``) every hook is replaced by a no-op at
construction time, so the server can measure the cost of counting in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = [
    "COARSE_BOUNDS",
    "FINE_BOUNDS",
    "HISTORY_SECONDS",
    "SCHEMA_VERSION",
    "WINDOW_SECONDS",
    "ServerMetrics",
    "percentile",
]

#: Version of the ``/api/metrics`` JSON document (bump on incompatible changes).
SCHEMA_VERSION = 1

#: Sliding window (seconds) for the headline latency percentiles.
WINDOW_SECONDS = 60

#: Per-second points kept for the dashboard's time-series charts (five minutes).
HISTORY_SECONDS = 300

#: Rolling-rate windows reported in the JSON document (seconds).
RATE_WINDOWS = (1, 10, 60)

REQUEST_OUTCOMES = ("ok", "tool_error", "error", "busy")
BREAKER_STATES = ("closed", "open", "half_open")


def _bounds(multipliers: Iterable[str], exponents: Iterable[int]) -> tuple[float, ...]:
    """Build bucket bounds from decimal strings so coarse bounds equal fine bounds exactly."""
    return tuple(float(f"{m}e{e}") for e in exponents for m in multipliers)


#: Fine latency buckets (10 per decade, 1 us .. 80 s): about +-12 % percentile resolution.
FINE_BOUNDS: tuple[float, ...] = _bounds(
    ("1", "1.25", "1.5", "2", "2.5", "3", "4", "5", "6", "8"), range(-6, 2)
)

#: Prometheus histogram bounds: a subset of ``FINE_BOUNDS`` (aggregated at scrape time).
COARSE_BOUNDS: tuple[float, ...] = (
    *_bounds(("1", "2.5", "5"), range(-4, 1)),
    10.0,
    30.0,
)

_COARSE_INDEX: tuple[int, ...] = tuple(FINE_BOUNDS.index(b) for b in COARSE_BOUNDS)
_NBUCKETS = len(FINE_BOUNDS) + 1  # the last bucket holds observations above FINE_BOUNDS[-1]


class _Hist:
    """Cumulative latency histogram over ``FINE_BOUNDS``: just a list and a float."""

    __slots__ = ("counts", "labels", "total")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.counts = [0] * _NBUCKETS
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation (used off the hottest paths; request_done inlines this)."""
        self.counts[bisect_left(FINE_BOUNDS, seconds)] += 1
        self.total += seconds


def percentile(counts: list[int], q: float) -> float | None:
    """Estimate the ``q`` quantile (0..1, seconds) from fine-bucket counts.

    Linear interpolation inside the bucket that holds the rank; ``None`` when empty.
    Observations above the last bound are reported as that bound (a floor).
    """
    n = sum(counts)
    if n == 0:
        return None
    rank = q * n
    seen = 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            if i >= len(FINE_BOUNDS):
                return FINE_BOUNDS[-1]
            lower = FINE_BOUNDS[i - 1] if i else 0.0
            upper = FINE_BOUNDS[i]
            frac = (rank - seen) / c
            return lower + (upper - lower) * max(0.0, min(1.0, frac))
        seen += c
    return FINE_BOUNDS[-1]


def _latency_summary(counts: list[int], total_s: float) -> dict[str, Any]:
    """The JSON latency block: count, mean and p50/p95/p99 in milliseconds."""
    n = sum(counts)

    def ms(q: float) -> float | None:
        v = percentile(counts, q)
        return None if v is None else round(v * 1000.0, 3)

    return {
        "count": n,
        "mean_ms": round(total_s / n * 1000.0, 3) if n else None,
        "p50_ms": ms(0.50),
        "p95_ms": ms(0.95),
        "p99_ms": ms(0.99),
    }


def _diff(new: list[int], old: list[int] | None) -> list[int]:
    """Bucket-wise difference of two cumulative snapshots (``old`` may not exist yet)."""
    if old is None:
        return list(new)
    return [a - b for a, b in zip(new, old, strict=True)]


@dataclass(slots=True)
class _Frame:
    """Cumulative state copied once per tick; windows are differences between frames."""

    t: float
    messages_in: int
    messages_out: int
    requests: int
    busy: int
    provider_calls: int
    provider_failures: int
    cpu_seconds: float
    req_hists: dict[str, tuple[list[int], float]] = field(default_factory=dict)
    prov_hists: dict[str, tuple[list[int], float]] = field(default_factory=dict)
    all_requests: list[int] = field(default_factory=list)


def _merge(
    into: dict[Any, tuple[list[int], float]], key: Any, counts: list[int], total: float
) -> None:
    """Add a histogram (bucket counts, sum) into ``into[key]`` (copying, never aliasing)."""
    prev = into.get(key)
    if prev is None:
        into[key] = (list(counts), total)
    else:
        into[key] = ([a + b for a, b in zip(prev[0], counts, strict=True)], prev[1] + total)


#: Stand-ins for the hooks when metrics are disabled: the same parameters as the real
#: hooks (keyword calls keep working) and no ``*args`` packing, so "off" costs one bare call.
_NOOPS: dict[str, Callable[..., None]] = {
    "connection_opened": lambda: None,
    "connection_closed": lambda: None,
    "connection_rejected": lambda reason: None,
    "message_in": lambda nbytes: None,
    "message_out": lambda nbytes: None,
    "request_done": lambda method, tool, outcome, seconds: None,
    "set_inflight": lambda n: None,
    "provider_call": lambda provider, ok, seconds: None,
}


class ServerMetrics:
    """Counters the server bumps on its hot path, plus scrape-time views of them.

    Hook contract: docs/ARCHITECTURE.md section 3. All hooks run on the event-loop
    thread; none of them allocates more than a dict entry the first time a label
    combination appears.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        # connections
        self.connections_opened = 0
        self.connections_closed = 0
        self.connections_rejected: dict[str, int] = {}
        # messages
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        # requests: (method, tool, outcome) -> latency histogram (its sum is the count)
        self._requests: dict[tuple[str, str | None, str], _Hist] = {}
        self.inflight = 0
        self._inflight_peak = 0
        # providers
        self.provider_calls: dict[str, int] = {}
        self.provider_failures: dict[str, int] = {}
        self._prov_hists: dict[str, _Hist] = {}
        # attached views of server state (set by attach())
        self._breakers: Callable[[], dict[str, str]] = dict
        self._requestlog: Callable[[], tuple[int, int, int, int]] | None = None
        self._connections: Callable[[], int] | None = None
        self._draining: Callable[[], bool] = lambda: False
        # per-second frames and dashboard history
        self._frames: deque[_Frame] = deque(maxlen=WINDOW_SECONDS + 1)
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_SECONDS)
        self._derived: dict[str, Any] = {}
        self._tick_count = 0
        self._tick_waiters: list[asyncio.Future[None]] = []
        self._process = psutil.Process(os.getpid())
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))
        if not enabled:
            for name, noop in _NOOPS.items():
                setattr(self, name, noop)
        self.tick()

    # ------------------------------------------------------------------ hot-path hooks

    def connection_opened(self) -> None:
        """A WebSocket client completed the handshake."""
        self.connections_opened += 1

    def connection_closed(self) -> None:
        """A connection counted by :meth:`connection_opened` ended."""
        self.connections_closed += 1

    def connection_rejected(self, reason: str) -> None:
        """Refused or cut connection: ``capacity`` (1013), ``auth`` (401), ``frame_too_big``
        (1009), ``send_timeout`` (1008, the client stopped reading), ``stream_capacity``
        (1013 on ``/monitoring/ws``)."""
        d = self.connections_rejected
        d[reason] = d.get(reason, 0) + 1

    def message_in(self, nbytes: int) -> None:
        """One frame received from a client."""
        self.messages_in += 1
        self.bytes_in += nbytes

    def message_out(self, nbytes: int) -> None:
        """One frame sent to a client."""
        self.messages_out += 1
        self.bytes_out += nbytes

    def request_done(
        self,
        method: str,
        tool: str | None,
        outcome: str,
        seconds: float,
        _bisect: Callable[[tuple[float, ...], float], int] = bisect_left,
        _bounds: tuple[float, ...] = FINE_BOUNDS,
    ) -> None:
        """A JSON-RPC request was answered (the hottest hook: one dict lookup, one bisect).

        One histogram per (method, tool, outcome) doubles as the request counter, so
        totals, per-tool latency and the busy count are all sums done at tick/scrape time.
        ``busy`` rejections are kept out of the latency figures there: they are answered
        without doing any work and would drag the percentiles towards zero. The
        ``_bisect``/``_bounds`` defaults only turn global lookups into local ones.
        """
        h = self._requests.get((method, tool, outcome))
        if h is None:
            h = self._requests[(method, tool, outcome)] = _Hist((method, tool or "", outcome))
        h.counts[_bisect(_bounds, seconds)] += 1
        h.total += seconds

    def set_inflight(self, n: int) -> None:
        """Current number of requests being processed (server-wide)."""
        self.inflight = n
        if n > self._inflight_peak:
            self._inflight_peak = n

    def provider_call(self, provider: str, ok: bool, seconds: float) -> None:
        """One upstream provider call finished (``ok=False``: it failed)."""
        d = self.provider_calls
        d[provider] = d.get(provider, 0) + 1
        if not ok:
            f = self.provider_failures
            f[provider] = f.get(provider, 0) + 1
        h = self._prov_hists.get(provider)
        if h is None:
            h = self._prov_hists[provider] = _Hist((provider,))
        h.counts[bisect_left(FINE_BOUNDS, seconds)] += 1
        h.total += seconds

    # ------------------------------------------------------------------ wiring

    def attach(
        self,
        *,
        breakers: Callable[[], dict[str, str]],
        requestlog: Callable[[], tuple[int, int, int, int]],
        connections: Callable[[], int],
        draining: Callable[[], bool],
    ) -> None:
        """Give the metrics read-only views of server state; called once at startup.

        These are polled at tick/scrape time only, never per message.
        """
        self._breakers = breakers
        self._requestlog = requestlog
        self._connections = connections
        self._draining = draining

    async def run_ticker(self, interval: float = 1.0) -> None:
        """Run :meth:`tick` every ``interval`` seconds until cancelled.

        The server starts this as a task next to the WebSocket server and cancels it on
        shutdown. Ticks are scheduled on a fixed grid so the per-second frames don't drift.
        """
        loop = asyncio.get_running_loop()
        next_at = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
            if next_at < loop.time():  # fell behind (event loop stalled): resynchronise
                next_at = loop.time() + interval
            self.tick()

    async def wait_tick(self) -> None:
        """Return after the next :meth:`tick` (for the ``/monitoring/ws`` push loop)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tick_waiters.append(fut)
        await fut

    # ------------------------------------------------------------------ off the hot path

    @property
    def requests_total(self) -> int:
        """Requests answered, every outcome."""
        return sum(sum(h.counts) for h in list(self._requests.values()))

    @property
    def busy_total(self) -> int:
        """Requests rejected with -32001 server busy."""
        return sum(sum(h.counts) for h in list(self._requests.values()) if h.labels[2] == "busy")

    def request_counts(self) -> dict[tuple[str, str, str], int]:
        """(method, tool or "", outcome) -> requests answered."""
        return {h.labels: sum(h.counts) for h in list(self._requests.values())}  # type: ignore[misc]

    def _latency_by_method_tool(self) -> dict[tuple[str, str], tuple[list[int], float]]:
        """Latency (bucket counts, sum) per (method, tool or ""), all outcomes but busy."""
        out: dict[tuple[str, str], tuple[list[int], float]] = {}
        for h in list(self._requests.values()):
            method, tool, outcome = h.labels
            if outcome != "busy":
                _merge(out, (method, tool), h.counts, h.total)
        return out

    def _latency_by_tool(self) -> dict[str, tuple[list[int], float]]:
        """Latency per tool name, or per method for requests that are not tool calls."""
        out: dict[str, tuple[list[int], float]] = {}
        for (method, tool), (counts, total) in self._latency_by_method_tool().items():
            _merge(out, tool or method, counts, total)
        return out

    def connections_current(self) -> int:
        """Open connections: the server's own count when attached, else opened - closed."""
        if self._connections is not None:
            return self._connections()
        return self.connections_opened - self.connections_closed

    def requestlog_state(self) -> tuple[int, int, int, int]:
        """(queue depth, rows written, rows dropped because the queue was full, rows
        dropped because a write failed) of the request log; zeros when not attached."""
        if self._requestlog is None:
            return (0, 0, 0, 0)
        try:
            return self._requestlog()
        except Exception:  # a broken view must not break monitoring
            return (0, 0, 0, 0)

    def breaker_states(self) -> dict[str, str]:
        """provider -> closed|open|half_open, ``{}`` when not attached."""
        try:
            return dict(self._breakers())
        except Exception:
            return {}

    def _cpu_seconds(self) -> float:
        t = self._process.cpu_times()
        return float(t.user + t.system)

    def _process_figures(self) -> dict[str, Any]:
        """RSS, open descriptors and threads from psutil (a few syscalls; tick/scrape only)."""
        p = self._process
        with p.oneshot():
            rss = p.memory_info().rss
            try:
                fds: int | None = p.num_fds()
            except (AttributeError, psutil.Error):  # not on this platform
                fds = None
            threads = p.num_threads()
        return {"rss_bytes": rss, "open_fds": fds, "threads": threads}

    def tick(self) -> None:
        """Take this second's frame and derive rates, percentiles and a history point.

        Called by :meth:`run_ticker` once per second (and lazily by :meth:`snapshot` when
        no ticker runs). Work is proportional to the number of tools/providers, not to
        the traffic.
        """
        now = time.monotonic()
        all_req = [0] * _NBUCKETS
        req_hists: dict[str, tuple[list[int], float]] = {}
        for key, (counts, total) in self._latency_by_tool().items():
            req_hists[key] = (counts, total)
            for i, c in enumerate(counts):
                if c:
                    all_req[i] += c
        frame = _Frame(
            t=now,
            messages_in=self.messages_in,
            messages_out=self.messages_out,
            requests=self.requests_total,
            busy=self.busy_total,
            provider_calls=sum(self.provider_calls.values()),
            provider_failures=sum(self.provider_failures.values()),
            cpu_seconds=self._cpu_seconds(),
            req_hists=req_hists,
            prov_hists={k: (list(h.counts), h.total) for k, h in self._prov_hists.items()},
            all_requests=all_req,
        )
        self._frames.append(frame)
        self._tick_count += 1
        inflight_peak = self._inflight_peak
        self._inflight_peak = self.inflight
        self._derived = self._derive(frame, inflight_peak)
        self._history.append(self._history_point())
        waiters, self._tick_waiters = self._tick_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _frame_ago(self, seconds: int) -> _Frame | None:
        """The frame taken ``seconds`` ticks before the newest one (oldest if fewer)."""
        frames = self._frames
        if len(frames) < 2:
            return None
        return frames[max(0, len(frames) - 1 - seconds)]

    def _rates(self, attr: str) -> dict[str, float | None]:
        """Per-second rate of a cumulative frame field over each of ``RATE_WINDOWS``."""
        new = self._frames[-1]
        out: dict[str, float | None] = {}
        for w in RATE_WINDOWS:
            old = self._frame_ago(w)
            if old is None or new.t <= old.t:
                out[f"{w}s"] = None
            else:
                out[f"{w}s"] = round((getattr(new, attr) - getattr(old, attr)) / (new.t - old.t), 2)
        return out

    def _window(
        self, new: dict[str, tuple[list[int], float]], old: _Frame | None, attr: str
    ) -> dict[str, dict[str, Any]]:
        """Latency summaries per key over the window between ``old`` and the newest frame."""
        olds: dict[str, tuple[list[int], float]] = getattr(old, attr) if old else {}
        out = {}
        for key, (counts, total) in new.items():
            prev = olds.get(key)
            diff = _diff(counts, prev[0] if prev else None)
            out[key] = _latency_summary(diff, total - (prev[1] if prev else 0.0))
        return out

    def _derive(self, frame: _Frame, inflight_peak: int) -> dict[str, Any]:
        """Everything windowed, computed once per tick from frames."""
        w60 = self._frame_ago(WINDOW_SECONDS)
        w10 = self._frame_ago(10)
        w1 = self._frame_ago(1)
        total_s = sum(t for _, t in frame.req_hists.values())

        def overall(old: _Frame | None) -> dict[str, Any]:
            old_total = sum(t for _, t in old.req_hists.values()) if old else 0.0
            counts = _diff(frame.all_requests, old.all_requests if old else None)
            return _latency_summary(counts, total_s - old_total)

        cpu_percent = None
        if w1 is not None and frame.t > w1.t:
            cpu_percent = round((frame.cpu_seconds - w1.cpu_seconds) / (frame.t - w1.t) * 100, 1)
        return {
            "tick": self._tick_count,
            "rates": {
                "messages_in": self._rates("messages_in"),
                "messages_out": self._rates("messages_out"),
                "requests": self._rates("requests"),
                "rejections": self._rates("busy"),
                "provider_calls": self._rates("provider_calls"),
                "provider_failures": self._rates("provider_failures"),
            },
            "latency": {
                "window_s": WINDOW_SECONDS,
                "overall": overall(w60),
                "last_10s": overall(w10),
                "last_1s": overall(w1),
                "by_tool": self._window(frame.req_hists, w60, "req_hists"),
            },
            "provider_latency": self._window(frame.prov_hists, w60, "prov_hists"),
            "inflight_peak_1s": inflight_peak,
            "cpu_percent": cpu_percent,
            "process": self._process_figures(),
        }

    def _history_point(self) -> dict[str, Any]:
        """One compact per-second point for the dashboard charts."""
        d = self._derived
        lat = d["latency"]["last_10s"]
        rates = d["rates"]
        return {
            "t": round(time.time(), 3),
            "msg_in": rates["messages_in"]["1s"],
            "msg_out": rates["messages_out"]["1s"],
            "rejections": rates["rejections"]["1s"],
            "p50_ms": lat["p50_ms"],
            "p95_ms": lat["p95_ms"],
            "p99_ms": lat["p99_ms"],
            "connections": self.connections_current(),
            "inflight": self.inflight,
            "inflight_peak": d["inflight_peak_1s"],
            "cpu_percent": d["cpu_percent"],
            "rss_bytes": d["process"]["rss_bytes"],
        }

    def history(self) -> list[dict[str, Any]]:
        """The last ``HISTORY_SECONDS`` per-second points, oldest first."""
        return list(self._history)

    def snapshot(self) -> dict[str, Any]:
        """The ``/api/metrics`` document: live counters plus the last tick's windows.

        Counters are read at call time (exact); rates and percentiles are as of the last
        tick (``tick`` / ``tick_age_s``). If no ticker has run for over 1.5 s, tick now
        so the document is never stale. Keys (schema 1; ``http`` adds ``version``)::

            schema, enabled, time (unix s), uptime_s, tick, tick_age_s, draining
            connections: current, opened, closed, rejected, rejected_by_reason{reason}
            messages: in, out, bytes_in, bytes_out, rate_in{1s,10s,60s}, rate_out{...}
            requests: total, by_outcome{ok,tool_error,error,busy}, by_method{m},
                      by_tool{tool: {outcome: n}}, rate{1s,10s,60s}
            inflight: current, peak_1s          rejections: overload, rate{1s,10s,60s}
            latency: window_s (60), overall / last_10s / last_1s / by_tool{tool or method}
                     each {count, mean_ms, p50_ms, p95_ms, p99_ms} (busy excluded)
            providers{name}: calls, failures, breaker, latency{count, mean_ms, p50_ms,...}
            requestlog: queue_depth, rows_written, rows_dropped,
                        rows_dropped_by_reason{queue_full, write_failed}
            process: cpu_seconds, cpu_percent, rss_bytes, open_fds, threads

        Rates are over *up to* the window (less right after start); a value is ``None``
        until two ticks exist, a percentile ``None`` when its window saw no request.
        """
        if self._frames and time.monotonic() - self._frames[-1].t > 1.5:
            self.tick()
        d = self._derived
        queue_depth, rows_written, dropped_full, dropped_failed = self.requestlog_state()
        breakers = self.breaker_states()
        by_outcome = dict.fromkeys(REQUEST_OUTCOMES, 0)
        by_method: dict[str, int] = {}
        by_tool: dict[str, dict[str, int]] = {}
        for (method, tool, outcome), n in self.request_counts().items():
            by_outcome[outcome] = by_outcome.get(outcome, 0) + n
            by_method[method] = by_method.get(method, 0) + n
            if tool:
                t = by_tool.setdefault(tool, dict.fromkeys(REQUEST_OUTCOMES, 0))
                t[outcome] = t.get(outcome, 0) + n
        providers: dict[str, dict[str, Any]] = {}
        for name in sorted(set(self.provider_calls) | set(breakers)):
            calls = self.provider_calls.get(name, 0)
            providers[name] = {
                "calls": calls,
                "failures": self.provider_failures.get(name, 0),
                "breaker": breakers.get(name, "unknown"),
                "latency": d["provider_latency"].get(name, _latency_summary([], 0.0)),
            }
        rejected = dict(self.connections_rejected)
        return {
            "schema": SCHEMA_VERSION,
            "enabled": self.enabled,
            "time": round(time.time(), 3),
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "tick": d["tick"],
            "tick_age_s": round(time.monotonic() - self._frames[-1].t, 3),
            "draining": bool(self._draining()),
            "connections": {
                "current": self.connections_current(),
                "opened": self.connections_opened,
                "closed": self.connections_closed,
                "rejected": sum(rejected.values()),
                "rejected_by_reason": rejected,
            },
            "messages": {
                "in": self.messages_in,
                "out": self.messages_out,
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
                "rate_in": d["rates"]["messages_in"],
                "rate_out": d["rates"]["messages_out"],
            },
            "requests": {
                "total": sum(by_outcome.values()),
                "by_outcome": by_outcome,
                "by_method": by_method,
                "by_tool": by_tool,
                "rate": d["rates"]["requests"],
            },
            "inflight": {"current": self.inflight, "peak_1s": d["inflight_peak_1s"]},
            "rejections": {"overload": by_outcome["busy"], "rate": d["rates"]["rejections"]},
            "latency": d["latency"],
            "providers": providers,
            "requestlog": {
                "queue_depth": queue_depth,
                "rows_written": rows_written,
                "rows_dropped": dropped_full + dropped_failed,
                "rows_dropped_by_reason": {
                    "queue_full": dropped_full,
                    "write_failed": dropped_failed,
                },
            },
            "process": {
                "cpu_seconds": round(self._cpu_seconds(), 3),
                "cpu_percent": d["cpu_percent"],
                **d["process"],
            },
        }

    def prometheus_text(self) -> bytes:
        """Prometheus text exposition (``prometheus_client.generate_latest``)."""
        return generate_latest(self._registry)


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    """Fine counts -> Prometheus (le, cumulative count) pairs on ``COARSE_BOUNDS``."""
    running = 0
    cum = []
    for c in counts:
        running += c
        cum.append(running)
    buckets = [(_le(COARSE_BOUNDS[j]), float(cum[i])) for j, i in enumerate(_COARSE_INDEX)]
    buckets.append(("+Inf", float(running)))
    return buckets


def _le(bound: float) -> str:
    """Render a bucket bound the way prometheus_client does for its own histograms."""
    return repr(bound) if not math.isinf(bound) else "+Inf"


class _Collector(Collector):
    """Builds every family from the plain counters at scrape time."""

    def __init__(self, m: ServerMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        yield from self._info()
        g = GaugeMetricFamily("toolserver_connections", "Open WebSocket connections")
        g.add_metric([], m.connections_current())
        yield g
        yield _counter(
            "toolserver_connections_opened", "Connections accepted", m.connections_opened
        )
        yield _counter("toolserver_connections_closed", "Connections closed", m.connections_closed)
        c = CounterMetricFamily(
            "toolserver_connections_rejected", "Connections refused", labels=["reason"]
        )
        for reason, n in sorted(m.connections_rejected.items()):
            c.add_metric([reason], n)
        yield c
        yield _counter("toolserver_messages_received", "Frames received", m.messages_in)
        yield _counter("toolserver_messages_sent", "Frames sent", m.messages_out)
        yield _counter("toolserver_received_bytes", "Payload bytes received", m.bytes_in)
        yield _counter("toolserver_sent_bytes", "Payload bytes sent", m.bytes_out)
        c = CounterMetricFamily(
            "toolserver_requests",
            "JSON-RPC requests answered, by method, tool and outcome",
            labels=["method", "tool", "outcome"],
        )
        counts = m.request_counts()
        for (method, tool, outcome), n in sorted(counts.items()):
            c.add_metric([method, tool, outcome], n)
        yield c
        h = HistogramMetricFamily(
            "toolserver_request_duration_seconds",
            "Request latency (excluding busy rejections), by tool",
            labels=["method", "tool"],
        )
        for (method, tool), (bucket_counts, total) in sorted(m._latency_by_method_tool().items()):
            h.add_metric([method, tool], _cumulative(bucket_counts), total)
        yield h
        g = GaugeMetricFamily("toolserver_inflight_requests", "Requests being processed")
        g.add_metric([], m.inflight)
        yield g
        yield _counter(
            "toolserver_overload_rejections",
            "Requests rejected with -32001 server busy",
            sum(n for (_, _, outcome), n in counts.items() if outcome == "busy"),
        )
        yield from self._providers()
        queue_depth, rows, dropped_full, dropped_failed = m.requestlog_state()
        g = GaugeMetricFamily("toolserver_requestlog_queue_depth", "Request-log rows queued")
        g.add_metric([], queue_depth)
        yield g
        yield _counter("toolserver_requestlog_rows_written", "Request-log rows written", rows)
        c = CounterMetricFamily(
            "toolserver_requestlog_rows_dropped",
            "Request-log rows lost: queue full (database behind) or a failed write",
            labels=["reason"],
        )
        c.add_metric(["queue_full"], dropped_full)
        c.add_metric(["write_failed"], dropped_failed)
        yield c
        yield from self._process()

    def _info(self) -> Iterator[Metric]:
        m = self.m
        g = GaugeMetricFamily("toolserver_up", "1 while serving, 0 while draining")
        g.add_metric([], 0 if m._draining() else 1)
        yield g
        g = GaugeMetricFamily("toolserver_uptime_seconds", "Seconds since the metrics started")
        g.add_metric([], time.monotonic() - m.started_at)
        yield g
        g = GaugeMetricFamily("toolserver_metrics_enabled", "0 when run with --no-metrics")
        g.add_metric([], 1 if m.enabled else 0)
        yield g

    def _providers(self) -> Iterator[Metric]:
        m = self.m
        calls = CounterMetricFamily(
            "toolserver_provider_calls", "Upstream provider calls", labels=["provider"]
        )
        fails = CounterMetricFamily(
            "toolserver_provider_failures", "Failed upstream provider calls", labels=["provider"]
        )
        for p, n in sorted(m.provider_calls.items()):
            calls.add_metric([p], n)
            fails.add_metric([p], m.provider_failures.get(p, 0))
        yield calls
        yield fails
        h = HistogramMetricFamily(
            "toolserver_provider_call_duration_seconds",
            "Upstream provider call latency",
            labels=["provider"],
        )
        for hist in sorted(m._prov_hists.values(), key=lambda x: x.labels):
            h.add_metric(list(hist.labels), _cumulative(list(hist.counts)), hist.total)
        yield h
        g = GaugeMetricFamily(
            "toolserver_circuit_breaker_state",
            "Circuit-breaker state per provider (1 for the current state)",
            labels=["provider", "state"],
        )
        for p, state in sorted(m.breaker_states().items()):
            for s in BREAKER_STATES:
                g.add_metric([p, s], 1 if state == s else 0)
        yield g

    def _process(self) -> Iterator[Metric]:
        m = self.m
        fig = m._process_figures()
        yield _counter("process_cpu_seconds", "User+system CPU seconds (psutil)", m._cpu_seconds())
        g = GaugeMetricFamily("process_resident_memory_bytes", "Resident set size (psutil)")
        g.add_metric([], fig["rss_bytes"])
        yield g
        if fig["open_fds"] is not None:
            g = GaugeMetricFamily("process_open_fds", "Open file descriptors (psutil)")
            g.add_metric([], fig["open_fds"])
            yield g
        g = GaugeMetricFamily("process_threads", "OS threads (psutil)")
        g.add_metric([], fig["threads"])
        yield g
        g = GaugeMetricFamily("process_start_time_seconds", "Start time, seconds since epoch")
        with contextlib.suppress(psutil.Error):
            g.add_metric([], m._process.create_time())
        yield g


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    """An unlabelled counter family (``_total`` is appended by the exposition)."""
    return CounterMetricFamily(name, doc, value=value)
