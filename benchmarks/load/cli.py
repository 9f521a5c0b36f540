"""``python -m benchmarks.load``: run a scenario, print the table, write the JSON.

Exit status: 0 after a completed run (criteria verdicts are *in* the JSON, so asv
wrappers get their figures even when a target is missed); 1 with ``--check`` when a
criterion failed; 2 when the run could not be made (bad arguments, server did not start).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from . import profiles
from .api import run_scenario
from .result import table, write_json
from .scenarios.registry import ALL, SCENARIOS

EPILOG = """\
examples:
  # against a running server
  python -m benchmarks.load --scenario load_performance --profile quick --url ws://127.0.0.1:8079
  # start the server from a Python (pinned to core 0, generator on the others)
  python -m benchmarks.load --scenario overload_recovery --profile smoke \\
      --server-python .venv/bin/python --server-pythonpath src --json /tmp/o.json
  # all scenarios, one JSON per scenario
  python -m benchmarks.load --scenario all --profile quick --server-python .venv/bin/python \\
      --server-pythonpath src --json '/tmp/load-{scenario}.json'
  # one phase, e.g. the generator against the bare echo server
  python -m benchmarks.load --scenario adhoc --url ws://127.0.0.1:PORT \\
      --set tool=raw_echo --set connections=100 --set inflight=2 --set duration_s=5
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate so ``--help`` can be tested)."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description="Load generator and test-plan scenarios for the MCP-over-WebSocket "
                    "toolserver. Writes one JSON document per scenario (schema "
                    "benchmarks.load/1, see benchmarks/load/result.py) and prints a table.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", required=True, choices=[*SCENARIOS, "all"])
    ap.add_argument("--profile", default=os.environ.get("BENCH_PROFILE", "smoke"),
                    choices=profiles.PROFILES, help="default $BENCH_PROFILE or smoke")
    tgt = ap.add_argument_group("target (exactly one of --url / --server-python)")
    tgt.add_argument("--url", help="ws://127.0.0.1:PORT of a running server")
    tgt.add_argument("--server-pid", type=int,
                     help="PID of that server, for resource sampling (psutil)")
    tgt.add_argument("--token", default=os.environ.get("TOOLSERVER_TOKEN"),
                     help="bearer token (default $TOOLSERVER_TOKEN)")
    tgt.add_argument("--server-python", metavar="PATH",
                     help="start PATH -m toolserver serve --port 0 ... for each scenario "
                          "and stop it at the end (needed for the restart test)")
    tgt.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                     help="extra argument for the started server (repeat; use =: "
                          "--server-arg=--no-metrics)")
    tgt.add_argument("--server-pythonpath", action="append", default=[], metavar="DIR",
                     help="prepend DIR to the started server's PYTHONPATH (repeatable)")
    tgt.add_argument("--admin", action="store_true",
                     help="the --url server was started with --allow-admin")
    run = ap.add_argument_group("run")
    run.add_argument("--workers", type=int, default=1,
                     help="generator processes (histograms merged exactly)")
    run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                     help="override a profile parameter (tuples comma-separated), "
                          "e.g. --set clients=1,10 --set duration_s=3")
    run.add_argument("--json", metavar="PATH",
                     help="write the result document; with --scenario all the path must "
                          "contain {scenario}")
    run.add_argument("--progress", type=float, default=5.0, metavar="S",
                     help="progress: a line per phase, and every S seconds on phases of "
                          "10 s or more, with the run's elapsed and expected time (0: off)")
    run.add_argument("--progress-file", metavar="PATH",
                     help="append the progress lines to PATH instead of stderr (the asv "
                          "suite sends them to the scheduler's log or the terminal)")
    run.add_argument("--no-pin", action="store_true", help="do not set CPU affinities")
    run.add_argument("--enforce-full", action="store_true",
                     default=os.environ.get("E2E_FULL") == "1",
                     help="count the plan's full criteria in 'passed' (default $E2E_FULL=1)")
    run.add_argument("--check", action="store_true",
                     help="exit 1 when a counted criterion failed")
    run.add_argument("--quiet", action="store_true", help="no table on stdout")
    return ap


def _progress_writer(path: str) -> Callable[[str], None]:
    """Append one line at a time to ``path`` (opened per line: the reader may rotate it,
    and a terminal device such as /dev/tty must not be held open). Unwritable: stderr."""
    def write(line: str) -> None:
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            print(line, file=sys.stderr, flush=True)

    return write


def _overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    """Run and report; returns the exit status."""
    args = build_parser().parse_args(argv)
    # SIGTERM (asv's timeout, a scheduler shutting down) unwinds like Ctrl-C, so the
    # server and worker processes this run started are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    if (args.url is None) == (args.server_python is None):
        print("give exactly one of --url or --server-python", file=sys.stderr)
        return 2
    scenarios = list(ALL) if args.scenario == "all" else [args.scenario]
    if len(scenarios) > 1 and args.json and "{scenario}" not in args.json:
        print("--scenario all needs {scenario} in the --json path", file=sys.stderr)
        return 2
    overrides = _overrides(args.set)
    failed = False
    progress_out = _progress_writer(args.progress_file) if args.progress_file else None
    for name in scenarios:
        try:
            doc: dict[str, Any] = run_scenario(
                name, args.profile, url=args.url, token=args.token,
                server_pid=args.server_pid, server_python=args.server_python,
                server_args=args.server_arg, server_pythonpath=args.server_pythonpath,
                admin=True if args.admin else None, workers=args.workers,
                overrides=overrides if len(scenarios) == 1 else None,
                enforce_full=args.enforce_full, progress_s=args.progress,
                progress_out=progress_out, pin=not args.no_pin)
        except (ValueError, RuntimeError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        if not args.quiet:
            print(table(doc), flush=True)
        if args.json:
            write_json(doc, args.json.format(scenario=name))
        failed = failed or not doc["passed"]
    if args.check and failed:
        return 1
    return 0

