"""Detection self-test: plant regressions of known size in a throwaway history and see
which ones the service names, at which commit, and what it says about neutral commits.

``python -m scheduler evaluate`` copies this project into a new git repository and
builds a history on top of it: neutral commits (documentation, comments, unused code)
with planted regressions between them (see :mod:`selftest.plant`), each sized from a
measurement of the base commit so that "+10 % CPU per message" means 10 % on this
machine. It then runs the daemon's real detection path — :class:`~scheduler.pipeline.
Pipeline` measuring every commit with the premerge profile, judging each against its
measured neighbours with the thresholds in ``baselines/noise.toml``, asv's step
detection, the re-measurement of wall-clock findings, the side-by-side check against the
parent when ``[side_by_side]`` is on, one alert per regression into the outbox — and reads back
what would have been posted. Limits and
blessed baselines are left out (they judge absolute values, not commits).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler.config import Config, RepositoryConfig, SlackConfig
from scheduler.measure.idle import check as check_idle
from scheduler.pipeline import Pipeline
from scheduler.policy.thresholds import Threshold, threshold_for
from scheduler.store.baselines import dump_tables, load_baselines

from . import plant as P

#: The scenarios the planted regressions act on (overload and soak are left out: they
#: take longest and no plant targets them).
DEFAULT_BENCH = r"LoadPerformance|EndToEndLatency|ConcurrentConnections|Instructions"

_I = "instructions.Instructions."
_E2E = "end_to_end_latency.EndToEndLatency."
_LP = "load_performance.LoadPerformance."
_CC = "concurrent_connections.ConcurrentConnections."


@dataclass(frozen=True)
class Target:
    """A planted regression: the plant, the series its size is relative to, the size."""

    kind: str
    series: str  # the series id whose base value sizes the plant
    effect: float  # relative size on that series (0.10 = +10 %)
    make: Callable[[float], P.Plant]  # base value of ``series`` -> the plant


def _instr(effect: float) -> Target:
    """Every tools/call executes ``effect`` more instructions than ``echo`` does: named on
    the instruction count of any tool path (every path pays the same absolute amount)."""
    series = _I + "track_instructions_per_message(path='echo')"
    return Target("instructions", series, effect, lambda v: _expect(
        P.instructions_per_message(v * effect), series,
        *(f"{_I}track_instructions_per_message(path='{p}')"
          for p in ("status", "chat", "analyze", "listmodels")),
        _I + "track_instructions_per_message_with_open_connections("))


def _chat_path(effect: float) -> Target:
    """A regression on a provider-backed tool's own path (``chat`` only)."""
    series = _I + "track_instructions_per_message(path='chat')"
    return Target("chat-path", series, effect, lambda v: _expect(
        P.chat_instructions(v * effect), series))


def _scan(effect: float) -> Target:
    """Cost growing with the number of open connections: ``effect`` at 1000 open, a tenth
    of it at 100, next to nothing with one."""
    series = _I + "track_instructions_per_message_with_open_connections(open_connections=1000)"
    return Target("connections", series, effect, lambda v: _expect(
        P.connection_scan(v * effect), series))


def _connect(effect: float) -> Target:
    """The connection's life (handshake, initialize, close) executes ``effect`` more."""
    series = _I + "track_instructions_per_connection"
    return Target("connect", series, effect, lambda v: _expect(
        P.slow_connect_instructions(v * effect), series))


def _chat(effect: float) -> Target:
    """``chat`` waits before calling its provider: wall time, no instructions."""
    series = _E2E + "track_corrected_latency_p95(tool='chat', load='light')"
    return Target("chat-wait", series, effect, lambda v: _expect(
        P.chat_latency(round(v * effect, 2)), series,
        *(f"{_E2E}track_corrected_latency_{q}(tool='chat', load='{load}')"
          for q in ("p50", "p95", "p99") for load in ("light", "heavy"))))


def _pause(effect: float) -> Target:
    """A tail-latency regression with no CPU cost: every 5th call blocks the event loop.
    A fifth of the calls wait, so the p95 becomes about the base p80 plus the pause; a
    pause of (0.3 + effect) x the base p95 raises it by about ``effect``."""
    series = _E2E + "track_corrected_latency_p95(tool='echo', load='heavy')"
    return Target("pause", series, effect, lambda v: _expect(
        P.loop_pause(5, round(v * (0.3 + effect), 3)), series,
        *(f"{_E2E}track_corrected_latency_{q}(tool='{t}', load='heavy')"
          for q in ("p95", "p99") for t in ("echo", "status")),
        _LP + "track_corrected_latency_p95(", _LP + "track_corrected_latency_p99("))


def _leak(effect: float) -> Target:
    series = _CC + "track_memory_per_connection"
    return Target("leak", series, effect, lambda v: _expect(
        P.connection_leak(max(4, round(v * effect))), series))


def _expect(p: P.Plant, series: str, *also: str) -> P.Plant:
    """The plant must be named on its sizing series or one of ``also`` (series that
    measure the same cost another way); other series may flag too."""
    return dataclasses.replace(p, expect=tuple(re.escape(x) for x in (series, *also)))


def default_targets() -> list[Target]:
    """The issue's planted regressions: +2 % instructions per message (every path, only
    chat's path, only with 1000 connections open), +3 % per connection life, +20 % p95 of
    chat and of echo under load with no CPU cost, and a leak."""
    return [_instr(0.02), _chat_path(0.02), _scan(0.02), _connect(0.03), _chat(0.20),
            _pause(0.20), _leak(0.5)]


@dataclass
class Outcome:
    """One commit of the evaluated history and what the service said about it."""

    index: int
    commit: str
    plant: P.Plant | None  # None: the base
    alerts: list[dict[str, str]] = field(default_factory=list)
    #: the side-by-side check's runs against the parent (point verdicts per run)
    side_by_side: list[list[dict[str, Any]]] = field(default_factory=list)

    @property
    def caught(self) -> bool:
        if self.plant is None or self.plant.neutral:
            return False
        rx = [re.compile(e) for e in self.plant.expect]
        return any(any(r.search(a["bench"]) for r in rx) for a in self.alerts)


@dataclass
class Evaluation:
    profile: str
    machine: str
    bench: str
    outcomes: list[Outcome]
    thresholds: dict[str, Threshold]  # series -> its threshold
    base_values: dict[str, float]
    seconds: float
    warnings: list[str]
    failures: list[str]
    side_by_side_rule: str = ""  # what the side-by-side check calls a regression ("" if off)
    units: dict[str, str] = field(default_factory=dict)  # series -> unit

    @property
    def planted(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.plant is not None and not o.plant.neutral]

    @property
    def false_alerts(self) -> list[tuple[Outcome, dict[str, str]]]:
        return [(o, a) for o in self.outcomes
                if o.plant is not None and o.plant.neutral for a in o.alerts]

    @property
    def passed(self) -> bool:
        return all(o.caught for o in self.planted) and not self.false_alerts

    def table(self) -> str:
        lines = [f"detection self-test: profile {self.profile}, machine {self.machine}, "
                 f"{len(self.outcomes)} commits, {self.seconds / 60:.1f} min",
                 f"{'#':>2} {'commit':<8} {'change':<16} {'expected series':<44} "
                 f"{'verdict':<8} alerts"]
        for o in self.outcomes:
            if o.plant is None:
                lines.append(f"{o.index:>2} {o.commit[:8]} {'base':<16}")
                continue
            if o.plant.neutral:
                verdict = "FALSE" if o.alerts else "quiet"
                expected = "(neutral: " + o.plant.description + ")"
            else:
                verdict = "caught" if o.caught else "MISSED"
                expected = _short_series(o.plant.expect[0].replace("\\", ""))
            names = ", ".join(f"{_short_series(a['bench'])} {a['change']}" for a in o.alerts)
            lines.append(f"{o.index:>2} {o.commit[:8]} {o.plant.name:<16} {expected[:44]:<44} "
                         f"{verdict:<8} {names}")
        lines.append("")
        lines.append("smallest effect caught reliably (the series' threshold; a change must "
                     "also be significant):")
        for series, thr in sorted(self.thresholds.items()):
            base = self.base_values.get(series)
            unit = self.units.get(series, "")
            note = "UNSTABLE: not judged" if thr.unstable else f">= {thr.text(unit)}"
            lines.append(f"  {_short_series(series):<60} {note:<22} ({thr.source}; "
                         f"base {base:.4g})" if base is not None else
                         f"  {_short_series(series):<60} {note:<22} ({thr.source})")
        if self.side_by_side_rule:
            lines.append(f"  {'side by side with the parent (side_by_side.*)':<60} "
                         f"{self.side_by_side_rule}")
            lines += ["", "side by side with the parent, b/a per point (b higher in n of "
                      "the rounds; a second run only when the first flags):"]
            for o in self.outcomes:
                if o.side_by_side:
                    runs = " | ".join("; ".join(
                        f"{p['point']} {_ratio(p['ratio'])} ({p['higher']}/{p['rounds']})"
                        + ("*" if p["regression"] else "") for p in run) for run in o.side_by_side)
                    name = o.plant.name if o.plant else "base"
                    lines.append(f"  {o.index:>2} {o.commit[:8]} {name:<16} {runs}")
            lines.append("  (* = regressed in that run; alerted only when both runs say so)")
        caught = sum(o.caught for o in self.planted)
        neutral = sum(1 for o in self.outcomes if o.plant is not None and o.plant.neutral)
        lines.append("")
        lines.append(f"planted regressions caught at the right commit: {caught}/"
                     f"{len(self.planted)}; false alerts on {neutral} neutral commits: "
                     f"{len(self.false_alerts)}")
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"failure: {f}" for f in self.failures]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "machine": self.machine, "bench": self.bench,
            "seconds": round(self.seconds, 1), "passed": self.passed,
            "warnings": self.warnings, "failures": self.failures,
            "base_values": self.base_values,
            "thresholds": {k: {"threshold": v.value, "source": v.source,
                               "unstable": v.unstable, "min_change": v.min_change}
                           for k, v in self.thresholds.items()},
            "commits": [{
                "index": o.index, "commit": o.commit,
                "change": o.plant.name if o.plant else "base",
                "description": o.plant.description if o.plant else "",
                "neutral": o.plant.neutral if o.plant else True,
                "expected": list(o.plant.expect) if o.plant else [],
                "caught": o.caught, "alerts": o.alerts, "side_by_side": o.side_by_side,
            } for o in self.outcomes],
            "side_by_side_rule": self.side_by_side_rule,
        }


def _short_series(series: str) -> str:
    """``module.Class.track_x(p=v)`` -> ``Class.x(p=v)`` for tables."""
    parts = series.split("(", 1)
    name = parts[0].split(".")
    short = ".".join(name[-2:]).replace("track_", "")
    return short + ("(" + parts[1] if len(parts) > 1 else "")


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "Evaluation", "GIT_AUTHOR_EMAIL": "evaluate@localhost",
           "GIT_COMMITTER_NAME": "Evaluation", "GIT_COMMITTER_EMAIL": "evaluate@localhost",
           "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", *args], cwd=repo, check=True, text=True,
                          capture_output=True, env=env).stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def evaluation_config(cfg: Config, workdir: Path, repo: Path, *, bench: str) -> Config:
    """The service's configuration pointed at the throwaway history, console alerts only,
    judged with this project's measured noise and smallest changes (``[[min_change]]``),
    but no limits or blessed baselines: those judge the product, not the detection."""
    baselines = workdir / "baselines"
    baselines.mkdir(parents=True, exist_ok=True)
    noise = cfg.baselines_dir / "noise.toml"
    if noise.is_file():
        shutil.copy2(noise, baselines / "noise.toml")
    floors = load_baselines(cfg.baselines_dir).min_changes
    if floors:
        (baselines / "limits.toml").write_text(dump_tables(
            "The [[min_change]] entries of the project's limits.toml.", "min_change",
            [{"benchmark": f.pattern, "value": f.value, "machine": f.machine or None,
              "profile": f.profile or None, "note": f.note or None} for f in floors]),
            encoding="utf-8")
    state = workdir / "state"
    return dataclasses.replace(
        cfg,
        repository=RepositoryConfig(url=str(repo), branches=("main",),
                                    initial_commits=1000, max_queue_per_poll=1000),
        asv=dataclasses.replace(cfg.asv, env_dir=cfg.asv.env_dir or cfg.state_dir / "env",
                                extra_args=(*cfg.asv.extra_args, "--bench", bench)),
        site=dataclasses.replace(cfg.site, html_dir=workdir / "html"),
        slack=SlackConfig(backend="console"),
        state_dir=state,
        baselines_dir=baselines,
    )


def _alerts(svc: Pipeline) -> dict[str, list[dict[str, str]]]:
    """Regression alerts in the outbox, by first bad commit."""
    out: dict[str, list[dict[str, str]]] = {}
    for item in svc.state.outbox_all():
        if item.kind != "regression":
            continue
        parts = item.key.split("|")
        # alert|<kind>|<machine>|<series>|...|<bad commit>
        kind, series, bad = parts[1], parts[3], parts[-1]
        change = ""
        m = re.search(r"([+-]\d+(?:\.\d+)?%)", item.payload.get("text", ""))
        if m:
            change = m.group(1)
        out.setdefault(bad, []).append({"kind": kind, "bench": series, "change": change})
    return out


def evaluate(cfg: Config, *, project_root: Path, neutral: int = 10,
             targets: list[Target] | None = None, profile: str | None = None,
             bench: str = DEFAULT_BENCH, workdir: Path | None = None,
             say: Callable[[str], None] = print) -> Evaluation:
    """Build the history, measure every commit through the service, classify alerts."""
    targets = default_targets() if targets is None else targets
    profile = profile or cfg.profiles.premerge
    started = time.monotonic()
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="scheduler-evaluate-")) if workdir is None else workdir
    warnings = list(check_idle().warnings)
    for w in warnings:
        say(f"warning: machine not idle: {w}")
    try:
        repo = work / "repo"
        P.copy_project(project_root, repo)
        _git(repo, "init", "-q", "-b", "main")
        base = _commit(repo, "base: the project as it is")
        ecfg = evaluation_config(cfg, work, repo, bench=bench)
        ecfg = dataclasses.replace(ecfg, profiles=dataclasses.replace(
            ecfg.profiles, premerge=profile))
        svc = Pipeline(ecfg, verbose=True)
        failures: list[str] = []
        try:
            say(f"measuring the base commit {base[:8]} to size the plants")
            svc.enqueue_range(base, kind="backfill")
            svc.measure_queued()
            result = svc.asv.result_for(base, profile)
            if result is None:
                raise RuntimeError(f"the base commit {base[:8]} could not be measured: "
                                   f"{svc.state.run_log(svc.state.runs()[0].id)[-2000:]}")
            values = {m.id: float(m.value) for m in result.measurements
                      if m.ok and m.value is not None}
            plants: list[P.Plant] = []
            base_values: dict[str, float] = {}
            units = {m.id: m.unit for m in result.measurements}
            for t in targets:
                if t.series not in values:
                    failures.append(f"{t.kind}: series {t.series} not measured; not planted")
                    continue
                base_values[t.series] = values[t.series]
                plants.append(t.make(values[t.series]))
            history = _interleave(P.neutral(neutral), plants)
            outcomes = [Outcome(0, base, None)]
            for i, p in enumerate(history, 1):
                p.apply(repo)
                sha = _commit(repo, f"{p.name}: {p.description}")
                outcomes.append(Outcome(i, sha, p))
                say(f"  commit {i:>2} {sha[:8]} {p.name}: {p.description}")
            queued = svc.poll()
            say(f"measuring {queued} commits with profile {profile} (newest first)")
            svc.measure_queued()
            by_commit = _alerts(svc)
            for o in outcomes:
                o.alerts = by_commit.get(o.commit, [])
                runs = svc.state.side_by_side_verdict(o.commit)
                o.side_by_side = runs if isinstance(runs, list) else []  # else: skipped/none
            for run in svc.state.runs(status="failed"):
                failures.append(f"{run.short} failed to measure")
            # a plant that breaks a benchmark (a wait under callgrind's slowed clock ends
            # the instruction counts) leaves every later commit without those series: a
            # plant judged on them after it would be missed for that reason
            warnings += [f"benchmarks errored: {item.payload.get('text', '')[:300]}"
                         for item in svc.state.outbox_all() if item.kind == "failure"]
            baselines = load_baselines(ecfg.baselines_dir)
            thresholds = {}
            for t in targets:
                thr = threshold_for(ecfg.judge, baselines, t.series, ecfg.asv.machine, profile)
                thresholds[t.series] = thr
        except BaseException:  # SIGTERM/Ctrl-C: stop asv's process group too
            svc.abandon()
            raise
        finally:
            svc.close()
        return Evaluation(profile=profile, machine=ecfg.asv.machine, bench=bench,
                          outcomes=outcomes, thresholds=thresholds, base_values=base_values,
                          seconds=time.monotonic() - started, warnings=warnings,
                          failures=failures, side_by_side_rule=_side_by_side_rule(ecfg),
                          units=units)
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def _ratio(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "n/a"


def _side_by_side_rule(cfg: Config) -> str:
    p = cfg.side_by_side
    if not p.enabled:
        return ""
    return (f">= {p.threshold:.0%} median b/a with sign test p < {p.alpha:g}, in two runs "
            f"of {p.rounds} rounds ([side_by_side])")


def _interleave(neutral: list[P.Plant], planted: list[P.Plant]) -> list[P.Plant]:
    """Neutral commits with the planted ones spread evenly between them (never first, so
    every regression has a measured neutral predecessor)."""
    out: list[P.Plant] = []
    gap = max(1, math.ceil(len(neutral) / (len(planted) + 1))) if planted else len(neutral)
    queue = list(planted)
    for i, n in enumerate(neutral, 1):
        out.append(n)
        if queue and i % gap == 0:
            out.append(queue.pop(0))
    return out + queue


def write_report(evaluation: Evaluation, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(evaluation.to_json(), indent=1) + "\n", encoding="utf-8")
    return path

