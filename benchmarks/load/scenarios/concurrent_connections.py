"""Scenario 2, concurrent connections: rapid connect, hold many with light traffic, churn,
and the resource check (file descriptors back to baseline, bounded RSS, CPU under 80 %).

The rapid phase runs several rounds; their values are the samples of its figures
(``rapid.connect_wall_ms``, ``rapid.connect_p99_ms``, ``rapid.server_cpu_us_per_session``).

Memory per connection is the server's RSS increase while holding ``hold_n`` sessions
divided by ``hold_n`` (KiB), a figure asv tracks.
"""

from __future__ import annotations

import statistics

from ..profiles import ConcurrentConnections
from ..protocol import Call, default_call
from ..resources import Sample, cpu_s
from ..result import ScenarioResult
from ..runner import Runner


def run(runner: Runner, p: ConcurrentConnections, res: ScenarioResult) -> None:
    """rapid -> hold -> churn, with resource readings between them."""
    echo = default_call("echo")
    _rapid(runner, p, res, echo)
    base = _hold(runner, p, res, echo)
    _churn(runner, p, res, echo, base)


def _rapid(runner: Runner, p: ConcurrentConnections, res: ScenarioResult,
           echo: Call) -> None:
    # 1. rapid: all handshakes at once, no traffic; the wall time until all are ready.
    #    Repeated ``rapid_rounds`` times (connect all, hold briefly, close all, settle):
    #    one round is a single value with 16 % run-to-run spread, too noisy for asv to
    #    judge; the rounds are its samples, and the server CPU per session (handshake,
    #    initialize, close) summed over all rounds is steady enough to name a slower
    #    handshake.
    walls: list[float] = []
    p99s: list[float] = []
    cpus: list[float] = []
    opened: list[int] = []
    sampler = runner.sampler
    for _ in range(p.rapid_rounds):
        before = sampler.mark() if sampler else None
        rapid = res.add_phase(runner.run(runner.spec(
            "rapid", "open", p.rapid_n, echo, 0.2, connect_concurrency=p.rapid_n)))
        runner.settle(p.rapid_settle_s)  # the closes are part of a session's cost
        after = sampler.mark() if sampler else None
        opened.append(rapid["connections"]["opened"])
        walls.append(round(rapid["connections"]["connect_wall_s"] * 1000, 3))
        if rapid["connect_ms"]["p99"] is not None:
            p99s.append(rapid["connect_ms"]["p99"])
        if before is not None and after is not None and rapid["connections"]["opened"]:
            used = cpu_s(after) - cpu_s(before)
            if used >= 0:  # not across a restart
                cpus.append(round(used * 1e6 / rapid["connections"]["opened"], 2))
    wall_ms = statistics.median(walls)
    res.metrics["rapid.connect_wall_ms"] = wall_ms
    res.metrics["rapid.connect_p99_ms"] = statistics.median(p99s) if p99s else None
    res.metrics["rapid.server_cpu_us_per_session"] = statistics.median(cpus) if cpus \
        else None
    for name, values in (("rapid.connect_wall_ms", walls), ("rapid.connect_p99_ms", p99s),
                         ("rapid.server_cpu_us_per_session", cpus)):
        if len(values) >= 2:
            res.metric_samples[name] = values
        else:
            res.metric_samples.pop(name, None)
    res.analysis["rapid_rounds"] = {"rounds": p.rapid_rounds, "connect_wall_ms": walls,
                                    "connect_p99_ms": p99s,
                                    "server_cpu_us_per_session": cpus}
    res.check(f"rapid: {p.rapid_n} connections opened (fewest in a round)", min(opened),
              ">=", p.rapid_n)
    res.check(f"rapid: {p.rapid_n} connections established (ms, median round)", wall_ms,
              "<", 3000.0, note="generous CI bound; the plan's 1 s is the full criterion")
    res.check(f"rapid: {p.rapid_n} connections established in under 1 s (ms, plan)",
              max(walls), "<", 1000.0, scope="full")


def _hold(runner: Runner, p: ConcurrentConnections, res: ScenarioResult,
          echo: Call) -> Sample | None:
    """Returns the resource reading taken before the sessions opened."""
    # 2. hold: many sessions with light open-loop traffic.
    sampler = runner.sampler
    runner.settle(0.5)
    base = sampler.mark() if sampler else None
    hold = res.add_phase(runner.run(runner.spec(
        "hold", "open", p.hold_n, echo, p.hold_s, rate=p.hold_n * p.hold_rate_per_conn,
        arrival="poisson", connect_concurrency=200, connect_timeout_s=30.0)))
    srv = hold.get("server", {})
    per_conn = None
    if base is not None and srv.get("rss_kib_max") is not None:
        per_conn = round((srv["rss_kib_max"] - base[3] / 1024) / p.hold_n, 3)
    res.metrics["hold.rss_kib_per_connection"] = per_conn
    res.analysis["memory_per_connection_kib"] = per_conn
    # "1000 clients held for 10 minutes": sessions that never opened or closed under us
    res.metrics["hold.connections_lost"] = (p.hold_n - hold["connections"]["opened"]
                                            + sum(hold["connection_errors"].values()))
    res.check(f"hold: {p.hold_n} connections opened", hold["connections"]["opened"],
              ">=", p.hold_n)
    res.check("hold: error fraction", hold["requests"]["error_fraction"], "==", 0.0)
    res.check("hold: no unexpected connection errors",
              sum(hold["connection_errors"].values()), "==", 0)
    res.check("hold: server CPU % under light traffic", srv.get("cpu_percent_mean"), "<",
              80.0)
    return base


def _churn(runner: Runner, p: ConcurrentConnections, res: ScenarioResult,
           echo: Call, base: Sample | None) -> None:
    # 3. churn, between two resource readings taken after the server settled.
    sampler = runner.sampler
    runner.settle(p.settle_s)
    before = sampler.mark() if sampler else None
    churn = res.add_phase(runner.run(runner.spec(
        "churn", "churn", p.churn_concurrency, echo, p.churn_s)))
    runner.settle(p.settle_s)
    after = sampler.mark() if sampler else None
    cycles_s = round(churn["connections"]["opened"] / max(1e-9, churn["window_s"]), 1)
    res.metrics["churn.cycles_per_s"] = cycles_s
    res.check("churn: error fraction", churn["requests"]["error_fraction"], "<=", 0.001)
    res.check("churn: cycles completed", churn["requests"]["ok"], ">", 0)
    if before is not None and after is not None:
        fd_delta = after[4] - before[4]
        rss_delta_kib = (after[3] - before[3]) // 1024
        res.metrics["churn.fd_delta"] = fd_delta
        res.metrics["churn.rss_delta_kib"] = rss_delta_kib
        # Per connection that came and went: a leak per connection is constant per cycle,
        # while the total grows with the cycles the host's speed allowed in churn_s (a
        # leak already in the history then swings the total by 30 % between commits).
        cycles = churn["connections"]["opened"]
        res.metrics["churn.rss_kib_per_cycle"] = (
            round(rss_delta_kib / cycles, 4) if cycles else None)
        res.analysis["resources"] = {
            "fds_before_churn": before[4], "fds_after_churn": after[4],
            "rss_kib_before_churn": before[3] // 1024, "rss_kib_after_churn": after[3] // 1024,
            "fds_at_start": base[4] if base else None,
        }
        res.check("churn: file descriptors back to baseline (delta)", fd_delta, "<=", 3)
        res.check("churn: RSS growth bounded (KiB)", rss_delta_kib, "<", 32 * 1024)
    else:
        res.notes.append("no server PID: resource checks skipped")
