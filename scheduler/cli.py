"""Command line: ``python -m scheduler {run,once,status,bless,backfill,config,calibrate,
evaluate,publish,site,worker}``.

Why one entry point with subcommands: every command loads the same configuration and
state, so a setting means the same thing everywhere. Errors a human can fix (bad TOML,
unknown key, another daemon on the state directory, corrupt result file) are printed as one
line, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .config import DEFAULT_CONFIG_NAME, Config, ConfigError, SlackConfig, _redact, load_config
from .lock import LockBusyError, StateLock
from .measure.asvrun import AsvError, AsvProject
from .measure.gitrepo import GitError
from .publish.site import SiteError, ensure_placeholder
from .redact import redact_url
from .results import ResultsError, format_value
from .store.baselines import BaselinesError, bless
from .store.state import StateError

EPILOG = f"""\
configuration: --config PATH, else ./{DEFAULT_CONFIG_NAME} if present, else built-in
defaults (watch ".", branch main, console alerts, state in ./.scheduler, site on
http://127.0.0.1:8090/). See scheduler.example.toml for every key and its default.
Secrets come from the environment: SLACK_BOT_TOKEN, SLACK_WEBHOOK_URL, SLACK_CHANNEL.

examples:
  python -m scheduler once                   measure what is new now, publish, exit
  python -m scheduler once --profile smoke   the same, seconds per commit instead of minutes
  python -m scheduler run                    the daemon (prints the history page URL)
  python -m scheduler status                 queue, last results, open regressions
  python -m scheduler backfill HEAD~20..HEAD queue older commits
  python -m scheduler publish                publish the service's results to html/ now
  asv publish && python -m scheduler site html   a site of your own asv runs, offline
  python -m scheduler bless HEAD             write its results to baselines/blessed.toml
  python -m scheduler calibrate --runs 5     measure noise, write baselines/noise.toml
  python -m scheduler evaluate               planted regressions: caught? false alerts?
  python -m scheduler worker --machine NAME  a benchmark runner (needs [dispatch] broker)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scheduler",
        description="Benchmark-regression scheduler: watches a git repository, runs the asv "
                    "suite on new commits (newest first, bisecting regressions), publishes "
                    "the asv site, judges results against limits, blessed baselines and "
                    "recent history, and alerts (console, Slack webhook or Slack bot).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", metavar="PATH", help="configuration file (TOML)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("run", help="run the daemon (poll, measure, nightly, serve html/)",
                       description="Run the daemon until SIGTERM/SIGINT. Prints the history "
                                   "page URL first. One daemon per state directory.")
    r.add_argument("--port", type=int, help="override [site] port (0 = any free port)")
    r.add_argument("--profile", help="override [profiles] premerge (e.g. smoke for a demo)")

    o = sub.add_parser("once", help="process what is new now, publish, exit",
                       description="Poll once, measure everything queued (including "
                                   "bisection), publish the site, deliver alerts, exit.")
    o.add_argument("--max-runs", type=int, default=None,
                   help="stop after this many measurements")
    o.add_argument("--profile", help="override [profiles] premerge (e.g. smoke for a demo)")

    s = sub.add_parser("status", help="queue, last results, open regressions")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    b = sub.add_parser("bless", help="bless a commit's stored results as the baseline",
                       description="Write the stored results of COMMIT (one profile) into "
                                   "baselines/blessed.toml for review in a pull request.")
    b.add_argument("commit", help="commit-ish (hash, tag, HEAD~3)")
    b.add_argument("--profile", help="profile whose results to bless (default: premerge)")
    b.add_argument("--machine", help="machine whose results to bless (default: [asv] "
                                     "machine; with runners, the runner's --machine)")

    f = sub.add_parser("backfill", help="queue the commits of a git range",
                       description="Queue the first-parent commits of RANGE (e.g. "
                                   "v1.0..main, HEAD~10..HEAD, abc123^!) with the premerge "
                                   "profile at backfill priority.")
    f.add_argument("range", nargs="+", help="git revision range")
    f.add_argument("--now", action="store_true",
                   help="measure them now (like `once`) instead of leaving them to the daemon")
    f.add_argument("--profile", help="override [profiles] premerge")

    sub.add_parser("config", help="print the effective configuration (secrets hidden)")

    sub.add_parser("publish", help="publish the service's results and alerts page now",
                   description="Run asv publish on the service's results into [site] "
                               "html_dir, point the page at local copies of asv's "
                               "JavaScript and CSS (the site works without internet) and "
                               "write alerts.html. The daemon does this after every run; "
                               "refused while it runs on this state directory.")
    w = sub.add_parser("site", help="make a site from `asv publish` work without internet",
                       description="After your own `asv publish`: copy the JavaScript and "
                                   "CSS that asv's page loads from CDNs into HTML_DIR/_vendor "
                                   "and point the page at them (and link the service's pages "
                                   "that are there). Exit 2 when the page is not the one the "
                                   "local copies were made for (a newer asv).")
    w.add_argument("html_dir", nargs="?", default="html",
                   help="directory written by asv publish (default: html)")

    # the self-test's commands (python -m selftest), under the names the docs use
    sub.add_parser("calibrate", add_help=False,
                   help="measure one commit N times; derive noise thresholds (alias of "
                        "python -m selftest calibrate)")
    sub.add_parser("evaluate", add_help=False,
                   help="detection self-test on a throwaway history (alias of python -m "
                        "selftest evaluate)")

    w = sub.add_parser(
        "worker", help="a benchmark runner: measure jobs from the broker on this host",
        description="Run a Celery worker that measures the coordinator's jobs on this host, "
                    "one at a time: it builds the asv environments here, runs `asv run "
                    "--machine NAME-<profile>` with this checkout's benchmarks (which must "
                    "be the coordinator's), and sends the result file and log back. Needs "
                    "[dispatch] broker (or env SCHEDULER_BROKER) in the configuration. "
                    "SIGTERM finishes the job being measured, then stops; SIGQUIT stops at "
                    "once (the job is delivered again and measured by another runner).",
        epilog="examples:\n"
               "  python -m scheduler -c bench.toml worker --machine bench-1\n"
               "  python -m scheduler -c bench.toml worker --machine arm-2 --queue arm64\n"
               "jobs reach it when the coordinator's [dispatch] targets name machine:NAME, "
               "queue:Q or any.", formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--machine", required=True,
                   help="this runner's asv machine name (its results are a series of their "
                        "own; limits, noise and baselines are keyed by it)")
    w.add_argument("--queue", action="append", default=[], metavar="Q",
                   help="also take jobs sent to queue:Q, a kind of machine (repeatable)")
    w.add_argument("--name", default="",
                   help="Celery node name (default MACHINE@HOST; give two runners of one "
                        "machine on one host different names)")
    w.add_argument("--dir", metavar="DIR",
                   help="working directory: asv environments, machine.json (default "
                        "<state>/runners/NAME)")
    w.add_argument("--loglevel", default="INFO", help="Celery log level (default INFO)")
    return p


def _service(cfg: Config, quiet: bool) -> Any:
    from .pipeline import Pipeline

    return Pipeline(cfg, verbose=not quiet)


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from .daemon import run_daemon

    if args.port is not None:
        cfg = replace(cfg, site=replace(cfg.site, port=args.port))
    return run_daemon(cfg, verbose=not args.quiet)


def cmd_once(cfg: Config, args: argparse.Namespace, *, poll: bool = True) -> int:
    with StateLock(cfg.state_dir):
        svc = _service(cfg, args.quiet)

        def on_signal(signum: int, _frame: object) -> None:
            # abandon the current asv run (it is re-queued) and let measure_queued() return
            print(f"received {signal.Signals(signum).name}; stopping", file=sys.stderr)
            svc.abandon()

        old_term = signal.signal(signal.SIGTERM, on_signal)
        old_int = signal.signal(signal.SIGINT, on_signal)
        try:
            svc.recover()
            if poll:
                svc.poll()
            n = svc.measure_queued(max_runs=getattr(args, "max_runs", None))
            svc.publish()
            svc.flush()
            st = svc.stats
            index = cfg.site.html_dir / "index.html"
            print(f"measured {st.measured}, failed {st.failed}, new alerts {st.alerts}; "
                  f"{n} run(s) processed")
            if index.is_file():
                print(f"history page: {index.as_uri()} (or `python -m scheduler run` to serve"
                      f" it at {cfg.site.base_url()})")
        finally:
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGINT, old_int)
            svc.close()
    return 0


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    svc = _service(cfg, True)
    try:
        st = svc.status()
    finally:
        svc.close()
    if args.json:
        print(json.dumps(st, indent=2, default=str))
        return 0
    print(f"state: {st['state_dir']}   site: {st['site']}")
    print(f"running: {len(st['running'])}")
    for r in st["running"]:
        print(f"  {r['commit_hash'][:8]} {r['branch']} {r['profile']} ({r['kind']})")
    print(f"queued: {len(st['queued'])}")
    for r in st["queued"][:20]:
        print(f"  {r['commit_hash'][:8]} {r['branch']} {r['profile']} ({r['kind']}, "
              f"priority {r['priority']})")
    print("recent results:")
    for r in st["recent"]:
        err = f"  {r['error'][:100]}" if r["error"] else ""
        print(f"  {r['commit_hash'][:8]} {r['profile']:8} {r['status']:6}{err}")
    for profile, res in st["last_results"].items():
        print(f"last {profile} results ({res['commit'][:8]}):")
        if "error" in res:
            print(f"  error: {res['error']}")
        for bench, value in res.get("values", []):
            print(f"  {bench}: {value}")
    print(f"open regressions: {len(st['open_regressions'])}")
    for a in st["open_regressions"]:
        unit = a["detail"].get("unit", "")
        print(f"  [{a['kind']}] {a['benchmark']} on {a['series']}: "
              f"{format_value(a['before'], unit)} -> {format_value(a['after'], unit)} "
              f"since {a['bad_commit'][:8]}")
    print("\n".join(outbox_lines(st["outbox_pending"], st["outbox_dead"], cfg.slack)))
    if st.get("dispatch"):
        _print_dispatch(st["dispatch"])
    return 0


def outbox_lines(pending: list[dict[str, Any]], dead: list[dict[str, Any]],
                 slack: SlackConfig) -> list[str]:
    """The outbox for ``status``: every message not delivered, with its last error (what
    someone whose Slack channel stays silent needs to see)."""
    out = [f"alerts waiting for delivery: {len(pending)}, undeliverable: {len(dead)}"]
    for label, items in (("waiting", pending), ("undeliverable", dead)):
        for i in items:
            text = str(i["payload"].get("text", ""))[:100]
            out.append(f"  {label}: {i['kind']} after {i['attempts']} attempt(s): "
                       f"{i['last_error'][:160] or 'not tried yet'}")
            out.append(f"    {text}")
    if pending or dead:
        out.append(f"  (backend {slack.backend}; waiting alerts are retried with "
                   f"backoff, up to [slack] max_attempts = {slack.max_attempts}; "
                   "status --json shows every message in full)")
    return out


def _print_dispatch(d: dict[str, Any]) -> None:
    """Runners, what each measures, jobs in flight, and each machine's own queue."""
    import time

    def ago(t: float | None) -> str:
        return f"{time.time() - t:.0f}s ago" if t else "-"

    by_profile = "".join(f"; {p}: {', '.join(t)}" for p, t in d["profile_targets"].items())
    print(f"broker: {d['broker']}   targets: {', '.join(d['targets'])}{by_profile}")
    if "broker_error" in d:
        print(f"  broker unreachable: {d['broker_error']}")
    print(f"runners: {len(d['runners'])}")
    for w in d["runners"]:
        doing = "; ".join(f"{m.get('commit', '?')[:8]} {m.get('profile', '')} "
                          f"({m.get('kind', m['task_id'])}) since {ago(m.get('since'))}"
                          for m in w["measuring"]) or "idle"
        print(f"  {w['name']}  machine {w['machine'] or '?'}  queues "
              f"{', '.join(w['queues'])}  {doing}")
    print(f"jobs in flight: {len(d['jobs'])}")
    for j in d["jobs"]:
        where = f" on {j['machine']} ({j['worker']})" if j["machine"] else ""
        print(f"  {j['commit'][:8]} {j['profile']:6} {j['kind']:12} {j['target']:16} "
              f"{j['status']}{where}, sent {ago(j['sent_at'])}, attempt {j['attempt']}")
    for name, m in d["machines"].items():
        print(f"machine {name}: {len(m['running'])} measuring, {len(m['queued'])} queued, "
              f"{len(m['open_regressions'])} open regression(s)")
        for r in m["queued"][:10]:
            print(f"  queued {r['commit_hash'][:8]} {r['profile']} ({r['kind']}, priority "
                  f"{r['priority']})")
        for r in m["recent"]:
            err = f"  {r['error'][:80]}" if r["error"] else ""
            print(f"  {r['commit_hash'][:8]} {r['profile']:8} {r['status']:6}{err}")
        for a in m["open_regressions"]:
            print(f"  [{a['kind']}] {a['benchmark']} on {a['series']} since "
                  f"{a['bad_commit'][:8]}")


def cmd_bless(cfg: Config, args: argparse.Namespace) -> int:
    svc = _service(cfg, True)
    try:
        profile = args.profile or cfg.profiles.premerge
        if args.machine:
            cfg = replace(cfg, asv=replace(cfg.asv, machine=args.machine))
            svc.asv = AsvProject(cfg, svc.repo.path)
        svc.repo.fetch()
        commit = svc.repo.resolve(args.commit)
        result = svc.asv.result_for(commit, profile)
        if result is None:
            print(f"error: no stored {profile} results for {commit[:8]} "
                  f"(measure it first: backfill {commit[:8]}^! --now)", file=sys.stderr)
            return 2
        new = bless(cfg.baselines_dir, result, profile, cfg.asv.machine)
    finally:
        svc.close()
    print(f"blessed {len(new)} value(s) from {commit[:8]} ({cfg.asv.machine}, {profile}) "
          f"into {cfg.baselines_dir / 'blessed.toml'}")
    for b in new:
        print(f"  {b.benchmark} = {format_value(b.value, b.unit)}")
    return 0


def cmd_backfill(cfg: Config, args: argparse.Namespace) -> int:
    svc = _service(cfg, args.quiet)
    try:
        n = svc.enqueue_range(" ".join(args.range))
    finally:
        svc.close()
    print(f"queued {n} commit(s)")
    if args.now:
        return cmd_once(cfg, args, poll=False)
    return 0


def cmd_config(cfg: Config, args: argparse.Namespace) -> int:
    d = asdict(cfg)
    d["slack"]["token"] = "<set>" if cfg.slack.token else ""
    d["slack"]["webhook_url"] = "<set>" if cfg.slack.webhook_url else ""
    d["repository"]["url"] = redact_url(cfg.repository.url)
    d["dispatch"]["broker"] = _redact(cfg.dispatch.broker)
    print(json.dumps(d, indent=2, default=str))
    return 0


def cmd_publish(cfg: Config, args: argparse.Namespace) -> int:
    with StateLock(cfg.state_dir):
        svc = _service(cfg, args.quiet)
        try:
            measured = (svc.asv.results_dir / "benchmarks.json").is_file()
            svc.asv.publish()  # an AsvError (e.g. a page that needs the internet): exit 2
            svc.write_alerts_page()
            ensure_placeholder(cfg.site.html_dir)
        finally:
            svc.close()
    what = "asv's pages and" if measured else "nothing measured yet: the placeholder and"
    print(f"published {cfg.site.html_dir}: {what} alerts.html")
    return 0


def cmd_site(cfg: Config, args: argparse.Namespace) -> int:
    from .publish.offline_site import OfflineSiteError, add_nav, make_offline
    from .publish.site import PAGES

    html_dir = Path(args.html_dir)
    try:
        replaced = make_offline(html_dir)
        linked = add_nav(html_dir, [p for p in PAGES if (html_dir / p[0]).is_file()])
    except (OfflineSiteError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    what = (f"{len(replaced)} CDN file(s) now served from {html_dir / '_vendor'}"
            if replaced else "already served from local copies")
    print(f"{html_dir / 'index.html'}: {what}"
          + (f"; linked {', '.join(linked)}" if linked else ""))
    return 0


def cmd_worker(cfg: Config, args: argparse.Namespace) -> int:
    from .dispatch.worker import run_worker

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.machine):
        raise ConfigError("--machine: use letters, digits, '.', '_', '-' only")
    for q in args.queue:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", q):
            raise ConfigError(f"--queue {q!r}: use letters, digits, '.', '_', '-' only")
    return run_worker(cfg, machine=args.machine, queues=tuple(args.queue), name=args.name,
                      runner_dir=Path(args.dir).resolve() if args.dir else None,
                      loglevel=args.loglevel)


def selftest_alias(args: argparse.Namespace, rest: list[str]) -> int:
    """``calibrate`` and ``evaluate``: the self-test's own commands, run by its CLI. The
    one place the scheduler imports the self-test, when the command runs."""
    from selftest.cli import main as selftest_main

    options = (["--config", args.config] if args.config else []) + (
        ["--quiet"] if args.quiet else [])
    return selftest_main([*options, args.command, *rest], prog="python -m scheduler")


COMMANDS = {"run": cmd_run, "once": cmd_once, "status": cmd_status, "bless": cmd_bless,
            "backfill": cmd_backfill, "config": cmd_config, "publish": cmd_publish,
            "site": cmd_site, "worker": cmd_worker}
SELFTEST_ALIASES = ("calibrate", "evaluate")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in SELFTEST_ALIASES:
        return selftest_alias(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # slack_sdk logs request details at DEBUG only; keep it and urllib quiet regardless
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached" is the work job doing its
    # job (one measurement at a time); job failures are logged by scheduler.jobs
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    try:
        cfg = load_config(Path(args.config) if args.config else None)
        if args.command in ("run", "once", "backfill") and args.profile:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", args.profile):
                raise ConfigError(f"--profile: not a profile name: {args.profile!r}")
            cfg = replace(cfg, profiles=replace(cfg.profiles, premerge=args.profile))
        return COMMANDS[args.command](cfg, args)
    except (ConfigError, LockBusyError, AsvError, ResultsError, BaselinesError,
            GitError, SiteError, StateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `status | head`
        sys.stderr.close()
        return 0
