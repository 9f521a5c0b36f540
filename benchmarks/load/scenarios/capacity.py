"""Breaking points: the highest offered rate each tool sustains within the plan's limits.

For every tool and client count the scenario offers open-loop (Poisson) load in steps:
from the tool's start rate it multiplies (or divides) the rate by ``step_factor`` until
one step passes and the next fails, then bisects that bracket geometrically. A step
*passes* when its p99 (from the intended send time: no coordinated omission) is under
``p99_limit_ms`` and its errors under ``max_error_fraction``; the capacity is the highest
passing rate. The lowest failing rate says **what fails first** past it:

* ``latency``: p99 over the limit (replies queue up; timeouts count here too);
* ``busy rejections``: the server's in-flight caps answer ``-32001 server busy``;
* ``breaker``: a provider's circuit breaker is open (``tool:circuit_open``);
* ``connections``: sessions refused or closed (``--max-connections``, a crash);
* ``memory``: the server's RSS went over ``max_rss_mib``;
* ``instrument``: the load generator fell behind its own schedule (send lag p99 over
  ``max_send_lag_ms``) while using a whole core (``generator_busy_percent``) — then the
  figure is the instrument's ceiling, a lower bound of the server's capacity, and the
  result says so (``bound``);
* ``host``: the generator fell behind *without* being busy: the machine did not run it
  (other tenants). Such a step says nothing about the server, which is why a near miss
  is run again (``retries``) and fails only when every run fails — a stall only ever
  makes a step slower, so the best run is the server's.

Each step is its own phase (fresh connections), so a failed step's backlog never leaks
into the next one; ``rest_s`` after a failed step lets the server drain. The search for
the next client count of a tool starts at the capacity just found. The whole scenario has
a time budget (``budget_s``), shared equally by the searches still to run: on a slow host
a search stops early with a coarser bracket (``truncated``) rather than stretching the
run (connecting 1000 sessions took 1.3 s on a quiet machine and 17 s on a loaded one).

asv tracks ``1e6 / capacity`` (µs per message at capacity; lower is better). Every step
is kept in ``analysis["capacity"]`` for the knee plot (latency against offered load,
``scheduler/publish/knee.py``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..profiles import Capacity
from ..protocol import KIND_BUSY, KIND_CIRCUIT_OPEN, KIND_TIMEOUT, Call, default_call
from ..result import ScenarioResult
from ..runner import Runner

LATENCY = "latency"
BUSY = "busy rejections"
BREAKER = "breaker"
CONNECTIONS = "connections"
MEMORY = "memory"
INSTRUMENT = "instrument"
HOST = "host"


@dataclass
class Search:
    """The outcome of one search: the bracket and every step in the order run."""

    capacity: float | None          # highest passing rate (None: even min_rate failed)
    first_fail: float | None        # lowest failing rate (None: max_rate passed)
    steps: list[tuple[float, bool]] = field(default_factory=list)
    truncated: bool = False         # stopped by its time budget before the last bisection


def search(probe: Callable[[float], bool], start: float, *, factor: float,
           bisections: int, min_rate: float, max_rate: float,
           more: Callable[[], bool] = lambda: True) -> Search:
    """Step by ``factor`` from ``start`` to a pass/fail bracket, then bisect it.

    ``probe(rate)`` runs one step and says whether it passed; ``more()`` says whether
    the time budget allows another step (the first always runs). Pure control flow (the
    unit tests drive it with a synthetic probe)."""
    out = Search(None, None)

    def step(rate: float) -> bool | None:
        if out.steps and not more():
            out.truncated = True
            return None
        ok = probe(rate)
        out.steps.append((rate, ok))
        return ok

    rate = min(max(start, min_rate), max_rate)
    lo: float | None = None
    hi: float | None = None
    if step(rate):
        lo = rate
        while hi is None and lo < max_rate and not out.truncated:
            nxt = min(lo * factor, max_rate)
            ok = step(nxt)
            if ok:
                lo = nxt
            elif ok is not None:
                hi = nxt
    else:
        hi = rate
        while lo is None and hi > min_rate and not out.truncated:
            nxt = max(hi / factor, min_rate)
            ok = step(nxt)
            if ok:
                lo = nxt
            elif ok is not None:
                hi = nxt
    if lo is not None and hi is not None:
        for _ in range(bisections):
            mid = round(math.sqrt(lo * hi), 1)
            if not lo < mid < hi:
                break
            ok = step(mid)
            if ok is None:
                break
            if ok:
                lo = mid
            else:
                hi = mid
    out.capacity, out.first_fail = lo, hi
    return out


def judge_step(ph: dict[str, Any], p: Capacity) -> list[str]:
    """What failed in one step's phase (empty: it passed), most telling first."""
    fails: list[str] = []
    lat = ph["latency_ms"]
    errors: dict[str, int] = ph.get("errors", {})
    ef = ph["requests"]["error_fraction"]
    if ef is not None and ef >= p.max_error_fraction and errors:
        kind = max(errors, key=lambda k: errors[k])
        if kind == KIND_BUSY:
            fails.append(BUSY)
        elif kind == KIND_CIRCUIT_OPEN:
            fails.append(BREAKER)
        elif kind == KIND_TIMEOUT:
            fails.append(LATENCY)
        elif kind.startswith(("close:", "no_connection")):
            fails.append(CONNECTIONS)
        else:
            fails.append(f"errors ({kind})")
    lost = ph["connections"]["failed"] or sum(ph.get("connection_errors", {}).values())
    if lost and CONNECTIONS not in fails:
        fails.append(CONNECTIONS)
    if (lat["p99"] is None or lat["p99"] >= p.p99_limit_ms) and LATENCY not in fails:
        fails.append(LATENCY)
    rss = ph.get("server", {}).get("rss_kib_max")
    if rss is not None and rss / 1024 > p.max_rss_mib:
        fails.append(MEMORY)
    return fails


def step_record(ph: dict[str, Any], rate: float, fails: list[str],
                p: Capacity) -> dict[str, Any]:
    """The figures of one step kept for the table and the knee plot."""
    lat = ph["latency_ms"]
    srv = ph.get("server", {})
    lag = ph.get("send_lag_ms", {}).get("p99")
    rss = srv.get("rss_kib_max")
    top = sorted(ph.get("errors", {}).items(), key=lambda kv: -kv[1])[:3]
    return {
        "offered_msg_s": rate, "achieved_msg_s": ph.get("achieved_rate_msg_s"),
        "ok_msg_s": ph["throughput_msg_s"], "p50_ms": lat["p50"], "p95_ms": lat["p95"],
        "p99_ms": lat["p99"], "max_ms": lat["max"],
        "error_fraction": ph["requests"]["error_fraction"], "errors": dict(top),
        "send_lag_p99_ms": lag, "server_cpu_percent": srv.get("cpu_percent_mean"),
        "server_rss_mib": round(rss / 1024, 1) if rss is not None else None,
        "generator_cpu_percent": ph["generator"].get("cpu_percent"),
        "passed": not fails, "fails": fails,
        "generator_behind": lag is not None and lag > p.max_send_lag_ms,
        "generator_busy": (ph["generator"].get("cpu_percent") or 0) >= p.generator_busy_percent,
    }


def _step(runner: Runner, p: Capacity, res: ScenarioResult, call: Call, clients: int,
          steps: list[dict[str, Any]], more: Callable[[], bool], rate: float) -> bool:
    """One step of a search: a phase at ``rate`` (again on failure, ``retries`` times
    while the budget allows), judged and recorded; True if a run passed."""
    name = f"capacity-{call.tool}-{clients}"
    for attempt in range(p.retries + 1):
        if attempt and not more():
            break
        ph = runner.run(runner.spec(
            name, "open", clients, call, p.step_s, warmup_s=p.warmup_s, rate=rate,
            arrival="poisson", timeout_s=p.timeout_s,
            connect_concurrency=p.connect_concurrency, connect_timeout_s=30.0))
        fails = judge_step(ph, p)
        res.phases.append(ph)  # not add_phase: the steps' figures are not asv figures
        record = step_record(ph, rate, fails, p)
        record["attempt"] = attempt + 1
        steps.append(record)
        runner.say(f"{name}: {rate:,.0f} msg/s offered -> p99 "
                   f"{_fmt(ph['latency_ms']['p99'])} ms, errors "
                   f"{100 * (ph['requests']['error_fraction'] or 0):.2f} %: "
                   + (", ".join(fails) if fails else "pass")
                   + (f" (run {attempt + 1})" if attempt else ""))
        if not fails:
            return True
        runner.settle(p.rest_s)
        p99 = ph["latency_ms"]["p99"]
        if fails != [LATENCY] or p99 is None or p99 >= p.retry_below * p.p99_limit_ms:
            break  # not a near miss: far past the knee, or errors
    return False


def run(runner: Runner, p: Capacity, res: ScenarioResult) -> None:
    """Search every tool x client count; record capacity, first failure and every step."""
    table: dict[str, dict[str, Any]] = {}
    t_end = time.perf_counter() + p.budget_s
    left = len(p.tools) * len(p.clients)
    for i, tool in enumerate(p.tools):
        start = p.start_rates[min(i, len(p.start_rates) - 1)]
        call = default_call(tool)
        for clients in p.clients:
            steps: list[dict[str, Any]] = []
            name = f"capacity-{tool}-{clients}"
            # an equal share of what is left of the budget: a slow host coarsens the
            # searches (and says so) instead of stretching the run
            t0 = time.perf_counter()
            deadline = t0 + max(0.0, t_end - t0) / left
            left -= 1

            def more(_deadline: float = deadline) -> bool:
                return time.perf_counter() < _deadline

            probe = functools.partial(_step, runner, p, res, call, clients, steps, more)
            found = search(probe, start, factor=p.step_factor, bisections=p.bisections,
                           min_rate=p.min_rate, max_rate=p.max_rate, more=more)
            entry = _entry(found, steps, p)
            entry["search_s"] = round(time.perf_counter() - t0, 1)
            entry["truncated"] = found.truncated
            table.setdefault(tool, {})[str(clients)] = entry
            key = f"capacity.{tool}.{clients}"
            cap = found.capacity
            res.metrics[f"{key}.msg_s"] = cap
            res.metrics[f"{key}.us_per_msg"] = round(1e6 / cap, 3) if cap else None
            res.metrics[f"{key}.first_fail_msg_s"] = found.first_fail
            res.check(f"capacity {tool} x {clients} clients: a bracket was found",
                      1.0 if cap is not None and found.first_fail is not None else 0.0,
                      "==", 1.0, scope="info",
                      note=f"fails first: {', '.join(entry['fails_first']) or '-'}")
            runner.say(f"{name}: capacity {_fmt(cap, 0)} msg/s (first failure at "
                       f"{_fmt(found.first_fail, 0)}: {', '.join(entry['fails_first']) or '-'}"
                       f"; {len(steps)} steps in {entry['search_s']:.0f} s"
                       + (", stopped by the time budget" if found.truncated else "") + ")")
            if cap:
                start = cap
    res.analysis["capacity"] = {"p99_limit_ms": p.p99_limit_ms,
                                "max_error_fraction": p.max_error_fraction,
                                "resolution": round(p.step_factor ** (1 / 2 ** p.bisections), 4),
                                "tools": table}


def _entry(found: Search, steps: list[dict[str, Any]], p: Capacity) -> dict[str, Any]:
    # the last run at the first failing rate (every run there failed)
    fail_step = next((s for s in reversed(steps) if s["offered_msg_s"] == found.first_fail),
                     None)
    fails_first = list(fail_step["fails"]) if fail_step else []
    bound = "server"
    if fail_step and fail_step["generator_behind"]:
        if fail_step["generator_busy"]:
            fails_first.append(INSTRUMENT)
            bound = "instrument"
        else:
            fails_first.append(HOST)
    if found.truncated and (found.first_fail is None or found.capacity is None):
        bound = "budget"     # the time budget ended the search before a bracket
    elif found.first_fail is None:
        bound = "max_rate"   # max_rate passed: the capacity is at least this
    elif found.capacity is None:
        bound = "min_rate"   # even min_rate failed
    return {"capacity_msg_s": found.capacity, "first_fail_msg_s": found.first_fail,
            "fails_first": fails_first, "bound": bound,
            "steps": sorted(steps, key=lambda s: (s["offered_msg_s"], s["attempt"])),
            "order": [s for s, _ok in found.steps]}


def _fmt(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"
