"""Scenario 3, end-to-end latency per tool type at several load levels.

Open loop (Poisson arrivals) at each rate, so the latency includes any queueing the
server causes (no coordinated omission); ``chat`` and ``analyze`` go through the
server's simulated provider (``analyze`` makes ``steps`` provider calls in sequence).
"""

from __future__ import annotations

from ..profiles import EndToEndLatency
from ..protocol import default_call
from ..result import ScenarioResult, check_reference
from ..runner import Runner

PLAN = (("p50", 50.0), ("p95", 100.0), ("p99", 200.0))


def run(runner: Runner, p: EndToEndLatency, res: ScenarioResult) -> None:
    """One open-loop phase per (tool, rate)."""
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for tool in p.tools:
        call = default_call(tool)
        for rate in p.rates:
            name = f"{tool}_{rate:g}rps"
            ph = res.add_phase(runner.run(runner.spec(
                name, "open", p.connections, call, p.duration_s, warmup_s=p.warmup_s,
                rate=rate, arrival="poisson"), pairs=p.pairs, blocks=p.blocks))
            check_reference(res, ph)
            lat = ph["latency_ms"]
            table.setdefault(tool, {})[f"{rate:g}"] = {
                k: lat[k] for k in ("p50", "p95", "p99", "max")}
            res.check(f"{name}: error fraction", ph["requests"]["error_fraction"], "==", 0.0)
            res.check(f"{name}: answered requests", lat["count"], ">", 0)
            res.check(f"{name}: no outliers over 1 s", lat["outliers_over_1s"], "==", 0,
                      scope="ci" if rate == min(p.rates) else "full")
            for pct, limit in PLAN:
                res.check(f"{name}: {pct} ms (plan)", lat[pct], "<", limit, scope="full")
    res.analysis["latency_ms_by_tool_and_rate"] = table
    res.notes.append("open loop, Poisson arrivals: latency from each request's intended "
                     "send time")
