"""``python -m benchmarks.load.versus``: the toolserver against the ceiling, in one run.

(a) a bare ``websockets`` echo server (``bare_echo``, the most a one-process Python
server can do) and (b) the toolserver's ``echo`` tool, driven by the *same* closed-loop
client at 1, 10 and 100 connections; prints msg/s of each and the ratio b/a (goal
>= 0.7 at 10 and 100 connections). With ``--metrics-overhead`` it compares instead the
toolserver with metrics on (a) and with ``--no-metrics`` (b): cost = server CPU per
message on/off - 1, the median of round-paired ratios (the throughput cost 1 - on/off is
reported too), goal < 5 %.

Both servers run side by side, pinned to the same core, and the measurements alternate
(a, b, b, a, a, b, ... for several rounds) and take the median per point and the median
of the per-round b/a ratios, so slow drift of the machine (other jobs, thermal) hits both
sides alike. Server CPU time per message is
reported too: on a noisy machine it is steadier than msg/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil

from . import environment
from .api import start_server
from .phase import run_in_process
from .protocol import Call, default_call
from .recorder import Recorder
from .server_process import ServerProcess, pin_generator
from .spec import PhaseSpec

SCHEMA = "benchmarks.load.versus/1"
#: (connections, in flight per connection): the anchors' points (performance-anchors.md)
POINTS: tuple[tuple[int, int], ...] = ((1, 1), (1, 16), (10, 4), (100, 2))
GOAL_RATIO = 0.7
GOAL_METRICS_COST = 0.05


@dataclass
class Side:
    """One server being compared and how to talk to it."""

    label: str
    server: ServerProcess
    call: Call


def measure(side: Side, conns: int, inflight: int, duration_s: float,
            warmup_s: float, rate: float = 0.0) -> dict[str, Any]:
    """One point: msg/s, p50/p99 ms, errors, server CPU µs per message.

    Closed loop by default (msg/s is the figure); with ``rate`` an open loop at that
    offered rate, where both sides handle the same messages and the server CPU per
    message is the figure (steadier than a saturated msg/s on a shared machine).
    """
    spec = PhaseSpec(name=f"{side.label}_{conns}x{inflight}", url=side.server.url,
                     loop="open" if rate > 0 else "closed", connections=conns,
                     inflight=inflight, rate=rate, call=side.call,
                     duration_s=duration_s, warmup_s=warmup_s)
    proc = psutil.Process(side.server.pid)
    c0 = proc.cpu_times()
    t0 = time.perf_counter()
    wire = run_in_process(spec)
    c1 = proc.cpu_times()
    wall = time.perf_counter() - t0
    rec = Recorder()
    rec.merge_wire(wire)
    window = min(wire["window_end"], wire["send_stopped"]) - wire["window_start"]
    msg_s = rec.ok / window if window > 0 else 0.0
    cpu = (c1.user + c1.system) - (c0.user + c0.system)
    lat = rec.latency
    return {
        "msg_s": round(msg_s, 1),
        "p50_ms": lat.get_value_at_percentile(50) / 1000 if rec.ok else None,
        "p99_ms": lat.get_value_at_percentile(99) / 1000 if rec.ok else None,
        "errors": sum(rec.errors.values()) + sum(rec.conn_errors.values()),
        # CPU over the whole phase (incl. warm-up) per message answered in it
        "server_cpu_us_per_msg": round(cpu * 1e6 / max(1, rec.ok) * window / wall, 2)
        if rec.ok else None,
        "generator_cpu_percent": round(100 * rec.cpu_s / wall, 1),
    }


def compare(a: Side, b: Side, points: tuple[tuple[int, int], ...], rounds: int,
            duration_s: float, warmup_s: float, rate: float = 0.0) -> list[dict[str, Any]]:
    """ABAB rounds per point; medians and the ratio b/a."""
    out = []
    for conns, inflight in points:
        runs: dict[str, list[dict[str, Any]]] = {a.label: [], b.label: []}
        for r in range(rounds):
            order = (a, b) if r % 2 == 0 else (b, a)
            for side in order:
                runs[side.label].append(
                    measure(side, conns, inflight, duration_s, warmup_s, rate))
        row: dict[str, Any] = {"connections": conns, "inflight": inflight}
        for side in (a, b):
            rs = runs[side.label]
            row[side.label] = {
                "msg_s_median": statistics.median(x["msg_s"] for x in rs),
                "msg_s_rounds": [x["msg_s"] for x in rs],
                "server_cpu_us_per_msg_median": _median(x["server_cpu_us_per_msg"] for x in rs),
                "server_cpu_us_per_msg_rounds": [x["server_cpu_us_per_msg"] for x in rs],
                "p50_ms_median": _median(x["p50_ms"] for x in rs),
                "p99_ms_median": _median(x["p99_ms"] for x in rs),
                "errors": sum(x["errors"] for x in rs),
                "generator_cpu_percent_median": _median(x["generator_cpu_percent"] for x in rs),
            }
        # paired by round (a and b measured back to back): drift cancels within a pair
        pairs = [(x["msg_s"], y["msg_s"]) for x, y in zip(runs[a.label], runs[b.label],
                                                            strict=True) if x["msg_s"]]
        row["paired_ratio_b_over_a_median"] = round(
            statistics.median(y / x for x, y in pairs), 3) if pairs else None
        cpairs = [(x["server_cpu_us_per_msg"], y["server_cpu_us_per_msg"])
                  for x, y in zip(runs[a.label], runs[b.label], strict=True)
                  if x["server_cpu_us_per_msg"] and y["server_cpu_us_per_msg"]]
        row["paired_cpu_ratio_b_over_a_median"] = round(
            statistics.median(y / x for x, y in cpairs), 3) if cpairs else None
        ma, mb = row[a.label]["msg_s_median"], row[b.label]["msg_s_median"]
        row["ratio_b_over_a"] = round(mb / ma, 3) if ma else None
        ca = row[a.label]["server_cpu_us_per_msg_median"]
        cb = row[b.label]["server_cpu_us_per_msg_median"]
        row["cpu_per_msg_ratio_b_over_a"] = round(cb / ca, 3) if ca and cb else None
        out.append(row)
        print(_row_text(row, a.label, b.label), file=sys.stderr, flush=True)
    return out


def _median(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


def _row_text(row: dict[str, Any], la: str, lb: str) -> str:
    a, b = row[la], row[lb]
    return (f"{row['connections']:>4} conn x{row['inflight']:<3} {la}={a['msg_s_median']:>10,.0f}"
            f" {lb}={b['msg_s_median']:>10,.0f} msg/s  ratio b/a={row['ratio_b_over_a']}"
            f" (paired {row['paired_ratio_b_over_a_median']})"
            f"  cpu µs/msg {a['server_cpu_us_per_msg_median']} / "
            f"{b['server_cpu_us_per_msg_median']}  errors {a['errors']}/{b['errors']}")


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, print the table, write the JSON."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load.versus",
                                 description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--server-python", default=sys.executable,
                    help="Python that runs the toolserver (default: this one)")
    ap.add_argument("--server-pythonpath", action="append", default=[], metavar="DIR")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="extra toolserver argument (both sides)")
    ap.add_argument("--metrics-overhead", action="store_true",
                    help="compare toolserver metrics on (a) vs --no-metrics (b)")
    ap.add_argument("--bare-mode", choices=("raw", "jsonrpc"), default="raw")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--points", default=",".join(f"{c}x{k}" for c, k in POINTS),
                    help="CONNxINFLIGHT list, default %(default)s")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="open loop at this offered msg/s instead of a closed loop "
                         "(compare server CPU per message at equal load)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args(argv)
    points = tuple((int(c), int(k)) for c, k in
                   (p.split("x") for p in args.points.split(",") if p))
    environment.raise_nofile()
    core = None if args.no_pin else 0
    servers: list[ServerProcess] = []
    try:
        echo = default_call("echo")
        if args.metrics_overhead:
            on = start_server(args.server_python, args.server_arg,
                              pythonpath=args.server_pythonpath, core=core)
            servers.append(on)
            off = start_server(args.server_python, [*args.server_arg, "--no-metrics"],
                               pythonpath=args.server_pythonpath, core=core)
            servers.append(off)
            a, b = Side("metrics_on", on, echo), Side("metrics_off", off, echo)
        else:
            bare = ServerProcess(sys.executable, ["--port", "0", "--mode", args.bare_mode],
                                 module="benchmarks.load.bare_echo", core=core)
            bare.start()
            servers.append(bare)
            tool = start_server(args.server_python, args.server_arg,
                                pythonpath=args.server_pythonpath, core=core)
            servers.append(tool)
            bare_call = default_call("raw_echo") if args.bare_mode == "raw" else echo
            a, b = Side("bare", bare, bare_call), Side("toolserver", tool, echo)
        gen = None if args.no_pin else pin_generator(0)
        rows = compare(a, b, points, args.rounds, args.duration, args.warmup, args.rate)
    finally:
        for s in servers:
            s.stop()
    verdict: dict[str, Any] = {}
    if args.metrics_overhead:
        for row in rows:
            on_v, off_v = row["metrics_on"]["msg_s_median"], row["metrics_off"]["msg_s_median"]
            row["metrics_cost"] = round(1 - on_v / off_v, 4) if off_v else None
            con = row["metrics_on"]["server_cpu_us_per_msg_median"]
            coff = row["metrics_off"]["server_cpu_us_per_msg_median"]
            row["metrics_cpu_cost"] = round(con / coff - 1, 4) if con and coff else None
            pr, pc = row["paired_ratio_b_over_a_median"], row["paired_cpu_ratio_b_over_a_median"]
            row["metrics_cost_paired"] = round(1 - 1 / pr, 4) if pr else None
            row["metrics_cpu_cost_paired"] = round(1 / pc - 1, 4) if pc else None
        costs = [r["metrics_cost"] for r in rows if r["metrics_cost"] is not None]
        cpu_costs = [r["metrics_cpu_cost"] for r in rows if r["metrics_cpu_cost"] is not None]
        verdict = {"goal": f"metrics cost < {GOAL_METRICS_COST:.0%}",
                   "max_cost": max(costs) if costs else None,
                   "median_cost": statistics.median(costs) if costs else None,
                   # server CPU per message on/off - 1: steadier on a busy machine
                   "median_cpu_cost": statistics.median(cpu_costs) if cpu_costs else None,
                   "paired_costs": [r["metrics_cost_paired"] for r in rows],
                   "paired_cpu_costs": [r["metrics_cpu_cost_paired"] for r in rows]}
        # judged on server CPU per message, paired by round (back-to-back a/b measurements
        # cancel drift; CPU per message is the cost itself and does not depend on whether
        # the server or the generator saturated first)
        paired = [c for c in verdict["paired_cpu_costs"] if c is not None]
        verdict["judged_cost"] = statistics.median(paired) if paired else None
        verdict["passed"] = verdict["judged_cost"] is not None and \
            verdict["judged_cost"] < GOAL_METRICS_COST
    else:
        judged = [r["ratio_b_over_a"] for r in rows if r["connections"] >= 10]
        # CPU-efficiency ratio (bare CPU per msg / toolserver CPU per msg): what the msg/s
        # ratio would be if both servers had a full core; steadier on a busy machine
        eff = [round(1 / r["cpu_per_msg_ratio_b_over_a"], 3) for r in rows
               if r["connections"] >= 10 and r["cpu_per_msg_ratio_b_over_a"]]
        verdict = {"goal": f"toolserver/bare >= {GOAL_RATIO} at 10 and 100 connections",
                   "min_ratio_10_plus": min(judged) if judged else None,
                   "min_cpu_efficiency_ratio_10_plus": min(eff) if eff else None}
        verdict["passed"] = bool(judged) and min(judged) >= GOAL_RATIO
    doc = {"schema": SCHEMA, "mode": "metrics_overhead" if args.metrics_overhead else "versus",
           "labels": [a.label, b.label], "rounds": args.rounds, "duration_s": args.duration,
           "generator_cores": gen, "loop": "open" if args.rate > 0 else "closed",
           "rate": args.rate or None, "rows": rows, "verdict": verdict,
           "machine": environment.machine(), "versions": environment.versions()}
    loop = f"open loop at {args.rate:g} msg/s" if args.rate > 0 else "closed loop"
    print(f"\n{a.label} (a) vs {b.label} (b), {loop}, median of {args.rounds} "
          f"alternating rounds of {args.duration:g}s")
    for row in rows:
        print(_row_text(row, a.label, b.label) + (
            f"  cost={row['metrics_cost']:.1%} cpu-cost={row['metrics_cpu_cost']}"
            if args.metrics_overhead and row.get("metrics_cost") is not None else ""))
    print("verdict:", json.dumps(verdict))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
