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
    """Steady open-loop load; RSS and fd slopes."""

    rate: float = 1000.0
    connections: int = 20
    tool: str = "echo"
    duration_s: float = 25.0
    warmup_s: float = 2.0


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
    if not overrides:
        return base
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
