"""``python -m benchmarks.load.instructions``: instructions the server executes, per request.

The server runs under valgrind's callgrind (:mod:`instructions_callgrind`), which counts
every instruction it executes by simulation: the count of one request does not depend on
how busy the host is, so two runs of one commit agree to well under 1 % where its CPU
time differs by 50 %. A native driver (this process, the pinned ``.venv``, the real
``websockets`` client) sends one request at a time on one connection and cuts the
server's counter into *windows* of a fixed number of requests (a vgdb ``dump`` between
two windows). Each window is one sample::

    per_message.<path>      instructions per request of each tool (echo, status, chat,
                            analyze, listmodels) and of tools/list
    per_connection          instructions per connection life: handshake, initialize,
                            notifications/initialized, close
    per_message_open.<n>    instructions per echo with n other connections open (idle,
                            initialized): cost that grows with the connections shows here
    idle_per_second         instructions of one second of an idle server: the metrics
                            tick and whatever else it does on a clock

What keeps the figures deterministic:

* Start-up is never counted: every window is the difference between two dumps.
* The measured server's clocks run at ``CLOCK_RATE`` of real time (libfaketime), so its
  clock-driven work (the metrics tick, keepalive pings) never comes due during the run:
  on a loaded host a window lasts longer, but holds exactly the same work. That work is
  measured on its own, by a second server with a real clock that serves nothing:
  ``idle_per_second``, windows from mid-second to mid-second of its tick grid, each
  holding exactly one tick a second.
* ``PYTHONHASHSEED=0``, address-space randomisation off (``setarch -R``), the simulated
  provider with zero latency and spread (no timer, the same draws), one request at a
  time, and a window is cut only when the server has answered everything (connection
  lives: once the server is idle again, so a closed connection's clean-up counts).
* The request log is the real sqlite path; its writer thread wakes every
  ``--request-log-flush`` seconds of the (stopped) clock, i.e. never during the run,
  and writes the rows at exit (``request_log=none``: the null log instead).

What the figures cannot see: time spent waiting (a sleep, a lock, the provider), the
kernel's share of system calls, cache and branch-prediction effects, scheduling; those
need the wall-clock figures of the other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from . import environment, profiles
from . import protocol as P
from .client import open_session
from .instructions_callgrind import CallgrindServer, MissingTool, VgdbError, valgrind_version
from .recorder import Recorder
from .result import write_json
from .server_process import http_base

SCHEMA = "benchmarks.load.instructions/1"
#: Message paths, named as the asv parameter ``path``.
PATHS = ("echo", "status", "chat", "analyze", "listmodels", "tools_list")
#: Requests of a path per window, relative to ``messages`` (dearer paths get fewer).
PATH_SHARE = {"chat": 0.5, "analyze": 0.25}
#: Bumped whenever a change to this instrument could move its counts.
INSTRUMENT_VERSION = "1"
#: The measured server's clocks advance one second per 10 000 s: its first metrics tick
#: would come due after almost three hours, its first keepalive ping after 23 days.
CLOCK_RATE = 1e-4
#: A dump with fewer instructions than this found the server idle (blocked in epoll).
IDLE = 20_000
#: The idle server is measured between these uptimes (see :func:`measure_idle`).
IDLE_FROM_S = 14.0
IDLE_UNTIL_S = 60.0
#: An idle window holds one tick a second; one that strays this far from their median
#: held one more or one fewer (a tick that a starved host ran half a second late).
IDLE_TOLERANCE = 0.03
#: A window of requests or connection lives this far above its series' median held a
#: garbage-collector pass (measured: +3 to +8 %; the other windows agree within 0.5 %).
COLLECTOR_TOLERANCE = 0.015
TIMEOUT_S = 60.0

Log = Callable[[str], None]


class InstrumentError(RuntimeError):
    """The measurement could not be made (a request failed, the server died)."""


def calls_for(path: str) -> P.Call:
    """The request of one message path."""
    if path == "tools_list":
        return P.Call("tools/list", {})
    return P.default_call(path)


def messages_for(path: str, params: profiles.Instructions) -> int:
    return max(1, round(params.messages * PATH_SHARE.get(path, 1.0)))


@dataclass
class Window:
    """One sample: ``units`` requests or connection lives, and what they cost."""

    series: str
    units: int
    count: int
    wall_s: float


class Meter:
    """Cuts one server's instruction counter into pieces."""

    def __init__(self, server: CallgrindServer) -> None:
        self.server = server
        #: (start, end) of every vgdb command: the server stands still meanwhile.
        self.freezes: list[tuple[float, float]] = []

    async def vgdb(self, fn: Callable[[], Any]) -> Any:
        """Run a blocking vgdb call off the event loop, so both servers' drivers go on."""
        t0 = time.monotonic()
        try:
            return await asyncio.to_thread(fn)
        finally:
            self.freezes.append((t0, time.monotonic()))

    async def cut(self) -> int:
        """Instructions since the previous cut."""
        count: int = await self.vgdb(self.server.dump)
        return count

    async def instrumentation(self, on: bool) -> None:
        await self.vgdb(lambda: self.server.instrumentation(on))

    async def settle(self) -> int:
        """Cut until the server is idle; returns what it did meanwhile (the tail of the
        work the last requests caused, e.g. a closed connection's clean-up)."""
        tail = 0
        for _ in range(100):
            count = await self.cut()
            if count < IDLE:
                return tail
            tail += count
        raise InstrumentError("the server never went idle (is something else talking to it?)")

    async def window(self, series: str, units: int, step: Callable[[], Awaitable[None]],
                     *, settle: bool = False) -> Window:
        """``units`` steps, then a cut; ``settle``: also count the work they left running."""
        t0 = time.monotonic()
        for _ in range(units):
            await step()
        count = await self.cut()
        if settle:
            count += await self.settle()
        return Window(series, units, count, time.monotonic() - t0)


class Driver:
    """The measuring connection and the other connections, all from this process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.rec = Recorder()
        self.ws: ClientConnection | None = None
        self.next_id = 1
        self.others: list[ClientConnection] = []

    async def connect(self) -> ClientConnection:
        ws = await open_session(self.url, None, self.rec, timeout_s=TIMEOUT_S)
        if ws is None:
            raise InstrumentError(f"could not open a session: {dict(self.rec.conn_errors)}")
        return ws

    async def open_measuring(self) -> None:
        self.ws = await self.connect()

    def request(self, call: P.Call) -> Callable[[], Awaitable[None]]:
        """One request of ``call`` on the measuring connection, awaited; a failure ends
        the measurement (a count of failing requests measures nothing)."""
        prefix, suffix = call.frame_parts()

        async def one() -> None:
            ws = self.ws
            assert ws is not None
            rid = self.next_id
            self.next_id += 1
            await ws.send(prefix + str(rid) + suffix)
            try:
                raw = await asyncio.wait_for(ws.recv(), TIMEOUT_S)
            except TimeoutError:
                slowdown = 1 / CLOCK_RATE
                raise InstrumentError(
                    f"{call.method} {call.tool or ''}: no answer in {TIMEOUT_S:g} s under "
                    f"callgrind. The server's clocks run {slowdown:g} times slower than real "
                    "time here (libfaketime), and so does every wait on them: a request "
                    "path that waits on a timer (asyncio.sleep, time.sleep, a timeout) of "
                    f"{TIMEOUT_S / slowdown * 1000:g} ms or more never answers. Instruction "
                    "counts cannot measure a path that waits; the host-corrected latency "
                    "figures measure what it costs in time (docs/BENCHMARKS.md, \"What "
                    "instruction counts cannot see\")") from None
            msg = json.loads(raw)
            kind = P.classify(msg, call) if msg.get("id") == rid else P.KIND_UNMATCHED
            if kind is not None:
                raise InstrumentError(f"{call.method} {call.tool or ''}: {kind}: {raw[:300]!r}")

        return one

    async def life(self) -> None:
        """One connection life: handshake, initialize, initialized, close."""
        ws = await self.connect()
        await ws.close()

    async def open_others(self, total: int, concurrency: int) -> None:
        """Grow (or shrink) the idle, initialized other connections to ``total``."""
        while len(self.others) > total:
            await self.others.pop().close()
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                self.others.append(await self.connect())

        await asyncio.gather(*(one() for _ in range(total - len(self.others))))

    async def close(self) -> None:
        for ws in [*self.others, *([self.ws] if self.ws else [])]:
            with contextlib.suppress(Exception):
                await ws.close()
        self.others.clear()


class Measurement:
    """The measured server's series, each ``params.windows`` windows."""

    def __init__(self, params: profiles.Instructions, meter: Meter, driver: Driver,
                 log: Log) -> None:
        self.params = params
        self.meter = meter
        self.driver = driver
        self.log = log
        self.windows: list[Window] = []

    async def series(self, name: str, units: int, step: Callable[[], Awaitable[None]],
                     warmup_units: int, *, settle: bool = False) -> None:
        """Warm up (cut away), then ``windows`` windows of ``units`` steps."""
        t0 = time.monotonic()
        for _ in range(warmup_units):
            await step()
        await self.meter.cut()
        if settle:
            await self.meter.settle()
        mine = [await self.meter.window(name, units, step, settle=settle)
                for _ in range(self.params.windows)]
        self.windows += mine
        self.log(summary(name, [w.count / w.units for w in mine], time.monotonic() - t0))

    async def run(self) -> None:
        p = self.params
        d = self.driver
        m = self.meter
        await d.open_measuring()
        echo = d.request(calls_for("echo"))
        for _ in range(p.warmup_messages):
            await echo()
        await m.instrumentation(True)
        await m.settle()
        for path in PATHS:
            await self.series(f"per_message.{path}", messages_for(path, p),
                              d.request(calls_for(path)), p.warmup_messages)
        await self.series("per_connection", p.connections, d.life, p.warmup_connections,
                          settle=True)
        for others in sorted(p.open_connections, reverse=True):
            # Opening (and closing) a thousand connections is counted by nobody: with
            # instrumentation off valgrind runs them several times faster.
            t0 = time.monotonic()
            await m.instrumentation(False)
            await d.open_others(others, p.open_concurrency)
            await m.instrumentation(True)
            await m.settle()
            self.log(f"{others} other connections open in {time.monotonic() - t0:.1f} s")
            await self.series(f"per_message_open.{others}", p.open_messages, echo,
                              p.warmup_messages)


def summary(name: str, values: list[float], elapsed_s: float) -> str:
    spread = max(values) / min(values) if values and min(values) > 0 else math.nan
    median = statistics.median(values) if values else math.nan
    return (f"{name}: median {median:,.0f}, max/min {spread:.4f}, {len(values)} windows "
            f"in {elapsed_s:.1f} s")


async def measure_idle(server: CallgrindServer, params: profiles.Instructions,
                       log: Log) -> list[Window]:
    """Instructions per second of a server with a real clock that serves nothing.

    Its windows run from mid-second to mid-second of its tick grid (read from
    ``/api/metrics``), ``idle_seconds`` long, so each holds exactly that many ticks,
    however late a loaded host runs them; a window's units are its seconds. They lie in
    the stretch of its uptime where a tick's work does not change: from ``IDLE_FROM_S``
    (its 10 s windows have filled) to ``IDLE_UNTIL_S`` (its 60 s ring is full and begins
    to drop frames; a tick costs 15 % less from then on). It serves nothing: a tick that
    has requests to summarise walks histograms whose buckets depend on how long those
    requests took in wall-clock time, which would make its count depend on the host
    (measured: 2 % between two runs).
    """
    meter = Meter(server)
    t0 = time.monotonic()
    await meter.instrumentation(True)
    await asyncio.sleep(max(1.2, server.ready_at + IDLE_FROM_S - time.monotonic()))
    tick = await tick_time(server.url, meter.freezes)
    # Boundaries half a tick period away from every tick.
    period = float(params.idle_seconds)
    edge = tick + 0.5
    edge += math.ceil(time.monotonic() + 0.05 - edge)
    windows: list[Window] = []
    last = None
    while len(usable_idle(windows)) < params.windows:
        if edge > server.ready_at + IDLE_UNTIL_S:
            raise InstrumentError(
                f"idle: {len(usable_idle(windows))} of {len(windows)} idle windows held one "
                f"tick a second before {IDLE_UNTIL_S:.0f} s of uptime; the host is too slow "
                "(or lower windows / idle_seconds)")
        await asyncio.sleep(max(0.0, edge - time.monotonic()))
        count = await meter.cut()
        if last is not None:
            windows.append(Window("idle_per_second", params.idle_seconds, count,
                                  time.monotonic() - last))
        last = time.monotonic()
        edge += period
    usable = usable_idle(windows)[: params.windows]
    log(summary("idle_per_second", [w.count / w.units for w in usable], time.monotonic() - t0))
    return usable


def usable_idle(windows: list[Window]) -> list[Window]:
    """The idle windows within ``IDLE_TOLERANCE`` of their median (one tick each)."""
    if not windows:
        return []
    mid = statistics.median(w.count for w in windows)
    return [w for w in windows if abs(w.count - mid) <= IDLE_TOLERANCE * mid]


def without_collector(values: list[float]) -> list[float]:
    """The windows that held no garbage-collector pass (within ``COLLECTOR_TOLERANCE``
    above the median).

    The sequence is deterministic, so a pass lands in the same window of every run of a
    commit; but where it lands moves with the commit, and one window 5 % dearer in either
    commit keeps asv's Mann-Whitney test from calling a 3 % shift significant (the samples
    overlap). The median hardly moves; a pass's cost is in the counts of the other
    windows' requests whenever the collector runs more often.
    """
    if not values:
        return []
    mid = statistics.median(values)
    return [v for v in values if v <= mid * (1 + COLLECTOR_TOLERANCE)]


async def tick_time(url: str, freezes: list[tuple[float, float]]) -> float:
    """When the server's latest metrics tick began, in this process's monotonic time.

    ``/api/metrics`` stamps its answer with the server's wall clock (``time``) and the
    age of the last tick (``tick_age_s``), so the time does not depend on how long the
    request took. A tick that one of our vgdb commands held up ran off its grid: read
    again a second later.
    """
    for _ in range(5):
        doc = await asyncio.to_thread(_api_metrics, url)
        age, stamp = doc.get("tick_age_s"), doc.get("time")
        if not isinstance(age, int | float) or not isinstance(stamp, int | float):
            raise InstrumentError("/api/metrics has no tick_age_s/time: cannot find the "
                                  "server's metrics tick")
        tick = float(stamp) - float(age) - (time.time() - time.monotonic())
        if not any(lo - 0.02 <= tick <= hi + 0.05 for lo, hi in freezes):
            return tick
        await asyncio.sleep(1.0)
    raise InstrumentError("every reading of the tick grid was held up by a vgdb command")


def _api_metrics(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(http_base(url) + "/api/metrics", timeout=TIMEOUT_S) as r:
        doc = json.loads(r.read())
    return doc if isinstance(doc, dict) else {}


def server_arguments(params: profiles.Instructions, workdir: Path) -> list[str]:
    """The server's command line: deterministic provider, request log, room for the others."""
    if params.request_log == "sqlite":
        log = ["--request-log", f"sqlite:///{workdir / 'requests.sqlite3'}"]
    elif params.request_log == "none":
        log = ["--request-log", "none"]
    else:
        raise ValueError(f"request_log must be sqlite or none, not {params.request_log!r}")
    others = max(params.open_connections, default=0)
    return ["serve", "--host", "127.0.0.1", "--port", "0",
            "--max-connections", str(max(1000, others + 2 + params.connections)),
            "--provider-latency-ms", "0", "--provider-spread-ms", "0", "--seed", "0", *log]


def python_version(python: str) -> str:
    """The version of the interpreter that runs the server (not necessarily ours)."""
    return subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()


async def _measure(params: profiles.Instructions, measured: CallgrindServer,
                   idle: CallgrindServer, log: Log) -> tuple[list[Window], list[Window]]:
    driver = Driver(measured.url)
    measurement = Measurement(params, Meter(measured), driver, log)
    try:
        idle_windows, _ = await asyncio.gather(measure_idle(idle, params, log),
                                               measurement.run())
    finally:
        await driver.close()
    return measurement.windows, idle_windows


def run(server_python: str, profile: str = "smoke", *,
        overrides: dict[str, str] | None = None, workdir: Path | None = None,
        setarch: bool = True, log: Log | None = None) -> dict[str, Any]:
    """Measure every series once; returns the ``benchmarks.load.instructions/1`` document.

    Raises :class:`MissingTool` when valgrind or libfaketime is not installed.
    """
    params = profiles.instructions_params(profile, overrides)
    # The servers run in the work directory: a relative interpreter path would not resolve.
    server_python = os.path.abspath(server_python)
    vg_version = valgrind_version()
    say = log or (lambda line: print(f"instructions: {line}", file=sys.stderr, flush=True))
    work = Path(tempfile.mkdtemp(prefix="instructions-")) if workdir is None else workdir
    environment.raise_nofile()
    env = {"PYTHONHASHSEED": "0"}
    measured = CallgrindServer(server_python, server_arguments(params, work / "measured"),
                               workdir=work / "measured", env=env, clock_rate=CLOCK_RATE,
                               setarch=setarch)
    # The idle server's request-log writer sleeps for good: it would wake every 0.2 s,
    # and how often it manages to on a loaded host (valgrind runs one thread at a time)
    # moved the idle figure by 2 % between two runs.
    idle_args = [*server_arguments(params, work / "idle"), "--request-log-flush", "86400"]
    idle = CallgrindServer(server_python, idle_args, workdir=work / "idle", env=env,
                           setarch=setarch)
    started_at = time.time()
    t0 = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(measured.start), pool.submit(idle.start)]:
                future.result()
        say(f"servers under callgrind in {time.monotonic() - t0:.1f} s "
            f"(measured {measured.url}, idle {idle.url})")
        windows, idle_windows = asyncio.run(_measure(params, measured, idle, say))
    except VgdbError as exc:
        raise InstrumentError(str(exc)) from exc
    finally:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda s: s.discard(), (measured, idle)))
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - t0
    say(f"done in {elapsed:.1f} s ({measured.commands + idle.commands} vgdb commands)")
    assert measured.libfaketime is not None
    versions = {**environment.versions(), "instructions": INSTRUMENT_VERSION,
                "valgrind": vg_version, "libfaketime": measured.libfaketime[1],
                "server_python": python_version(server_python)}
    return document(params, profile, windows, idle_windows, started_at=started_at,
                    elapsed_s=elapsed, versions=versions,
                    commands={"measured": measured.command(), "idle": idle.command()})


def document(params: profiles.Instructions, profile: str, windows: list[Window],
             idle_windows: list[Window], *, started_at: float, elapsed_s: float,
             versions: dict[str, Any], commands: dict[str, list[str]]) -> dict[str, Any]:
    """The result document (JSON-ready)."""
    every: dict[str, list[float]] = {}
    for w in [*windows, *idle_windows]:
        every.setdefault(w.series, []).append(w.count / w.units)
    samples = {name: without_collector(values) for name, values in every.items()}
    return {
        "schema": SCHEMA,
        "profile": profile,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        "elapsed_s": round(elapsed_s, 2),
        "settings": {"params": {k: list(v) if isinstance(v, tuple) else v
                                for k, v in asdict(params).items()},
                     "clock_rate": CLOCK_RATE, "server_commands": commands,
                     "messages_per_window": {p: messages_for(p, params) for p in PATHS}},
        "machine": environment.machine(),
        "versions": versions,
        "units": {name: "instructions/s" if name == "idle_per_second" else "instructions"
                  for name in samples},
        "metrics": {name: statistics.median(v) for name, v in samples.items()},
        "metric_samples": samples,
        # windows left out of the samples (a collector pass): same place in every run
        "collector_windows": {name: len(every[name]) - len(v) for name, v in samples.items()},
        "windows": [asdict(w) for w in [*windows, *idle_windows]],
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.load.instructions",
        description="Count the instructions the toolserver executes per request, per "
                    "connection and per idle second, under valgrind's callgrind. Writes "
                    f"one JSON document (schema {SCHEMA}) and prints the medians. Needs "
                    "valgrind and libfaketime (Debian packages of the same names).",
        epilog="example: python -m benchmarks.load.instructions --server-python "
               ".venv/bin/python --profile smoke --json /tmp/instructions.json")
    ap.add_argument("--server-python", required=True, metavar="PATH",
                    help="interpreter whose installed toolserver is measured")
    ap.add_argument("--profile", default=os.environ.get("BENCH_PROFILE", "smoke"),
                    choices=profiles.PROFILES, help="default $BENCH_PROFILE or smoke")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a profile parameter, e.g. --set windows=12")
    ap.add_argument("--json", metavar="PATH", help="write the result document here")
    ap.add_argument("--workdir", metavar="DIR",
                    help="keep valgrind's files (server logs) here")
    ap.add_argument("--no-setarch", action="store_true",
                    help="leave address-space randomisation on")
    ap.add_argument("--quiet", action="store_true", help="no table on stdout")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 measured, 2 the measurement failed, 3 valgrind/libfaketime missing."""
    args = build_parser().parse_args(argv)
    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"--set expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        overrides[name.strip()] = value.strip()
    try:
        doc = run(args.server_python, args.profile, overrides=overrides,
                  workdir=Path(args.workdir) if args.workdir else None,
                  setarch=not args.no_setarch)
    except MissingTool as exc:
        print(f"instructions: {exc}", file=sys.stderr)
        return 3
    except (InstrumentError, ValueError, RuntimeError) as exc:
        print(f"instructions: {exc}", file=sys.stderr)
        return 2
    if args.json:
        write_json(doc, args.json)
    if not args.quiet:
        for name, value in doc["metrics"].items():
            values = doc["metric_samples"][name]
            print(f"{name:28} {value:>14,.0f} {doc['units'][name]:15} n={len(values):<3} "
                  f"max/min {max(values) / min(values):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
