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

from .asvrun import AsvError, AsvProject
from .baselines import BaselinesError, bless
from .config import DEFAULT_CONFIG_NAME, Config, ConfigError, SlackConfig, _redact, load_config
from .gitrepo import GitError
from .lock import LockBusyError, StateLock
from .redact import redact_url
from .results import ResultsError, format_value
from .site import SiteError, ensure_placeholder

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

    c = sub.add_parser("calibrate", help="measure one commit N times; derive noise thresholds",
                       description="Run the suite RUNS times on one commit and write, per "
                                   "series, a threshold derived from the run-to-run spread "
                                   "(or an 'unstable' mark) to baselines/noise.toml for this "
                                   "machine and profile. The judge uses it from then on.")
    c.add_argument("--commit", default="HEAD", help="commit-ish to measure (default HEAD)")
    c.add_argument("--runs", type=int, default=5, help="repeated runs (default 5, at least 3)")
    c.add_argument("--profile", help="profile to calibrate (default: premerge)")
    c.add_argument("--bench", metavar="REGEX", help="only benchmarks matching (asv -b)")
    c.add_argument("--dry-run", action="store_true",
                   help="print the table, do not write baselines/noise.toml")
    c.add_argument("--from-report", metavar="JSON",
                   help="derive thresholds from a stored calibration report instead of "
                        "measuring (after a change of the rule)")

    e = sub.add_parser("evaluate", help="detection self-test on a throwaway history",
                       description="Copy this project into a throwaway repository, commit "
                                   "neutral changes and planted regressions of known size "
                                   "(+10% CPU per message, +20% p95 of chat, a per-"
                                   "connection leak, slower connection establishment), run "
                                   "the service's detection over it and print which were "
                                   "caught at which commit and every false alert. Run "
                                   "`calibrate` first: thresholds come from baselines/"
                                   "noise.toml. Exit 1 when a plant is missed or a neutral "
                                   "commit alerts.")
    e.add_argument("--neutral", type=int, default=10, help="neutral commits (default 10)")
    e.add_argument("--profile", help="profile (default: premerge)")
    e.add_argument("--bench", metavar="REGEX", default=None,
                   help="benchmarks to run (default: the scenarios the plants act on)")
    e.add_argument("--only", metavar="KIND", action="append",
                   choices=["cpu", "chat", "leak", "connect"],
                   help="plant only these regressions (repeatable)")
    e.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    e.add_argument("--keep", metavar="DIR", help="build the history in DIR and keep it")

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
    from .service import Service

    return Service(cfg, verbose=not quiet)


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from .daemon import run_daemon

    if args.port is not None:
        cfg = replace(cfg, site=replace(cfg.site, port=args.port))
    return run_daemon(cfg, verbose=not args.quiet)


def cmd_once(cfg: Config, args: argparse.Namespace, *, poll: bool = True) -> int:
    with StateLock(cfg.state_dir):
        svc = _service(cfg, args.quiet)

        def on_signal(signum: int, _frame: object) -> None:
            # abandon the current asv run (it is re-queued) and let drain() return
            print(f"received {signal.Signals(signum).name}; stopping", file=sys.stderr)
            svc.abandon()

        old_term = signal.signal(signal.SIGTERM, on_signal)
        old_int = signal.signal(signal.SIGINT, on_signal)
        try:
            svc.recover()
            if poll:
                svc.poll()
            n = svc.drain(max_runs=getattr(args, "max_runs", None))
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
    from .offline_site import OfflineSiteError, add_nav, make_offline
    from .site import PAGES

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


def _exit_on_sigterm() -> None:
    """Long commands unwind on SIGTERM like on Ctrl-C (asv runs are abandoned)."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def _on_this_host(cfg: Config, command: str, say: Any) -> Config:
    """calibrate and evaluate measure this host's noise and detection: never on runners."""
    if cfg.dispatch.broker:
        say(f"{command} measures on this host; [dispatch] broker is not used")
    return replace(cfg, dispatch=replace(cfg.dispatch, broker=""))


def cmd_calibrate(cfg: Config, args: argparse.Namespace) -> int:
    from .calibrate import CalibrationError, calibrate, from_report, write_noise, write_report

    say = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr,
                                                               flush=True))
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


def cmd_evaluate(cfg: Config, args: argparse.Namespace) -> int:
    from .evaluate import DEFAULT_BENCH, default_targets, evaluate, write_report

    say = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr,
                                                               flush=True))
    targets = [t for t in default_targets() if not args.only or t.kind in args.only]
    cfg = _on_this_host(cfg, "evaluate", say)
    _exit_on_sigterm()
    with StateLock(cfg.state_dir):
        result = evaluate(cfg, project_root=Path(__file__).resolve().parent.parent,
                          neutral=args.neutral, targets=targets, profile=args.profile,
                          bench=args.bench or DEFAULT_BENCH,
                          workdir=Path(args.keep).resolve() if args.keep else None, say=say)
    print(result.table())
    if args.json:
        print(f"report: {write_report(result, Path(args.json))}")
    return 0 if result.passed else 1


COMMANDS = {"run": cmd_run, "once": cmd_once, "status": cmd_status, "bless": cmd_bless,
            "backfill": cmd_backfill, "config": cmd_config, "calibrate": cmd_calibrate,
            "evaluate": cmd_evaluate, "publish": cmd_publish, "site": cmd_site,
            "worker": cmd_worker}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
            GitError, SiteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `status | head`
        sys.stderr.close()
        return 0
