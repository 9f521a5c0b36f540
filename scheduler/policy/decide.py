"""The judgement of one measured commit, as a pure function: evidence in, decision out.

In the spirit of a sans-I/O protocol core: :func:`decide` reads no database, runs no
process, asks no clock and no git. The pipeline gathers the :class:`Evidence` (results of
the commit and its measured neighbours, the branch's history and run statuses, limits,
blessed baselines, measured noise, asv's steps, confirmations, open alerts), calls
:func:`decide`, and applies the :class:`Decision` (alerts, recovery notes, runs to queue,
notes to say) in one transaction. So every rule here is tested directly, table-driven,
without fakes (tests/scheduler/test_policy.py).

The rules, in order:

1. **History**: the commit against its previous and its next measured commit on the
   branch (first-parent), series by series (:func:`~scheduler.policy.compare.compare`: threshold
   and Mann-Whitney U). A regression with unmeasured commits in between is not alerted
   in a premerge run: the middle one is queued instead (bisection), until the pair is
   adjacent and the alert names the first bad commit.
2. **Limits and blessed baselines** — only for the newest measured commit of the branch
   (only it speaks for the branch's current state).
3. **asv's step detection** corroborates history findings and adds steps ending at this
   commit that the pairwise test missed.
4. **Roles of series** (``[judge]``): a ``limits_only`` series (raw wall-clock or CPU
   time) is judged against limits only; a ``deterministic`` one (instruction counts) is
   alerted at once; any other history finding waits for its confirmation (the last good
   commit and the suspect measured again, back to back) — one confirmation at a time,
   the earliest suspect first; a confirmation run alerts only the series that regressed
   in both of its measurements.
5. **Recoveries** (newest commit only): an open alert whose series is back within its
   threshold (a limit: under it) is closed with a note; one whose limit was removed or
   whose blessed baseline was replaced is closed without one.

No finding is dropped on evidence that did not measure its series: the only filters are
the series' own role, its own re-measurement and its own threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..results import ResultFile, StepRegression
from .compare import Finding, Verdict, check_baseline, check_limit, compare, recovered
from .criteria import Baselines
from .neighbours import between, bisection_point, earliest, neighbours, unmeasured
from .thresholds import JudgeConfig, threshold_for


@dataclass(frozen=True)
class RunInfo:
    """The measurement being judged."""

    commit: str
    branch: str
    profile: str
    kind: str  # poll | backfill | bisect | nightly | soak | confirm (confirm-base: not judged)


@dataclass(frozen=True)
class OpenAlert:
    """An alert that is open (state's ``alerts`` table)."""

    key: str
    kind: str  # history | baseline | limit | side-by-side
    series: str  # the series id
    bad: str
    before: float | None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evidence:
    """Everything :func:`decide` may look at."""

    run: RunInfo
    machine: str  # the asv machine of this profile (alert keys; asv's steps are per machine)
    machine_name: str  # the configured machine: scope of limits, baselines, noise
    premerge: bool  # the run's profile is the premerge one: bisection applies
    history: tuple[str, ...]  # first-parent commits of the branch, oldest first
    status: Mapping[str, str]  # commit -> run status at this profile
    results: Mapping[str, ResultFile]  # the commit's and its measured neighbours' results
    baselines: Baselines
    judge: JudgeConfig
    steps: tuple[StepRegression, ...] = ()  # asv's steps (empty when off or unavailable)
    confirmed: frozenset[str] = frozenset()  # commits measured again for a confirmation
    held: Mapping[str, frozenset[str]] = field(default_factory=dict)  # suspect -> series
    open_alerts: tuple[OpenAlert, ...] = ()


@dataclass(frozen=True)
class Bisect:
    """Measure ``commit`` next: a regression's first bad commit is hidden in a gap."""

    commit: str
    note: str  # said when the run is newly queued


@dataclass(frozen=True)
class Confirmation:
    """Measure ``base`` (the last good commit; "" when none) and then ``bad`` again; the
    series whose regression at ``bad`` awaits that second measurement."""

    bad: str
    base: str
    series: frozenset[str]
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class Recovery:
    """An open alert whose series is back: close it and say so."""

    alert: OpenAlert
    value: float
    unit: str
    reference: float | None  # the value it is back within (a limit's max, the before)


@dataclass
class Decision:
    """What to do about one judged commit."""

    findings: list[Finding] = field(default_factory=list)  # everything found
    alerts: list[Finding] = field(default_factory=list)  # to alert now
    bisect: list[Bisect] = field(default_factory=list)
    confirmation: Confirmation | None = None
    recoveries: list[Recovery] = field(default_factory=list)
    close_silently: list[str] = field(default_factory=list)  # alert keys
    notes: list[str] = field(default_factory=list)


def decide(ev: Evidence) -> Decision:
    """Judge ``ev.run``'s commit (see the module docstring for the rules)."""
    out = Decision()
    run = ev.run
    result = ev.results.get(run.commit)
    if result is None:
        raise ValueError(f"no result for {run.commit[:8]} in the evidence")
    near = neighbours(ev.history, ev.status, run.commit)
    for a, b in ((near.previous, run.commit), (run.commit, near.next)):
        if a and b:
            out.findings += _history(ev, a, b, out)
    if near.newest:
        out.findings += _limits_and_baselines(ev, result)
    if ev.judge.use_asv_steps:
        out.findings += _asv_steps(ev, result, out.findings)
    findings = list(out.findings)
    if run.kind == "confirm":
        findings = _seen_twice(ev, findings, out)
    out.alerts = _hold_for_confirmation(ev, findings, out)
    if run.kind == "confirm" and not any(
            f.kind == "history" and f.bad == run.commit for f in out.findings):
        out.notes.append(f"{run.commit[:8]}: not confirmed (no regression when measured "
                         "again); no alert")
    if near.newest:
        _recoveries(ev, result, out)
    return out


def _history(ev: Evidence, a: str, b: str, out: Decision) -> list[Finding]:
    ra, rb = ev.results.get(a), ev.results.get(b)
    if ra is None or rb is None:
        return []
    gap = between(ev.history, a, b)
    candidates = unmeasured(ev.history, ev.status, a, b)
    found: list[Finding] = []
    mb = rb.by_id()
    for ma in ra.measurements:
        m2 = mb.get(ma.id)
        if m2 is None or ma.version != m2.version:
            continue  # a changed benchmark (asv version) is not a regression
        if ev.judge.is_limits_only(ma.id):
            continue  # its history is the host's as much as the commit's
        thr = threshold_for(ev.judge, ev.baselines, ma.id, ev.machine_name, ev.run.profile)
        comp = compare(ma, m2, thr, ev.judge)
        if comp.verdict is not Verdict.REGRESSION:
            continue
        if candidates and ev.premerge:
            mid = bisection_point(candidates)
            if all(x.commit != mid for x in out.bisect):
                out.bisect.append(Bisect(mid, (
                    f"{ma.id}: {comp.change_pct:+.1f}% between {a[:8]} and {b[:8]}; "
                    f"bisecting at {mid[:8]} ({len(candidates)} unmeasured)")))
            continue
        if not gap:
            crossed = f"{thr.text(ma.unit)} over the previous commit ({thr.source})"
        elif not ev.premerge:
            crossed = (f"{thr.text(ma.unit)} over the previous {ev.run.profile} run, "
                       f"{len(gap) + 1} commits earlier ({thr.source})")
        else:
            crossed = (f"{thr.text(ma.unit)} over the previous measured commit "
                       f"({thr.source}); {len(gap)} commit(s) in between could not "
                       "be measured")
        found.append(Finding("history", ev.machine, ev.run.profile, ma.id, ma.benchmark,
                             ma.params, ma.unit, a, b, comp.before, comp.after, crossed,
                             comparison=comp))
    return found


def _limits_and_baselines(ev: Evidence, result: ResultFile) -> list[Finding]:
    found = []
    for m in result.measurements:
        f = check_limit(m, ev.baselines, ev.machine_name, ev.machine, ev.run.profile,
                        ev.run.commit)
        if f:
            found.append(f)
        if ev.judge.is_limits_only(m.id):
            continue
        f = check_baseline(m, ev.baselines, ev.judge, ev.machine_name, ev.machine,
                           ev.run.profile, ev.run.commit)
        if f:
            found.append(f)
    return found


def _asv_steps(ev: Evidence, result: ResultFile, findings: list[Finding]) -> list[Finding]:
    """asv's step detection (``regressions.json`` of the last publish): marks agreeing
    findings, and reports a step ending at this commit that the pairwise test missed
    (e.g. single-sample series) — unless unmeasured commits hide where it started."""
    mine = [s for s in ev.steps if s.machine == ev.machine]
    for f in findings:
        if f.kind == "history" and any(s.id == f.bench and s.bad == f.bad for s in mine):
            f.asv_step = True
    seen = {f.bench for f in findings if f.kind == "history"}
    current = result.by_id()
    extra: list[Finding] = []
    for s in mine:
        m = current.get(s.id)
        if (s.bad != ev.run.commit or s.id in seen or m is None
                or ev.judge.is_limits_only(s.id)):
            continue
        good = s.good
        if not good:  # asv leaves it out when the step is a single commit
            pos = ev.history.index(s.bad) if s.bad in ev.history else 0
            good = ev.history[pos - 1] if pos > 0 else ""
        if not good:
            continue
        if unmeasured(ev.history, ev.status, good, s.bad):
            continue
        thr = threshold_for(ev.judge, ev.baselines, s.id, ev.machine_name, ev.run.profile)
        if thr.unstable or s.before <= 0 or not thr.worse(s.before, s.after):
            continue
        seen.add(s.id)
        extra.append(Finding(
            "history", ev.machine, ev.run.profile, s.id, m.benchmark, m.params, m.unit,
            good, s.bad, s.before, s.after,
            f"asv step detection: a step of {s.after / s.before - 1:+.0%} in the recent "
            f"history, over the {thr.text(m.unit)} threshold ({thr.source})",
            asv_step=True))
    return extra


def needs_confirmation(ev: Evidence, f: Finding) -> bool:
    """A history regression is alerted once its first bad commit has been measured a
    second time — unless its series is deterministic (a second count is the same
    count) or confirmation is off."""
    return (f.kind == "history" and ev.judge.confirm
            and not ev.judge.is_deterministic(f.bench) and f.bad not in ev.confirmed)


def _hold_for_confirmation(ev: Evidence, findings: list[Finding],
                           out: Decision) -> list[Finding]:
    """The findings to alert now; those that need confirmation are held and the earliest
    suspect's confirmation is decided. Findings at one first bad commit share one
    confirmation; one pair at a time keeps the interleaving A B back to back — a later
    suspect can only be the next measured commit, found again when this one's
    confirmation is judged."""
    held = [f for f in findings if needs_confirmation(ev, f)]
    if not held:
        return findings
    by_bad: dict[str, list[Finding]] = {}
    for f in held:
        by_bad.setdefault(f.bad, []).append(f)
    first, *later = earliest(ev.history, list(by_bad))
    group = by_bad[first]
    out.confirmation = Confirmation(
        first, confirmation_base(ev, group),
        frozenset(ev.held.get(first, frozenset()) | {f.bench for f in group}), tuple(group))
    for bad in later:
        out.notes.append(f"{names(by_bad[bad])} at {bad[:8]}: judged again after "
                         f"{first[:8]} is confirmed")
    ids = {id(f) for f in held}
    return [f for f in findings if id(f) not in ids]


def confirmation_base(ev: Evidence, group: list[Finding]) -> str:
    """The good commit to measure again before the suspect: of the findings' good commits
    the nearest to it (the re-judgement compares the suspect with its nearest measured
    predecessor) whose last measurement succeeded; "" when there is none."""
    bad = group[0].bad
    goods = sorted({f.good for f in group if f.good and f.good != bad},
                   key=lambda h: ev.history.index(h) if h in ev.history else -1,
                   reverse=True)
    return next((g for g in goods if ev.status.get(g) == "done"), "")


def _seen_twice(ev: Evidence, findings: list[Finding], out: Decision) -> list[Finding]:
    """A confirmation alerts only the series that regressed in *both* measurements of the
    suspect: one that regressed only in the re-measurement is one measurement again,
    exactly the evidence the confirmation exists to distrust."""
    held = ev.held.get(ev.run.commit)
    if held is None:
        return findings  # a confirmation queued before the series were recorded
    dropped = [f for f in findings if f.kind == "history" and f.bad == ev.run.commit
               and f.bench not in held]
    if dropped:
        out.notes.append(f"{names(dropped)} at {ev.run.commit[:8]}: only in the "
                         "re-measurement, not in the first measurement; not alerted")
    ids = {id(f) for f in dropped}
    return [f for f in findings if id(f) not in ids]


def _recoveries(ev: Evidence, result: ResultFile, out: Decision) -> None:
    current = result.by_id()
    for alert in ev.open_alerts:
        m = current.get(alert.series)
        if m is None or not m.ok or m.value is None or alert.bad == result.commit:
            continue
        thr = threshold_for(ev.judge, ev.baselines, m.id, ev.machine_name, ev.run.profile)
        reference = alert.before
        if alert.kind == "limit":
            lim = ev.baselines.limit_for(m.id, ev.machine_name, ev.run.profile)
            if lim is None:  # the limit was removed: nothing left to breach
                out.close_silently.append(alert.key)
                continue
            reference = lim.max
        elif alert.kind == "baseline":
            base = ev.baselines.baseline_for(m.id, ev.machine_name, ev.run.profile)
            if base is None or base.commit != alert.detail.get("baseline_commit"):
                out.close_silently.append(alert.key)  # superseded by a new blessing
                continue
        if recovered(alert.kind, reference, m.value, thr):
            out.recoveries.append(Recovery(alert, m.value, m.unit, reference))


def names(findings: list[Finding]) -> str:
    """``bench +12.3%, other +8.0%`` for a say-line."""
    return ", ".join(f"{f.bench} {f.comparison.change_pct:+.1f}%" if f.comparison
                     else f.bench for f in findings)
