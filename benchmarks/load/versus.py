"""``python -m benchmarks.load.versus``: the toolserver against the ceiling, in one run.

(a) a bare ``websockets`` echo server (``bare_echo``, the most a one-process Python
server can do) and (b) the toolserver's ``echo`` tool, driven by the *same* closed-loop
client at 1, 10 and 100 connections; prints msg/s of each and the ratio b/a (goal
>= 0.7 at 10 and 100 connections). With ``--metrics-overhead`` it compares instead the
toolserver with metrics on (a) and with ``--no-metrics`` (b): cost = server CPU per
message on/off - 1, the median of round-paired ratios (the throughput cost 1 - on/off is
reported too), goal < 5 %.

With ``--commits A B`` it compares two commits of the toolserver instead: each side
imports the server from a ``git worktree`` of its commit (the load generator is this
checkout's, as in every benchmark), and the verdict is the median of the round-paired
server-CPU-per-message ratios b/a with a sign test over the rounds; exit 1 when b costs
more than ``--threshold`` and the sign test says it is not chance. Comparing inside one
run is what a shared machine needs: the host's slow and fast minutes hit both sides of
every pair alike, where two separate runs can differ by 30 % on the same code.

Both servers run side by side, pinned to the same core, and the measurements alternate
(a, b, b, a, a, b, ... for several rounds) and take the median per point and the median
of the per-round b/a ratios, so slow drift of the machine (other jobs, thermal) hits both
sides alike. Server CPU time per message is
reported too: on a noisy machine it is steadier than msg/s.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import environment
from .api import start_server
from .phase import run_in_process
from .protocol import Call, default_call
from .recorder import Recorder
from .resources import ResourceSampler, cpu_s
from .server_process import REPO_ROOT, ServerProcess, pin_generator
from .spec import PhaseSpec

SCHEMA = "benchmarks.load.versus/1"
#: (connections, in flight per connection): the anchors' points (performance-anchors.md)
POINTS: tuple[tuple[int, int], ...] = ((1, 1), (1, 16), (10, 4), (100, 2))
GOAL_RATIO = 0.7
GOAL_METRICS_COST = 0.05
#: --commits: one point like LoadPerformance at 10 clients (closed loop, one in flight)
COMMIT_POINTS: tuple[tuple[int, int], ...] = ((10, 1),)
#: ``inflight`` of a churn point: each of ``connections`` loops connects, initializes,
#: makes one call and closes, again and again ("churn10" on the command line), so the
#: server CPU per message is its CPU per connection served.
CHURN = 0


def point_name(conns: int, inflight: int) -> str:
    """``10x1`` for a closed (or open) loop point, ``churn10`` for a churn point."""
    return f"churn{conns}" if inflight == CHURN else f"{conns}x{inflight}"


def parse_points(text: str) -> tuple[tuple[int, int], ...]:
    """``CONNxINFLIGHT`` and ``churnCONN`` items, comma-separated."""
    out = []
    for item in (p.strip() for p in text.split(",") if p.strip()):
        m = re.fullmatch(r"(\d+)x(\d+)|churn(\d+)", item)
        if not m or int(m.group(1) or m.group(3)) < 1 or m.group(2) == "0":
            raise ValueError(f"bad point {item!r} (want CONNxINFLIGHT or churnCONN)")
        out.append((int(m.group(3)), CHURN) if m.group(3) else
                   (int(m.group(1)), int(m.group(2))))
    return tuple(out)


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
    message is the figure (steadier than a saturated msg/s on a shared machine). A churn
    point (``inflight`` :data:`CHURN`) answers one message per connection, so its figures
    are per connection: handshake, initialize, call and close.
    """
    churn = inflight == CHURN
    spec = PhaseSpec(name=f"{side.label}_{point_name(conns, inflight)}", url=side.server.url,
                     loop="churn" if churn else "open" if rate > 0 else "closed",
                     connections=conns, inflight=max(1, inflight),
                     rate=0.0 if churn else rate, call=side.call,
                     duration_s=duration_s, warmup_s=warmup_s)
    # Not started: marks only, read from the process CPU clock (ns) when it is readable.
    sampler = ResourceSampler(side.server.pid)
    s0 = sampler.mark()
    t0 = time.perf_counter()
    wire = run_in_process(spec)
    s1 = sampler.mark()
    wall = time.perf_counter() - t0
    if s0 is None or s1 is None:
        raise RuntimeError(f"{side.label}: server process {side.server.pid} went away")
    rec = Recorder()
    rec.merge_wire(wire)
    window = min(wire["window_end"], wire["send_stopped"]) - wire["window_start"]
    msg_s = rec.ok / window if window > 0 else 0.0
    cpu = cpu_s(s1) - cpu_s(s0)
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
        # server CPU / load-generator CPU over the same messages: the generator never
        # changes, and the host's slow seconds inflate both (see docs/BENCHMARKS.md)
        "relative_cpu": round(cpu / rec.cpu_s, 4) if rec.ok and rec.cpu_s > 0 else None,
    }


def sign_test_p(higher: int, n: int) -> float:
    """One-sided sign test: the chance of ``higher`` or more of ``n`` rounds going one way
    when each way is equally likely."""
    return sum(math.comb(n, k) for k in range(higher, n + 1)) / 2 ** n if n else 1.0


@contextmanager
def commit_checkouts(repo: Path, commits: list[str], *,
                     parent: Path | None = None) -> Iterator[list[tuple[str, Path]]]:
    """``git worktree`` checkouts of ``commits`` (short hash, ``src`` dir), removed after;
    under ``parent`` when given (a caller that may have to clean up after a kill)."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="versus-commits-", dir=parent))
    made: list[Path] = []
    try:
        out = []
        for i, commit in enumerate(commits):
            sha = _git(repo, "rev-parse", "--verify", f"{commit}^{{commit}}")
            path = tmp / f"{'ab'[i]}-{sha[:8]}"
            _git(repo, "worktree", "add", "--detach", "--quiet", str(path), sha)
            made.append(path)
            if not (path / "src" / "toolserver").is_dir():
                raise SystemExit(f"versus: commit {commit} has no src/toolserver")
            out.append((sha[:8], path / "src"))
        yield out
    finally:
        for path in made:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force",
                            str(path)], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"versus: git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def commit_verdict(rows: list[dict[str, Any]], threshold: float,
                   alpha: float) -> dict[str, Any]:
    """b against a per point: the paired CPU ratio, how many rounds b cost more, and
    whether that is a regression (ratio beyond the threshold and unlikely by chance)."""
    points = []
    for row in rows:
        ratios = row["paired_cpu_ratios"]
        higher = sum(r > 1 for r in ratios)
        p = sign_test_p(higher, len(ratios))
        ratio = statistics.median(ratios) if ratios else None
        points.append({
            "point": point_name(row["connections"], row["inflight"]),
            "paired_cpu_ratio_b_over_a": round(ratio, 4) if ratio else None,
            "round_ratios": ratios,
            "b_higher_rounds": higher, "rounds": len(ratios), "sign_test_p": round(p, 4),
            "regression": ratio is not None and ratio > 1 + threshold and p < alpha,
        })
    return {"goal": f"server CPU per message of b within +{threshold:.0%} of a "
                    f"(sign test alpha {alpha:g})",
            "points": points, "passed": not any(p["regression"] for p in points)}


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
                "relative_cpu_rounds": [x["relative_cpu"] for x in rs],
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
        cratios = [y["server_cpu_us_per_msg"] / x["server_cpu_us_per_msg"]
                   for x, y in zip(runs[a.label], runs[b.label], strict=True)
                   if x["server_cpu_us_per_msg"] and y["server_cpu_us_per_msg"]]
        row["paired_cpu_ratios"] = [round(r, 4) for r in cratios]
        row["paired_cpu_ratio_b_over_a_median"] = round(
            statistics.median(cratios), 3) if cratios else None
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
    return (f"{point_name(row['connections'], row['inflight']):>9} {la}={a['msg_s_median']:>10,.0f}"
            f" {lb}={b['msg_s_median']:>10,.0f} msg/s  ratio b/a={row['ratio_b_over_a']}"
            f" (paired {row['paired_ratio_b_over_a_median']})"
            f"  cpu µs/msg {a['server_cpu_us_per_msg_median']} / "
            f"{b['server_cpu_us_per_msg_median']}  errors {a['errors']}/{b['errors']}")


def _run(args: argparse.Namespace, points: tuple[tuple[int, int], ...], core: int | None,
         checkouts: list[tuple[str, Path]]) -> tuple[list[dict[str, Any]], Side, Side, Any]:
    """Start the two sides of the chosen comparison, alternate them, stop them."""
    servers: list[ServerProcess] = []
    try:
        call = default_call(args.tool)
        if checkouts:
            sides = []
            for label, src in checkouts:
                server = start_server(args.server_python, args.server_arg,
                                      pythonpath=[str(src), *args.server_pythonpath],
                                      core=core)
                servers.append(server)
                sides.append(Side(label, server, call))
            a, b = sides
            if a.label == b.label:
                b = Side(b.label + "'", b.server, call)
        elif args.metrics_overhead:
            on = start_server(args.server_python, args.server_arg,
                              pythonpath=args.server_pythonpath, core=core)
            servers.append(on)
            off = start_server(args.server_python, [*args.server_arg, "--no-metrics"],
                               pythonpath=args.server_pythonpath, core=core)
            servers.append(off)
            a, b = Side("metrics_on", on, call), Side("metrics_off", off, call)
        else:
            bare = ServerProcess(sys.executable, ["--port", "0", "--mode", args.bare_mode],
                                 module="benchmarks.load.bare_echo", core=core)
            bare.start()
            servers.append(bare)
            tool = start_server(args.server_python, args.server_arg,
                                pythonpath=args.server_pythonpath, core=core)
            servers.append(tool)
            bare_call = default_call("raw_echo") if args.bare_mode == "raw" else call
            a, b = Side("bare", bare, bare_call), Side("toolserver", tool, call)
        gen = None if args.no_pin else pin_generator(0)
        return compare(a, b, points, args.rounds, args.duration, args.warmup, args.rate), \
            a, b, gen
    finally:
        for server in servers:
            server.discard()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load.versus",
                                 description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--server-python", default=sys.executable,
                    help="Python that runs the toolserver (default: this one)")
    ap.add_argument("--server-pythonpath", action="append", default=[], metavar="DIR")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="extra toolserver argument (both sides)")
    ap.add_argument("--metrics-overhead", action="store_true",
                    help="compare toolserver metrics on (a) vs --no-metrics (b)")
    ap.add_argument("--commits", nargs=2, metavar=("A", "B"),
                    help="compare the toolserver at commit A (a) with commit B (b), each "
                         "from a git worktree; default point 10x1, 10 rounds, echo")
    ap.add_argument("--repo", type=Path, default=REPO_ROOT,
                    help="repository of --commits (default: this checkout)")
    ap.add_argument("--worktree-dir", type=Path, default=None, metavar="DIR",
                    help="--commits: put the worktrees under DIR (default: a new temporary "
                         "directory)")
    ap.add_argument("--tool", default="echo", help="tool called (default %(default)s)")
    ap.add_argument("--threshold", type=float, default=0.05,
                    help="--commits: regression when b's paired CPU per message exceeds "
                         "a's by more than this (default %(default)s)")
    ap.add_argument("--alpha", type=float, default=0.05,
                    help="--commits: significance of the sign test (default %(default)s)")
    ap.add_argument("--bare-mode", choices=("raw", "jsonrpc"), default="raw")
    ap.add_argument("--rounds", type=int, default=None,
                    help="alternating rounds per point (default 3; --commits: 10)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--points", default=None,
                    help="comma-separated CONNxINFLIGHT (closed or open loop) or churnCONN "
                         "(connect, initialize, one call, close, repeated) points; default "
                         f"{','.join(point_name(c, k) for c, k in POINTS)}; --commits: "
                         f"{','.join(point_name(c, k) for c, k in COMMIT_POINTS)}")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="open loop at this offered msg/s instead of a closed loop "
                         "(compare server CPU per message at equal load)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--no-pin", action="store_true")
    return ap


def _metrics_verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """--metrics-overhead: what metrics cost, per row and judged (fills the rows' costs)."""
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
    verdict: dict[str, Any] = {
        "goal": f"metrics cost < {GOAL_METRICS_COST:.0%}",
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
    return verdict


def _versus_verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Bare server against toolserver: the throughput ratio at 10 connections and more."""
    judged = [r["ratio_b_over_a"] for r in rows if r["connections"] >= 10]
    # CPU-efficiency ratio (bare CPU per msg / toolserver CPU per msg): what the msg/s
    # ratio would be if both servers had a full core; steadier on a busy machine
    eff = [round(1 / r["cpu_per_msg_ratio_b_over_a"], 3) for r in rows
           if r["connections"] >= 10 and r["cpu_per_msg_ratio_b_over_a"]]
    verdict: dict[str, Any] = {
        "goal": f"toolserver/bare >= {GOAL_RATIO} at 10 and 100 connections",
        "min_ratio_10_plus": min(judged) if judged else None,
        "min_cpu_efficiency_ratio_10_plus": min(eff) if eff else None}
    verdict["passed"] = bool(judged) and min(judged) >= GOAL_RATIO
    return verdict


def _print_report(args: argparse.Namespace, rows: list[dict[str, Any]],
                  verdict: dict[str, Any], a: str, b: str) -> None:
    loop = f"open loop at {args.rate:g} msg/s" if args.rate > 0 else "closed loop"
    print(f"\n{a} (a) vs {b} (b), {loop}, median of {args.rounds} "
          f"alternating rounds of {args.duration:g}s")
    for row in rows:
        print(_row_text(row, a, b) + (
            f"  cost={row['metrics_cost']:.1%} cpu-cost={row['metrics_cpu_cost']}"
            if args.metrics_overhead and row.get("metrics_cost") is not None else ""))
    for pt in verdict.get("points", []) if args.commits else []:
        print(f"{pt['point']}: server CPU per message b/a = {pt['paired_cpu_ratio_b_over_a']}"
              f" (median of {pt['rounds']} paired rounds; b higher in {pt['b_higher_rounds']}"
              f", sign test p={pt['sign_test_p']:.3g})"
              + ("  REGRESSION" if pt["regression"] else ""))
    print("verdict:", json.dumps(verdict))


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, print the table, write the JSON."""
    ap = _parser()
    args = ap.parse_args(argv)
    if args.commits and args.metrics_overhead:
        ap.error("--commits and --metrics-overhead are different comparisons")
    if args.rounds is None:
        args.rounds = 10 if args.commits else 3
    if args.points is None:
        args.points = ",".join(point_name(c, k) for c, k in (COMMIT_POINTS if args.commits
                                                                else POINTS))
    try:
        points = parse_points(args.points)
    except ValueError as exc:
        ap.error(str(exc))
    environment.raise_nofile()
    # SIGTERM (the scheduler stopping) unwinds like Ctrl-C: servers stopped, worktrees removed
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    core = None if args.no_pin else 0
    with commit_checkouts(args.repo, args.commits or [], parent=args.worktree_dir) as checkouts:
        rows, a, b, gen = _run(args, points, core, checkouts)
    if args.commits:
        verdict = commit_verdict(rows, args.threshold, args.alpha)
    elif args.metrics_overhead:
        verdict = _metrics_verdict(rows)
    else:
        verdict = _versus_verdict(rows)
    mode = "commits" if args.commits else (
        "metrics_overhead" if args.metrics_overhead else "versus")
    doc = {"schema": SCHEMA, "mode": mode, "tool": args.tool,
           "labels": [a.label, b.label], "rounds": args.rounds, "duration_s": args.duration,
           "generator_cores": gen, "loop": "open" if args.rate > 0 else "closed",
           "rate": args.rate or None, "rows": rows, "verdict": verdict,
           "machine": environment.machine(), "versions": environment.versions()}
    _print_report(args, rows, verdict, a.label, b.label)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 1 if args.commits and not verdict["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
