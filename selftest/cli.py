"""``python -m selftest``: the self-test's own commands, beside the daemon.

``evaluate`` (planted regressions: caught? false alerts?), ``calibrate`` (this machine's
noise into baselines/noise.toml), ``idle`` (is the machine idle enough to measure?) and
``faults`` (kill the daemon at random moments, check nothing is lost). ``python -m
scheduler evaluate|calibrate`` are aliases of the first two: the scheduler's handlers
import this module when they run, the scheduler never imports it otherwise.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from scheduler.config import Config, ConfigError, load_config
from scheduler.lock import LockBusyError, StateLock
from scheduler.measure.asvrun import AsvError
from scheduler.measure.gitrepo import GitError
from scheduler.results import ResultsError
from scheduler.store.baselines import BaselinesError

#: The project the evaluation copies into its throwaway history: this checkout.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

EPILOG = """\
configuration: --config PATH, else ./scheduler.toml if present, else built-in defaults
(the same file as the daemon's: python -m scheduler --help).

examples:
  python -m selftest calibrate --runs 5     measure noise, write baselines/noise.toml
  python -m selftest evaluate               planted regressions: caught? false alerts?
  python -m selftest idle                   is this machine idle enough to measure?
  python -m selftest faults --kills 20      SIGKILL the daemon 20 times: anything lost?
"""


def add_calibrate_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--commit", default="HEAD", help="commit-ish to measure (default HEAD)")
    c.add_argument("--runs", type=int, default=5, help="repeated runs (default 5, at least 3)")
    c.add_argument("--profile", help="profile to calibrate (default: premerge)")
    c.add_argument("--bench", metavar="REGEX", help="only benchmarks matching (asv -b)")
    c.add_argument("--dry-run", action="store_true",
                   help="print the table, do not write baselines/noise.toml")
    c.add_argument("--from-report", metavar="JSON",
                   help="derive thresholds from a stored calibration report instead of "
                        "measuring (after a change of the rule)")


#: The planted regressions ``evaluate --only`` selects (``selftest.evaluate.Target.kind``).
PLANT_KINDS = ("instructions", "chat-path", "connections", "connect", "chat-wait", "pause",
               "leak")


def add_evaluate_options(e: argparse.ArgumentParser) -> None:
    e.add_argument("--neutral", type=int, default=10, help="neutral commits (default 10)")
    e.add_argument("--profile", help="profile (default: premerge)")
    e.add_argument("--bench", metavar="REGEX", default=None,
                   help="benchmarks to run (default: the scenarios the plants act on)")
    e.add_argument("--only", metavar="KIND", action="append",
                   choices=PLANT_KINDS,
                   help="plant only these regressions (repeatable): " + ", ".join(PLANT_KINDS))
    e.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    e.add_argument("--keep", metavar="DIR", help="build the history in DIR and keep it")


CALIBRATE = ("measure one commit N times; derive noise thresholds",
             "Run the suite RUNS times on one commit and write, per series, a threshold "
             "derived from the run-to-run spread (or an 'unstable' mark) to baselines/"
             "noise.toml for this machine and profile. The judge uses it from then on.")
EVALUATE = ("detection self-test on a throwaway history",
            "Copy this project into a throwaway repository, commit neutral changes and "
            "planted regressions of known size (+2% instructions per message on every path, "
            "on chat's path only and with 1000 connections open, +3% per connection life, "
            "+20% p95 of chat and of echo under load with no CPU cost, a per-connection "
            "leak), run the service's "
            "detection over it and print which were caught at which commit and every false "
            "alert. Run `calibrate` first: thresholds come from baselines/noise.toml. Exit 1 "
            "when a plant is missed or a neutral commit alerts.")


def build_parser(prog: str = "python -m selftest") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Self-tests of the benchmark service: does it catch planted "
                               "regressions, how noisy is this machine, does it lose "
                               "anything when killed.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", metavar="PATH", help="configuration file (TOML)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_calibrate_options(sub.add_parser("calibrate", help=CALIBRATE[0],
                                         description=CALIBRATE[1]))
    add_evaluate_options(sub.add_parser("evaluate", help=EVALUATE[0], description=EVALUATE[1]))
    sub.add_parser("idle", help="is this machine idle enough to measure?",
                   description="Sample the other processes' CPU for a second and read the "
                               "load average; print what would make figures measured now "
                               "slower than the commit's. Exit 1 when the machine is busy.")
    sub.add_parser("faults", add_help=False,
                   help="SIGKILL the daemon at random moments; check nothing is lost "
                        "(python -m selftest faults --help)")
    return p


def _say(quiet: bool) -> Callable[[str], None]:
    return (lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True))


def _exit_on_sigterm() -> None:
    """Long commands unwind on SIGTERM like on Ctrl-C (asv runs are abandoned)."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def _on_this_host(cfg: Config, command: str, say: Callable[[str], None]) -> Config:
    """calibrate and evaluate measure this host's noise and detection: never on runners."""
    if cfg.dispatch.broker:
        say(f"{command} measures on this host; [dispatch] broker is not used")
    return replace(cfg, dispatch=replace(cfg.dispatch, broker=""))


def run_calibrate(cfg: Config, args: argparse.Namespace) -> int:
    from .calibrate import CalibrationError, calibrate, from_report, write_noise, write_report

    say = _say(args.quiet)
    cfg = _on_this_host(cfg, "calibrate", say)
    _exit_on_sigterm()
    with StateLock(cfg.state_dir):
        try:
            if args.from_report:
                cal = from_report(Path(args.from_report))
            else:
                cal = calibrate(cfg, commit=args.commit, runs=args.runs,
                                profile=args.profile, bench=args.bench, say=say)
        except CalibrationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(cal.table())
    report = write_report(cal, cfg.state_dir / "calibration" /
                          f"calibration-{cal.machine}-{cal.profile}.json")
    print(f"report: {report}")
    if not args.dry_run:
        print(f"thresholds written to {write_noise(cfg.baselines_dir, cal)}")
    return 0


def run_evaluate(cfg: Config, args: argparse.Namespace) -> int:
    from .evaluate import DEFAULT_BENCH, default_targets, evaluate, write_report

    say = _say(args.quiet)
    targets = [t for t in default_targets() if not args.only or t.kind in args.only]
    cfg = _on_this_host(cfg, "evaluate", say)
    _exit_on_sigterm()
    with StateLock(cfg.state_dir):
        result = evaluate(cfg, project_root=PROJECT_ROOT, neutral=args.neutral,
                          targets=targets, profile=args.profile,
                          bench=args.bench or DEFAULT_BENCH,
                          workdir=Path(args.keep).resolve() if args.keep else None, say=say)
    print(result.table())
    if args.json:
        print(f"report: {write_report(result, Path(args.json))}")
    return 0 if result.passed else 1


def run_idle() -> int:
    from scheduler.measure.idle import check

    seen = check()
    print(f"load average {seen.load_1m:.2f} on {seen.cores} core(s)")
    for warning in seen.warnings:
        print(f"not idle: {warning}")
    if seen.idle:
        print("idle: figures measured now are not slowed by other work")
    return 0 if seen.idle else 1


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "calibrate": run_calibrate, "evaluate": run_evaluate}


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m selftest") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = build_parser(prog).parse_known_args(argv)
    if args.command == "faults":
        from .faults import main as faults_main

        return faults_main(rest, prog=f"{prog} faults")
    if rest:
        build_parser(prog).error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "idle":
        return run_idle()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)
    try:
        cfg = load_config(Path(args.config) if args.config else None)
        return COMMANDS[args.command](cfg, args)
    except (ConfigError, LockBusyError, AsvError, ResultsError, BaselinesError,
            GitError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
