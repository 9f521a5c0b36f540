"""The scheduler's work, independent of how it is triggered (daemon jobs, ``once``,
``backfill``): poll for commits, measure queued runs one at a time, publish, judge, alert.

Why one object: the daemon's APScheduler jobs, the one-shot command and the tests all go
through the same code paths, so "what ``once`` does" is exactly what the daemon does.

Queue policy: a higher priority first (confirm-base > confirm > bisect > nightly > soak >
poll > backfill), then the newest commit first — when commits arrive faster than they can
be measured the head is measured first. A regression between two measured commits with
unmeasured commits in between queues the midpoint (bisection) until the pair is adjacent;
only then is the alert sent, naming the first bad commit. With ``[judge] confirm`` that
alert waits for an interleaved re-measurement: the last good commit again, then the
suspect again, and the suspect's fresh result is judged against the good commit's fresh
one (see ``_queue_confirmation``). Deterministic series (``[judge] deterministic``:
instruction counts) are alerted without it; raw wall-clock and CPU-time series
(``[judge] limits_only``) are judged against limits only, their host-corrected and
instruction-count siblings against history.

With ``[side_by_side] enabled`` (off by default) every commit measured with the premerge
profile is also run side by side with its parent (``scheduler.measure.side_by_side``): a
regression of server CPU per message or per connection that both of two such runs name is
alerted. Its verdict is evidence about its own series only; it never keeps an asv finding
from being alerted.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config
from .dispatch import make_dispatcher
from .measure.asvrun import NOT_IDLE, PROGRESS_MARK, AsvError, AsvProject, RunOutcome, kill_orphan
from .measure.gitrepo import Commit, GitError, GitRepo
from .measure.side_by_side import (
    SERIES_OF_POINT,
    PointVerdict,
    SideBySideError,
    SideBySideResult,
    SideBySideRunner,
)
from .policy import (
    Confirmation,
    Decision,
    Evidence,
    OpenAlert,
    Recovery,
    RunInfo,
    decide,
    names,
)
from .policy.compare import Finding
from .policy.neighbours import neighbours
from .publish import alerts_page, knee, messages
from .publish.notify import make_notifier
from .publish.plot import history_png, plot_name
from .publish.site import graph_link
from .redact import Redactor
from .results import ResultFile, ResultsError, StepRegression, bench_id, format_value
from .store.baselines import BaselinesError, load_baselines
from .store.outbox import Outbox
from .store.state import AlertRecord, Judgement, Message, NewCommit, Run, State

log = logging.getLogger("scheduler")

HISTORY_WINDOW = 2000  # first-parent commits considered when looking for neighbours
ASV_ERROR_PAUSE_S = 300.0  # after asv itself failed, wait before trying the queue again


def say(msg: str) -> None:
    """Progress output for humans (stderr; stdout is kept for command results)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%H:%M:%S")
    print(f"[scheduler {stamp}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Stats:
    measured: int = 0
    failed: int = 0
    abandoned: int = 0
    alerts: int = 0


class Pipeline:
    """State, repository, asv and outbox for one configuration."""

    def __init__(self, cfg: Config, *, verbose: bool = True) -> None:
        self.cfg = cfg
        self.verbose = verbose
        self.state = State(cfg.state_dir / "state.sqlite3", scrub=Redactor.from_environment(
            [cfg.slack.token, cfg.slack.webhook_url]))
        local = cfg.repo_path() if cfg.repo_is_local() else None
        self.repo = GitRepo(cfg.repository.url, local_path=local,
                            mirror_dir=cfg.state_dir / "repo.git")
        self.asv = AsvProject(cfg, self.repo.path)
        self.side_by_side = SideBySideRunner(cfg.side_by_side, repo=self.repo.path,
                                             pass_env=cfg.asv.pass_env,
                                             started=self._side_by_side_started)
        self.dispatcher = make_dispatcher(cfg)  # asv here, or runners behind a broker
        self.outbox = Outbox(self.state, make_notifier(cfg.slack, cfg.state_dir),
                             max_attempts=cfg.slack.max_attempts)
        self.stop = threading.Event()
        self.site_url = cfg.site.base_url()
        self.plots_dir = cfg.state_dir / "plots"
        self._work = threading.Lock()
        self.stats = Stats()
        self.paused_until = 0.0  # set after an asv set-up error

    def close(self) -> None:
        self.dispatcher.close()
        self.state.close()

    def _say(self, msg: str) -> None:
        if self.verbose:
            say(msg)

    # ---- polling ----------------------------------------------------------------------

    def poll(self) -> int:
        """Fetch, record new commits on the watched branches, queue them newest first
        (one transaction per branch: a kill never leaves a commit seen but not queued)."""
        self.repo.fetch()
        queued = 0
        known = self.state.known_commits()
        for branch in self.cfg.repository.branches:
            commits = self.repo.first_parent(
                branch, limit=self.cfg.repository.max_queue_per_poll + 500)
            first_time = not self.state.polled(branch)
            new = [c for c in commits if c.hash not in known]
            cap = (self.cfg.repository.initial_commits if first_time
                   else self.cfg.repository.max_queue_per_poll)
            queued += self.state.record_commits(
                branch, [NewCommit(c.hash, c.author, c.date, c.subject, queue=i < cap)
                         for i, c in enumerate(new)],
                profile=self.cfg.profiles.premerge, kind="poll",
                polled_at=time.time())
            known.update(c.hash for c in new)
        if queued:
            self._say(f"queued {queued} new commit(s)")
        return queued

    def enqueue_range(self, rev_range: str, kind: str = "backfill") -> int:
        """Queue the first-parent commits of a range (``backfill``)."""
        self.repo.fetch()
        branch = self.cfg.repository.branches[0]
        return self.state.record_commits(
            branch, [NewCommit(c.hash, c.author, c.date, c.subject, queue=True)
                     for c in self.repo.rev_list(rev_range)],
            profile=self.cfg.profiles.premerge, kind=kind)

    def enqueue_heads(self, kind: str) -> int:
        """Nightly/soak: the full profile on each branch head (re-measured if done before)."""
        self.repo.fetch()
        profile = self.cfg.profiles.nightly if kind == "nightly" else self.cfg.profiles.soak
        batch = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
        heads = {}
        for branch in self.cfg.repository.branches:
            head = self.repo.head(branch)
            heads[branch] = NewCommit(head.hash, head.author, head.date, head.subject, True)
        # the batch, its heads (the summary reports these, not whatever the branches point
        # at by then) and their runs in one transaction
        n = self.state.enqueue_heads(kind, batch, profile, heads)
        self._say(f"{kind}: queued {n} branch head(s) with profile {profile}")
        return n

    # ---- measuring --------------------------------------------------------------------

    def measure_queued(self, *, max_runs: int | None = None) -> int:
        """Measure queued runs one at a time until the queue is empty or we are asked to
        stop. Only one such loop runs per process (the benchmark machine is measured alone)."""
        if self.dispatcher.remote:  # runners measure: send runs, collect their outcomes
            return self.dispatcher.send_and_collect(self, max_runs=max_runs)
        if time.time() < self.paused_until:
            return 0
        if not self._work.acquire(blocking=False):
            return 0
        done = 0
        try:
            while not self.stop.is_set() and (max_runs is None or done < max_runs):
                run = self.state.next_queued()
                if run is None:
                    break
                if not self.state.claim(run.id):
                    continue
                self.process(run)
                done += 1
        finally:
            self._work.release()
        return done

    def process(self, run: Run) -> RunOutcome | None:
        """Measure one claimed run and act on the outcome."""
        queued = len(self.state.runs(status="queued"))
        self._say(f"measuring {run.short} on {run.branch} (profile {run.profile}, "
                  f"{run.kind}{self._purpose(run)}); {queued} more queued")
        try:
            outcome = self.dispatcher.measure(self, run, progress=self._progress,
                                              started=self._asv_started)
        except AsvError as exc:
            # asv itself is unusable (bad asv.conf.json, missing benchmarks, no uv): not
            # this commit's fault — put it back, say so once, pause the queue a while.
            self.state.requeue(run.id)
            self._say(f"asv cannot run: {exc}")
            self.paused_until = time.time() + ASV_ERROR_PAUSE_S
            digest = hashlib.sha1(str(exc).encode()).hexdigest()[:12]
            self.outbox.put(f"asv-error|{digest}", "failure", messages.setup_error(str(exc)))
            self.flush()
            raise
        if outcome is None:  # sent to a runner; its outcome comes back to complete()
            return None
        return self.complete(run, outcome)

    def complete(self, run: Run, outcome: RunOutcome) -> RunOutcome:
        """Act on the outcome of a claimed run's measurement."""
        if outcome.status == "abandoned" or (self.stop.is_set() and outcome.status != "done"):
            self.state.requeue(run.id)
            self.stats.abandoned += 1
            self._say(f"abandoned {run.short}; re-queued")
            return outcome
        # The report and the finished run commit in one transaction (a crash before
        # re-runs the commit; the report's key keeps it single).
        if outcome.status == "failed":
            if self.state.finish(run.id, "failed", log=outcome.log, error=outcome.error,
                                 message=self._failure_report(run, outcome, partial=False)):
                self.stats.alerts += 1
            self.stats.failed += 1
            self._say(f"FAILED {run.short}: {outcome.error}")
        else:
            report = (self._failure_report(run, outcome, partial=True) if outcome.error
                      else None)
            if self.state.finish(run.id, "done", log=outcome.log, error=outcome.error,
                                 message=report):
                self.stats.alerts += 1
            self.stats.measured += 1
            self._say(f"measured {run.short} in {outcome.seconds:.0f}s")
        if run.kind == "confirm" and outcome.status == "done":
            self.state.mark_confirmed(run.profile, run.commit_hash)
        self.publish()
        self._judge_and_mark(run, outcome.status)
        self.write_alerts_page()
        self.flush()
        return outcome

    def _purpose(self, run: Run) -> str:
        """What a confirmation run is for (for the say-lines)."""
        if run.kind == "confirm-base":
            bad = self._confirming(run)
            return f": last good before {bad[:8]}" if bad else ""
        if run.kind == "confirm":
            base = self.state.confirm_base(run.profile, run.commit_hash)
            return f": right after {base[:8]}, the last good" if base else ""
        return ""

    def _confirming(self, base_run: Run) -> str:
        """The suspect whose confirmation a ``confirm-base`` run is the reference for."""
        for r in self.state.runs(status="queued", profile=base_run.profile):
            if (r.kind == "confirm" and self.state.confirm_base(
                    r.profile, r.commit_hash) == base_run.commit_hash):
                return r.commit_hash
        return ""

    def _judge_and_mark(self, run: Run, status: str) -> None:
        """Judge a finished run once; ``judged`` is set only afterwards, so a crash in
        between is judged again at the next start (alert keys keep alerts single).

        A ``confirm-base`` run (a good commit measured again as the fresh reference of a
        confirmation) is published and marked judged but not judged itself: its history
        was judged when it was first measured — judging it against its own predecessor
        could only queue confirmations of confirmations — and it does not speak for the
        branch's current state (the suspect after it, measured next, does). So it raises
        no history alert, no limit or baseline alert and no recovery note."""
        if run.kind == "confirm-base":
            bad = self._confirming(run)
            if status == "done":
                self._say(f"{run.short} re-measured as the reference for "
                          f"{bad[:8] or 'a confirmation'}; not judged itself")
            else:
                self._say(f"re-measuring {run.short} (last good) failed; "
                          f"{bad[:8] or 'the suspect'} is still re-measured and judged "
                          "without it")
        elif status == "done":
            if (self.cfg.side_by_side.enabled and not self.stop.is_set()
                    and run.profile == self.cfg.profiles.premerge
                    and run.kind != "confirm"):
                self._side_by_side_check(run)
            if run.kind == "confirm":
                self._say_confirmation_base(run)
            try:
                self.judge(run)
            except (ResultsError, BaselinesError, GitError) as exc:
                self._say(f"cannot judge {run.short}: {exc}")
                self.outbox.put(f"judge-error|{run.commit_hash}|{run.profile}", "failure", {
                    "kind": "failure", "text": f"Cannot judge {run.short}: {exc}",
                    "details": [], "blocks": [messages._section(
                        f"Cannot judge `{run.short}` ({run.profile}): {exc}")]})
        self.state.mark_judged(run.id)
        if run.kind in ("nightly", "soak"):
            self._maybe_summary(run.kind)

    def _asv_started(self, pid: int | None) -> None:
        self.state.set_child_group("asv", pid)

    def _side_by_side_started(self, pgid: int | None, work_dir: str) -> None:
        self.state.set_child_group("side_by_side", pgid, work_dir)

    def recover(self) -> None:
        """Start-up after a crash: stop an orphaned asv run and side-by-side run, re-queue
        what was running — or mark it failed when the scheduler died during it
        ``[asv] max_attempts`` times (a commit that takes the machine down)."""
        pgid, _ = self.state.child_group("asv")
        if kill_orphan(pgid, self.asv.config_path):
            self._say(f"stopped asv run {pgid or ''} left behind by a killed scheduler")
        pgid, work_dir = self.state.child_group("side_by_side")
        if (pgid or work_dir) and self.side_by_side.kill_orphan(pgid, work_dir):
            self._say(f"stopped side-by-side run {pgid or ''} left behind by a killed "
                      "scheduler")
        self.state.clear_child_groups()
        limit = self.cfg.asv.max_attempts
        give_up: dict[int, tuple[str, Message]] = {}
        crashed = [r for r in self.state.runs(status="running") if r.attempts >= limit]
        for r in crashed:
            error = (f"the scheduler stopped {r.attempts} times while measuring this "
                     "commit (killed, e.g. out of memory); not queued again "
                     f"([asv] max_attempts = {limit})")
            give_up[r.id] = (error, (
                f"failure|{r.commit_hash}|{r.profile}", "failure",
                messages.failure(self._commit(r.commit_hash), r.commit_hash, r.profile,
                                 error, "", partial=False,
                                 what="Measurement given up")))
        for r in self.state.recover(give_up=give_up):
            self._say(f"re-queued {r.short} ({r.profile}): it was running when the "
                      "scheduler stopped")
        for r in crashed:
            self.stats.failed += 1
            self._say(f"FAILED {r.short} ({r.profile}): {give_up[r.id][0]}")
        unjudged = self.state.unjudged()
        if unjudged:
            self.publish()
            for r in unjudged:
                self._say(f"judging {r.short} ({r.profile}): stopped before it was judged")
                self._judge_and_mark(r, r.status)

    def _progress(self, line: str) -> None:
        # asv's own lines ([ 40.00%] ...) and the instrument's (scenario, phase, elapsed
        # and expected time: asvrun.PROGRESS_MARK)
        if self.verbose and (line.startswith((PROGRESS_MARK, NOT_IDLE)) or "%]" in line
                             or "Building" in line or "Installing" in line or "rror" in line):
            print(f"    {line[:200]}", file=sys.stderr, flush=True)

    def abandon(self) -> None:
        """SIGTERM: stop after (or abandon) the current run."""
        self.stop.set()
        self.asv.abandon()
        self.side_by_side.abandon()
        self.dispatcher.abandon()

    def publish(self) -> None:
        try:
            self.asv.publish()
        except AsvError as exc:
            self._say(f"publish failed (results are kept): {exc}")
        try:  # the capacity page next to the site (asv publish rewrites html/)
            knee.publish(self.asv.documents_root, self.cfg.site.html_dir)
        except Exception as exc:  # a plot is a nicety; never lose a run over it
            self._say(f"capacity page not written: {exc}")
        self.write_alerts_page()

    def write_alerts_page(self) -> None:
        """``alerts.html`` next to asv's pages: after a publish (which replaces the
        directory) and after a judgement (which changes what it shows)."""
        try:
            alerts_page.write(self.cfg.site.html_dir,
                              alerts_page.collect(self.state, self.plots_dir), self.plots_dir)
        except Exception as exc:  # a page is a nicety: never lose a run over it
            self._say(f"alerts page not written: {exc}")

    def flush(self) -> None:
        sent, failed = self.outbox.flush()
        if sent or failed:
            self._say(f"alerts: {sent} delivered, {failed} waiting for retry")

    # ---- failures ---------------------------------------------------------------------

    def _failure_report(self, run: Run, outcome: RunOutcome, *, partial: bool) -> Message:
        commit = self._commit(run.commit_hash)
        msg = messages.failure(commit, run.commit_hash, run.profile, outcome.error,
                               outcome.log[-4000:], partial=partial)
        return f"failure|{run.commit_hash}|{run.profile}", "failure", msg

    def _commit(self, hash_: str) -> Commit | None:
        if not hash_:
            return None
        try:
            return self.repo.info(hash_)
        except GitError:
            return None

    # ---- judging ----------------------------------------------------------------------

    def judge(self, run: Run) -> list[Finding]:
        """Gather the evidence about a freshly measured commit, let the policy decide
        (``scheduler.policy.decide``: neighbours, bisection, limits, baselines, asv's
        steps, confirmation, recoveries), and apply the decision."""
        profile = run.profile
        machine = self.asv.machine_for(profile)
        result = self.asv.result_for(run.commit_hash, profile)
        if result is None:
            raise ResultsError(f"no stored result for {run.short} ({machine})")
        history = self._history(run.branch)
        status = self.state.status_of(profile)
        near = neighbours(history, status, run.commit_hash)
        results = {run.commit_hash: result}
        for h in (near.previous, near.next):
            other = self.asv.result_for(h, profile) if h else None
            if other is not None:
                results[h] = other
        steps: tuple[StepRegression, ...] = ()
        if self.cfg.judge.use_asv_steps:
            try:
                steps = tuple(self.asv.step_regressions())
            except ResultsError as exc:
                self._say(f"asv step detection unavailable: {exc}")
        held = {h: series for h in results
                if (series := self.state.held_series(profile, h)) is not None}
        decision = decide(Evidence(
            run=RunInfo(run.commit_hash, run.branch, profile, run.kind), machine=machine,
            machine_name=self.cfg.asv.machine, premerge=profile == self.cfg.profiles.premerge,
            history=tuple(history), status=status, results=results,
            baselines=load_baselines(self.cfg.baselines_dir), judge=self.cfg.judge,
            steps=steps, held=held,
            confirmed=frozenset(h for h in results if self.state.is_confirmed(profile, h)),
            open_alerts=tuple(
                OpenAlert(a["key"], a["kind"], a["benchmark"], a["bad_commit"], a["before"],
                          a["detail"]) for a in self.state.open_alerts(series=machine)
            ) if near.newest else ()))
        self._apply(decision, run, history, result, machine)
        return decision.findings

    def _apply(self, decision: Decision, run: Run, history: list[str], result: ResultFile,
               machine: str) -> None:
        """Apply a decision: everything it writes (bisections and a confirmation queued,
        alerts opened with their messages, alerts closed, recoveries with their notes)
        in one transaction, prepared before (plots, texts) and said after."""
        conf = decision.confirmation
        alerts = [(f, self._alert_record(f, history)) for f in decision.alerts
                  if not self.state.is_open(f.key)]  # already open: one regression, one alert
        recoveries = [self._recovery_note(r, result, machine) for r in decision.recoveries]
        applied = self.state.apply(Judgement(
            run.branch, run.profile,
            bisect=tuple((b.commit, self._date(b.commit)) for b in decision.bisect),
            confirmation=None if conf is None else (
                conf.bad, conf.base, {h: self._date(h) for h in (conf.base, conf.bad) if h},
                frozenset(conf.series)),
            alerts=tuple(a for _, a in alerts), close_silently=tuple(decision.close_silently),
            recoveries=tuple((r.alert.key, m) for r, m in zip(decision.recoveries, recoveries,
                                                              strict=True))))
        for b, queued in zip(decision.bisect, applied.bisected, strict=True):
            if queued:
                self._say(b.note)
        for note in decision.notes:
            self._say(note)
        if conf is not None and any(applied.confirmation):  # else: already queued
            self._say_confirmation(conf)
        for (_f, a), opened in zip(alerts, applied.opened, strict=True):
            if opened and a.message is not None:
                self.stats.alerts += 1
                self._say(a.message[2]["text"])
        for (_key, _kind, recovery), closed in zip(recoveries, applied.recovered, strict=True):
            if closed:
                self._say(recovery["text"])

    def _date(self, commit: str) -> int:
        info = self.state.commit_info(commit)
        return int(info["date"]) if info else 0

    def _history(self, branch: str) -> list[str]:
        """The branch's first-parent commits, oldest first."""
        return [c.hash for c in reversed(self.repo.first_parent(branch, limit=HISTORY_WINDOW))]

    def _side_by_side_check(self, run: Run) -> None:
        """Run ``run``'s commit side by side with its parent; when a point regresses, run
        it again (fresh processes) and alert the points that regressed both times. Done
        once per commit (its verdict is stored); a crash before that repeats it."""
        if self.state.side_by_side_verdict(run.commit_hash) is not None:
            return
        b = run.commit_hash
        try:
            a = self.repo.parent(b)
            if not a or not (self.side_by_side.applies(a) and self.side_by_side.applies(b)):
                self.state.record_side_by_side(b, {"skipped": "no toolserver to compare"})
                return
            project = self.asv.benchmark_dir().parent
            self._say(f"side by side: {a[:8]} (parent) vs {run.short}, "
                      f"{self.cfg.side_by_side.rounds} paired rounds per point "
                      f"({self.cfg.side_by_side.points})")
            runs = [self.side_by_side.run(a, b, project_dir=project)]
            self._say_side_by_side(runs[0])
            if runs[0].regressed():
                self._say(f"{run.short}: {', '.join(p.point for p in runs[0].regressed())} "
                          "regressed side by side; running it again to confirm")
                runs.append(self.side_by_side.run(a, b, project_dir=project))
                self._say_side_by_side(runs[1])
        except (SideBySideError, GitError, AsvError) as exc:
            self._say(f"side-by-side check of {run.short} unavailable: {exc}")
            return
        both = [(p, q) for p in runs[0].regressed() for q in runs[-1].regressed()
                if len(runs) == 2 and p.point == q.point]
        if runs[0].regressed() and not both:
            self._say(f"{run.short}: not confirmed side by side (the second run is "
                      "clean); no alert")
        history = self._history(run.branch)
        for first, second in both:
            self._alert(self._side_by_side_finding(run, a, first, second), run.branch, history)
        self.state.record_side_by_side(b, [[p.__dict__ for p in r.points] for r in runs])

    def _say_side_by_side(self, result: SideBySideResult) -> None:
        self._say(f"side by side {result.a[:8]} vs {result.b[:8]} ({result.seconds:.0f}s): "
                  + "; ".join(p.text() for p in result.points))

    def _side_by_side_finding(self, run: Run, parent: str, first: PointVerdict,
                        second: PointVerdict) -> Finding:
        benchmark, params = SERIES_OF_POINT.get(first.point, (first.series, ()))
        plot_series = bench_id(benchmark, params)
        cpu = [(p.cpu_a, p.cpu_b) for p in (first, second) if p.cpu_a and p.cpu_b]
        before = sum(x for x, _ in cpu) / len(cpu) if cpu else None
        after = sum(y for _, y in cpu) / len(cpu) if cpu else 0.0
        cfg = self.cfg.side_by_side
        crossed = (f"+{cfg.threshold:.0%} side by side with the parent in two runs (sign "
                   f"test alpha {cfg.alpha:g} each): {first.text()}; then {second.text()}")
        return Finding(
            "side_by_side", self.asv.machine_for(run.profile), run.profile, first.series, benchmark,
            params, "µs", parent, run.commit_hash, before, after,
            crossed, extra={"plot_series": plot_series,
                            "significance": f"paired rounds, sign test p={first.p:.3g} and "
                                            f"p={second.p:.3g} in two runs",
                            "ratios": f"{first.ratio} {second.ratio}"})

    def _say_confirmation(self, conf: Confirmation) -> None:
        """Interleaved confirmation (A B A B): the last good commit A is queued again
        (``confirm-base``, priority above ``confirm``) and then the suspect B (``confirm``),
        so B's fresh result is judged against A's fresh result measured right before it
        (asv keeps one result per commit and machine: the new ones replace the old). A
        disturbance of the machine that outlasts B's first measurement then slows A's
        re-measurement as well instead of confirming B. Without a measured good commit, B
        alone is measured again."""
        bad, base, group = conf.bad, conf.base, list(conf.findings)
        if base:
            self._say(f"{names(group)} at {bad[:8]}; re-measuring {base[:8]} (last good) "
                      f"then {bad[:8]} to confirm before alerting")
        else:
            self._say(f"{names(group)} at {bad[:8]}; re-measuring {bad[:8]} to confirm "
                      "before alerting")

    def _say_confirmation_base(self, run: Run) -> None:
        """Before a confirmation is judged: say what the suspect is judged against."""
        base = self.state.confirm_base(run.profile, run.commit_hash)
        if not base:
            return
        r = self.state.run_for(base, run.profile)
        if r is not None and r.status == "done":
            self._say(f"judging {run.short} against {base[:8]} (last good), re-measured "
                      "just before it")
        else:
            self._say(f"the re-measurement of {base[:8]} (last good) failed; judging "
                      f"{run.short} against the nearest measured commit before it")

    def _alert(self, f: Finding, branch: str, history: list[str]) -> None:
        """Open the alert and queue its message in one transaction; the plot is rendered
        before, so a kill at any point leaves either both or neither (and a judgement
        repeated after the restart then alerts)."""
        if self.state.is_open(f.key):
            return  # already open: one regression, one alert
        a = self._alert_record(f, history)
        if not self.state.open_alert(a.key, a.kind, a.series, a.benchmark, good=a.good,
                                     bad=a.bad, before=a.before, after=a.after,
                                     detail=a.detail, message=a.message):
            return
        self.stats.alerts += 1
        self._say(a.message[2]["text"] if a.message else a.key)

    def _alert_record(self, f: Finding, history: list[str]) -> AlertRecord:
        """The alert of a finding with its message (and its plot, rendered now)."""
        good, bad = self._commit(f.good), self._commit(f.bad)
        link = graph_link(self.site_url, f.benchmark, f.params, f.machine,
                          (f.good, f.bad) if f.good else ("", f.bad))
        plot, plot_url = self._plot(f, history)
        msg = messages.regression(f, good=good, bad=bad, link=link, plot=plot,
                                  plot_url=plot_url)
        return AlertRecord(f.key, f.kind, f.machine, f.bench, f.good, f.bad, f.before, f.after,
                           {"benchmark": f.benchmark, "params": f.params, "unit": f.unit,
                            **f.extra}, (f"alert|{f.key}|{f.bad}", "regression", msg))

    def _plot(self, f: Finding, history: list[str]) -> tuple[str | None, str | None]:
        status = self.state.status_of(f.profile)
        measured = [h for h in history if status.get(h) == "done"]
        if f.bad in measured:
            end = measured.index(f.bad)
            window = measured[max(0, end - self.cfg.judge.plot_history + 5): end + 5]
        else:
            window = measured[-self.cfg.judge.plot_history:]
        points: list[tuple[str, float, float | None, float | None]] = []
        for h in window:
            try:
                res = self.asv.result_for(h, f.profile)
            except ResultsError:
                continue
            m = res.by_id().get(f.extra.get("plot_series", f.bench)) if res else None
            if m is not None and m.ok and m.value is not None:
                points.append((h, m.value, m.ci[0], m.ci[1]))
        if len(points) < 1:
            return None, None
        name = plot_name(f.key)
        limit = float(f.extra["limit"]) if "limit" in f.extra else None
        try:
            path = history_png(self.plots_dir / name,
                               f"{f.extra.get('plot_series', f.bench)} [{f.machine}]", f.unit,
                               points, {f.bad}, limit)
        except Exception as exc:  # a plot is a nicety; never lose the alert over it
            self._say(f"plot failed: {exc}")
            return None, None
        return str(path), f"{self.site_url.rstrip('/')}/_plots/{name}"

    def _recovery_note(self, r: Recovery, result: ResultFile, machine: str) -> Message:
        """The note that closes an alert whose series is back (sent once: the close)."""
        alert = r.alert
        detail: dict[str, Any] = dict(alert.detail)
        params = tuple(tuple(p) for p in detail.get("params", []))
        link = graph_link(self.site_url, str(detail.get("benchmark", alert.series)),
                          params,  # type: ignore[arg-type]
                          machine, (alert.bad, result.commit))
        msg = messages.recovery(alert.series, machine, alert.kind, r.value, r.unit,
                                r.reference, self._commit(result.commit), result.commit, link)
        return (f"recovery|{alert.key}|{result.commit}", "recovery", msg)

    def _maybe_summary(self, kind: str) -> None:
        profile = self.cfg.profiles.nightly if kind == "nightly" else self.cfg.profiles.soak
        if any(r.kind == kind for r in self.state.runs(status="queued", profile=profile)):
            return
        if any(r.kind == kind for r in self.state.runs(status="running", profile=profile)):
            return
        batch, heads = self.state.batch(kind)
        batch = batch or "manual"
        rows = []
        limits: dict[str, list[messages.LimitVerdict]] = {}
        notes: list[str] = []
        # the heads the batch queued (commits may land during a 95-minute run)
        for branch in self.cfg.repository.branches:
            head_hash = heads.get(branch)
            if not head_hash:
                try:
                    head_hash = self.repo.head(branch).hash
                except GitError:
                    continue
            r = self.state.run_for(head_hash, profile)
            rows.append((branch, head_hash, r.status + (f" ({r.error})" if r.error else "")
                         if r else "not run"))
            if r is None or r.status != "done":
                continue
            notes += [f"{branch}: {ln.strip()} (at the start of the run)"
                      for ln in self.state.run_log(r.id).splitlines()
                      if ln.startswith(NOT_IDLE)]
            try:  # every limit met or breached; a broken file is said, not fatal here
                limits[branch] = messages.limit_verdicts(
                    self.asv.result_for(head_hash, profile),
                    load_baselines(self.cfg.baselines_dir), self.cfg.asv.machine, profile)
            except (ResultsError, BaselinesError) as exc:
                notes.append(f"{branch}: limits not judged: {exc}")
            notes += [f"{branch}: {n}" for n in soak_verdicts(
                self.asv.documents_dir(head_hash, profile) / "soak.json")]
        msg = messages.summary(batch, profile, rows, self.state.open_alerts(), self.site_url,
                               limits=limits, notes=notes)
        self.outbox.put(f"summary|{kind}|{batch}", "summary", msg)

    # ---- reporting --------------------------------------------------------------------

    def latest_results(self, limit: int = 40) -> dict[str, Any]:
        """Values of the newest measured commit per profile (for ``status``)."""
        out: dict[str, Any] = {}
        for r in self.state.recent_finished(50):
            if r["status"] != "done" or r["profile"] in out:
                continue
            try:
                res = self.asv.result_for(r["commit_hash"], r["profile"])
            except ResultsError as exc:
                out[r["profile"]] = {"commit": r["commit_hash"], "error": str(exc)}
                continue
            if res is None:
                continue
            out[r["profile"]] = {"commit": r["commit_hash"], "values": [
                (m.id, format_value(m.value, m.unit)) for m in res.measurements
                if m.ok][:limit]}
        return out

    def status(self) -> dict[str, Any]:
        return {
            "last_results": self.latest_results(),
            "state_dir": str(self.cfg.state_dir),
            "site": self.site_url,
            "queued": [r.__dict__ for r in self.state.runs(status="queued")],
            "running": [r.__dict__ for r in self.state.runs(status="running")],
            "recent": self.state.recent_finished(10),
            "open_regressions": self.state.open_alerts(),
            "outbox_pending": [i.__dict__ for i in self.state.outbox_all("pending")],
            "outbox_dead": [i.__dict__ for i in self.state.outbox_all("dead")],
            "dispatch": self.dispatcher.status(self),
        }


def soak_verdicts(document: Path) -> list[str]:
    """The soak's leak verdicts (its "memory: ..." and "file descriptors: ..." notes) from
    the instrument's kept document; none when the run kept no soak document."""
    try:
        doc = json.loads(document.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    notes = doc.get("notes") if isinstance(doc, dict) else None
    return [n for n in notes or [] if isinstance(n, str)
            and n.startswith(("memory:", "file descriptors:"))]
