"""How long a scenario is expected to take at a profile: the "of ~N min" of progress lines.

An estimate from the profile's own durations plus a fixed cost per phase (connecting,
draining, settling) — good to a few percent on the full profile, where the durations
dominate, and an upper-side guess on the short ones. A scenario missing here shows no
expected time rather than a wrong one.
"""

from __future__ import annotations

from typing import Any

#: connecting, draining and closing one phase (s), and connecting per 1000 sessions
PHASE_OVERHEAD_S = 0.7
CONNECT_PER_1000_S = 1.5


def _phase(duration_s: float, warmup_s: float = 0.0, connections: int = 1) -> float:
    return warmup_s + duration_s + PHASE_OVERHEAD_S + CONNECT_PER_1000_S * connections / 1000


def expected_s(scenario: str, p: Any) -> float | None:
    """Expected wall time of ``scenario`` with parameters ``p`` (None: unknown)."""
    if scenario == "load_performance":
        settle = 2 * p.pairs * p.settle_s  # every closed-loop round settles first
        return sum(_duet(p, p.duration_s, p.warmup_s, n) + settle for n in p.clients)
    if scenario == "concurrent_connections":
        rapid = p.rapid_rounds * (_phase(0.2, 0, p.rapid_n) + p.rapid_settle_s)
        return (rapid + 0.5 + _phase(p.hold_s, 0, p.hold_n) + p.settle_s
                + _phase(p.churn_s) + p.settle_s)
    if scenario == "end_to_end_latency":
        return len(p.tools) * sum(_duet(p, p.duration_s, p.warmup_s, p.connections)
                                  for _ in p.rates)
    if scenario == "overload_recovery":
        breaker = p.breaker_fail_after_s + p.breaker_fail_for_s + 5.0 + 3.0
        return (_phase(p.probe_s, 0, p.connections) + _phase(p.overload_s, 0, p.connections)
                + _phase(p.recover_s, 0, p.connections) + _phase(breaker)
                + _phase(p.restart_s, 0, p.restart_connections))
    if scenario == "soak":
        return _phase(p.duration_s, p.warmup_s, p.connections)
    if scenario == "capacity":
        # a search: about three steps to the bracket, then the bisections, and a retried
        # near miss for every other step (measured: 7-12 steps per full search)
        steps = 3 + 1.5 * p.bisections
        return min(p.budget_s, sum(steps * (_phase(p.step_s, p.warmup_s, n) + p.rest_s / 2)
                                   for _tool in p.tools for n in p.clients))
    if scenario == "adhoc":
        return _phase(p.duration_s, p.warmup_s, p.connections)
    return None


def _duet(p: Any, duration_s: float, warmup_s: float, connections: int) -> float:
    """A phase measured against the reference server (``pairs`` > 0): each side warms up
    and measures the whole duration, and opens its own sessions."""
    sides = 2 if getattr(p, "pairs", 0) else 1
    return _phase(sides * duration_s, sides * warmup_s, sides * connections)


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour)."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
