"""Profile tables: how long and how hard each scenario runs in smoke / quick / full.

* ``smoke``: CI, seconds per scenario (tests/e2e runs these against a real server).
* ``quick``: pre-merge; all five scenarios together take about 2.5 minutes per commit so
  that ``asv continuous`` over two commits fits in about 10 minutes.
* ``full``: nightly, the test plan's durations (10 min of 1000 held connections, 1 hour
  soak).

One dataclass per scenario so each scenario reads typed parameters; the CLI can override
single fields with ``--set name=value``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

PROFILES = ("smoke", "quick", "full")


@dataclass(frozen=True)
class LoadPerformance:
    """Closed loop at growing client counts (each client ``inflight`` requests at a time)."""

    clients: tuple[int, ...] = (1, 10, 100, 1000)
    inflight: int = 1
    tool: str = "echo"
    warmup_s: float = 0.5   # per side: a duet warms both servers up
    duration_s: float = 6.0
    connect_concurrency: int = 200
    #: at most this many round pairs against the reference server (benchmarks/load/
    #: duet.py; 0: the commit alone in one phase, no host-corrected figures), pooled
    #: into `blocks` samples; each side measures duration_s in total, a closed-loop
    #: round after settle_s of load outside its window
    pairs: int = 48
    blocks: int = 8
    settle_s: float = 0.02


@dataclass(frozen=True)
class ConcurrentConnections:
    """Rapid connect, hold with light traffic, churn, then the resource check."""

    rapid_n: int = 100
    rapid_rounds: int = 10
    rapid_settle_s: float = 0.2
    hold_n: int = 1000
    hold_s: float = 10.0
    hold_rate_per_conn: float = 0.5     # light traffic: one echo per connection per 2 s
    churn_concurrency: int = 10
    churn_s: float = 8.0
    settle_s: float = 1.5


@dataclass(frozen=True)
class EndToEndLatency:
    """Open loop (Poisson) per tool type at several rates (msg/s)."""

    tools: tuple[str, ...] = ("echo", "status", "chat", "analyze")
    rates: tuple[float, ...] = (20.0, 200.0)
    connections: int = 10
    warmup_s: float = 0.5
    duration_s: float = 3.0
    #: round pairs against the reference server and blocks, as for LoadPerformance
    pairs: int = 48
    blocks: int = 8


@dataclass(frozen=True)
class OverloadRecovery:
    """Busy shedding past capacity, circuit breaker, server restart."""

    delay_ms: float = 50.0              # echo delay: capacity = in-flight cap / delay
    connections: int = 8
    probe_rate: float = 2000.0          # open loop, far above the capped capacity
    probe_s: float = 2.0
    overload_factor: float = 2.0
    overload_s: float = 4.0
    recover_factor: float = 0.5
    recover_s: float = 3.0
    breaker_rate: float = 50.0
    breaker_fail_after_s: float = 1.0
    breaker_fail_for_s: float = 2.0
    breaker_max_s: float = 30.0
    restart_connections: int = 10
    restart_s: float = 10.0
    restart_at_s: float = 2.0
    restarts: int = 3
    restart_every_s: float = 2.5


@dataclass(frozen=True)
class Soak:
    """Steady open-loop load; RSS and fd slopes with a leak verdict (benchmarks/load/leak.py).

    The leak sizes are what the verdict must resolve: a slope that large is "leak", one
    under half of it (upper 95 % bound) "no leak", anything between "cannot tell".
    """

    rate: float = 1000.0
    connections: int = 20
    tool: str = "echo"
    duration_s: float = 25.0
    warmup_s: float = 2.0
    leak_kib_per_1000_msg: float = 1.0  # the plan's "no memory leaks": 1 KiB per 1000 msgs
    leak_fds_per_100k_msg: float = 1.0
    skip_fraction: float = 0.2          # first part of the window left out of the fits
    blocks: int = 12                    # block means fitted (see leak.py)


@dataclass(frozen=True)
class Capacity:
    """Breaking points: per tool and client count, the highest offered rate (open loop,
    Poisson) at which p99 stays under ``p99_limit_ms`` and errors under
    ``max_error_fraction`` (benchmarks/load/scenarios/capacity.py).

    The search steps the rate by ``step_factor`` from the tool's start rate until one
    step passes and the next fails, then bisects that bracket (geometrically)
    ``bisections`` times: the result is within ``step_factor ** (1 / 2 ** bisections)``
    of the true capacity (quick: 2 ** (1/8) = 9 %, full: 2 ** (1/32) = 2 %).
    """

    tools: tuple[str, ...] = ("echo", "chat", "analyze")
    clients: tuple[int, ...] = (100, 1000)
    #: first offered rate per tool (msg/s), in the order of ``tools``; near the measured
    #: capacity of this machine, so the coarse search needs few steps
    start_rates: tuple[float, ...] = (4000.0, 2000.0, 1000.0)
    step_factor: float = 2.0
    bisections: int = 3
    min_rate: float = 25.0
    max_rate: float = 64000.0
    p99_limit_ms: float = 200.0           # the plan: p99 < 200 ms
    max_error_fraction: float = 0.001     # errors under 0.1 %
    max_send_lag_ms: float = 50.0         # generator behind schedule by more: it lagged
    generator_busy_percent: float = 90.0  # ... at this CPU: the instrument's own ceiling
    #: a failed step is run again this many times and fails only if every run fails:
    #: host stalls (other tenants) only ever make a step slower, never faster — when the
    #: failure is a near miss (latency alone, p99 under ``retry_below`` x the limit); a
    #: step far past the knee is not worth the time
    retries: int = 1
    retry_below: float = 3.0
    max_rss_mib: float = 2048.0           # server memory: a step above it fails on memory
    warmup_s: float = 0.3
    step_s: float = 1.0
    timeout_s: float = 2.0                # a reply later than this is a timeout (latency)
    rest_s: float = 0.3                   # after a failed step: the backlog drains
    connect_concurrency: int = 200
    budget_s: float = 60.0                # the whole scenario; shared by the searches


@dataclass(frozen=True)
class BadInput:
    """Well-behaved open-loop load in interleaved phases: unloaded, attacked, ..., unloaded.

    The attacked phases run the attacker (benchmarks/load/attack.py) at the same time; the
    good clients' p99 there is compared with the unloaded phases of the same run.
    """

    rate: float = 400.0                 # good clients' open-loop rate, msg/s in total
    connections: int = 10
    tool: str = "echo"
    warmup_s: float = 0.5
    phase_s: float = 5.0                # each measured phase
    rounds: int = 1                     # attacked phases (each followed by an unloaded one)
    attack_rate: float = 400.0          # corpus frames/s over attack_connections
    attack_connections: int = 4
    flood_rate: float = 400.0           # unknown methods/s, in bursts, on one connection
    oversized_per_s: float = 2.0        # sessions closed with 1009, per second
    invalid_utf8: int = 4               # sessions closed with 1007, per attacked phase
    non_readers: int = 8                # sessions that never read, per attacked phase
    half_open: int = 8                  # silent partial handshakes, per attacked phase
    grace_s: float = 15.0               # after an attacked phase: watch closes, at most
    watch_half_open: bool = True        # ... of half-open ones too (the server's 10 s timeout)
    max_frame_bytes: int = 262_144      # the server's --max-frame-bytes (oversized: above)
    seed: int = 19


TABLE: dict[str, dict[str, Any]] = {
    "load_performance": {
        # the duet doubles the load time: half the measured time per side keeps CI's
        "smoke": LoadPerformance(clients=(1, 10, 100), warmup_s=0.2, duration_s=1.5, pairs=14,
                                 blocks=7),
        "quick": LoadPerformance(),
        "full": LoadPerformance(warmup_s=5.0, duration_s=60.0, pairs=240, blocks=20),
    },
    "concurrent_connections": {
        "smoke": ConcurrentConnections(rapid_rounds=3, hold_n=500, hold_s=3.0, churn_s=3.0,
                                       settle_s=1.0),
        "quick": ConcurrentConnections(),
        "full": ConcurrentConnections(hold_s=600.0, churn_s=120.0, settle_s=3.0),
    },
    "end_to_end_latency": {
        "smoke": EndToEndLatency(rates=(20.0,), warmup_s=0.2, duration_s=1.0, pairs=14,
                                 blocks=7),
        "quick": EndToEndLatency(),
        "full": EndToEndLatency(rates=(20.0, 200.0, 1000.0), warmup_s=5.0, duration_s=60.0,
                                pairs=240, blocks=20),
    },
    "overload_recovery": {
        "smoke": OverloadRecovery(probe_s=1.0, overload_s=2.0, recover_s=1.5,
                                  restart_s=7.0, restart_at_s=1.5, restarts=2,
                                  breaker_max_s=20.0),
        "quick": OverloadRecovery(),
        "full": OverloadRecovery(probe_s=10.0, overload_s=60.0, recover_s=30.0,
                                 restart_s=40.0, restart_at_s=10.0, restarts=5,
                                 restart_every_s=5.0, breaker_max_s=60.0),
    },
    "soak": {
        "smoke": Soak(rate=500.0, duration_s=4.0, warmup_s=1.0),
        "quick": Soak(),
        "full": Soak(rate=2000.0, duration_s=3600.0, warmup_s=30.0),
    },
    "bad_input": {
        "smoke": BadInput(rate=200.0, connections=4, warmup_s=0.3, phase_s=1.0,
                          attack_rate=200.0, attack_connections=2, flood_rate=200.0,
                          invalid_utf8=2, non_readers=2, half_open=2,
                          watch_half_open=False),
        "quick": BadInput(),
        "full": BadInput(phase_s=20.0, rounds=3, warmup_s=1.0, non_readers=16,
                         half_open=32),
    },
    "capacity": {
        "smoke": Capacity(tools=("echo",), clients=(100,), step_factor=4.0, bisections=1,
                          warmup_s=0.2, step_s=0.6, rest_s=0.2, retries=0, budget_s=10.0),
        "quick": Capacity(),
        "full": Capacity(bisections=5, warmup_s=2.0, step_s=8.0, rest_s=1.0,
                         budget_s=1200.0),
    },
}

def _adhoc() -> dict[str, Any]:
    from .scenarios.adhoc import Adhoc
    return {"smoke": Adhoc(warmup_s=0.3, duration_s=1.5), "quick": Adhoc(),
            "full": Adhoc(duration_s=60.0)}


TABLE["adhoc"] = _adhoc()
SCENARIOS = tuple(TABLE)


def params(scenario: str, profile: str, overrides: dict[str, str] | None = None) -> Any:
    """The parameters of ``scenario`` at ``profile``, with ``name=value`` overrides."""
    try:
        base = TABLE[scenario][profile]
    except KeyError as exc:
        raise ValueError(f"unknown scenario/profile {scenario}/{profile}") from exc
    return _override(base, overrides or {}, scenario)


def _override(base: Any, overrides: dict[str, str], what: str = "") -> Any:
    """``base`` with ``name=value`` overrides parsed into each field's type."""
    if not overrides:
        return base
    scenario = what or type(base).__name__
    kinds = {f.name: f for f in fields(base)}
    changes: dict[str, Any] = {}
    for name, raw in overrides.items():
        if name not in kinds:
            raise ValueError(f"{scenario} has no parameter {name!r} (has {sorted(kinds)})")
        current = getattr(base, name)
        if isinstance(current, tuple):
            elem = type(current[0]) if current else str
            changes[name] = tuple(elem(x) for x in raw.split(",") if x)
        elif isinstance(current, bool):
            changes[name] = raw.lower() in ("1", "true", "yes")
        else:
            changes[name] = type(current)(raw)
    return replace(base, **changes)


@dataclass(frozen=True)
class Instructions:
    """Instructions the server executes under valgrind (``benchmarks.load.instructions``).

    Every figure is a series of ``windows`` samples (asv's Mann-Whitney test needs at
    least 7 a side after the windows that held a garbage-collector pass are left out:
    one in seven or eight). A window of a message path holds ``messages`` sequential requests
    (``chat`` half and ``analyze`` a quarter of that: they cost more each), of the
    connection series ``connections`` lives. Bigger windows spread the garbage
    collector's passes more evenly: one pass costs about as much as half a connection
    life, or 10 to 30 requests.
    """

    windows: int = 10
    messages: int = 100
    warmup_messages: int = 50
    connections: int = 32                 # connection lives per window
    warmup_connections: int = 8
    open_connections: tuple[int, ...] = (1, 100, 1000)
    open_messages: int = 100              # echo calls per window with the others open
    open_concurrency: int = 25            # handshakes in flight while opening the others
    #: seconds per idle window (one tick each); windows * idle_seconds must fit between
    #: 14 s and 60 s of the idle server's uptime
    idle_seconds: int = 3
    request_log: str = "sqlite"           # sqlite (written at exit) | none


INSTRUCTIONS: dict[str, Instructions] = {
    "smoke": Instructions(windows=9, messages=40, warmup_messages=30, connections=16,
                          warmup_connections=4, open_connections=(1, 100), open_messages=40,
                          idle_seconds=2),
    "quick": Instructions(),
    "full": Instructions(windows=20, messages=200, connections=64, idle_seconds=2),
}


def instructions_params(profile: str, overrides: dict[str, str] | None = None) -> Instructions:
    """The instruction-count parameters of ``profile``, with ``name=value`` overrides."""
    try:
        base = INSTRUCTIONS[profile]
    except KeyError as exc:
        raise ValueError(f"unknown profile {profile!r} (have {', '.join(INSTRUCTIONS)})") from exc
    return _override(base, overrides or {})
