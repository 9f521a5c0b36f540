"""Noise calibration: measure one commit several times and derive thresholds from the spread.

A regression threshold is only meaningful against the noise of the machine that measures:
5 % is generous for server CPU time per message and hopeless for a p99 taken on a shared
2-core box. ``python -m scheduler calibrate`` runs the suite on the same commit ``runs``
times (each run a fresh asv benchmark process and fresh server processes), and for every
series records the run-to-run spread:

* the coefficient of variation (CV) of the per-run values (asv's median of samples);
* the distribution of run-to-run ratios (every pair of runs, larger over smaller).

The threshold of a series is the largest of a floor, ``K_SIGMA`` × CV (two standard
deviations of the difference of two independent runs) and ``MARGIN`` × the largest
run-to-run deviation actually seen — computed without the one run farthest from the
median when there are ``TRIM_FROM`` runs or more. That run is the whole-run disturbance
(measured here: one run in six with server CPU +33 %) that the confirmation exists for;
a threshold wide enough to cover it would hide every 10 % regression. Two sigma, not
three: the service re-measures a commit before it alerts (``[judge] confirm``), so noise
has to cross the threshold twice in independent runs, which squares its per-comparison
probability (about 2 % → 0.05 %).
A series whose threshold would exceed ``UNSTABLE_ABOVE`` (or that has no usable
relative scale) is marked *unstable*: the judge reports it as such and never alerts on it.
Thresholds are written to
``baselines/noise.toml`` for this machine and profile, where the judge picks them up.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import json
import math
import statistics
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler.config import Config
from scheduler.measure.asvrun import AsvProject
from scheduler.measure.gitrepo import GitRepo
from scheduler.measure.idle import check as check_idle
from scheduler.results import Measurement
from scheduler.store.baselines import dump_tables, load_baselines

#: Below this a change is not worth an alert, however steady the figure.
FLOOR = 0.03
#: The floor of a deterministic series (instruction counts): the host cannot move it,
#: so the smallest change worth an alert is set by the figure's own repeatability.
DETERMINISTIC_FLOOR = 0.01
#: The difference of two independent runs has sqrt(2) x sigma; alert beyond 2 of those
#: (a regression is confirmed by a second, independent run before anyone is alerted).
K_SIGMA = 2 * math.sqrt(2)
#: Margin over the largest run-to-run deviation seen during calibration.
MARGIN = 1.25
#: From this many runs on, the one farthest from the median is set aside (see
#: ``SeriesNoise.set_aside``).
TRIM_FROM = 5
#: A figure that cannot be judged to better than this is reported as unstable.
UNSTABLE_ABOVE = 0.5

NOISE_HEADER = """Measured noise per series: thresholds derived from run-to-run spread.
Written by `python -m scheduler calibrate` (see selftest/calibrate.py for the rule);
entries of other machines/profiles are kept. May be edited by hand: a hand-set
threshold wins until the next calibration of that machine and profile.
See baselines/README.md."""


class CalibrationError(Exception):
    """Calibration could not produce a usable measurement."""


@dataclass(frozen=True)
class SeriesNoise:
    """Run-to-run spread of one series."""

    bench: str
    unit: str
    values: tuple[float, ...]  # one per successful run
    runs: int  # runs attempted
    #: the host cannot disturb it ([judge] deterministic): no run is set aside (a run
    #: that deviates is the figure's own spread), and the floor is DETERMINISTIC_FLOOR
    deterministic: bool = False

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def cv(self) -> float:
        """Coefficient of variation of the per-run values (NaN without a scale)."""
        if len(self.values) < 2 or self.mean <= 0:
            return math.nan
        return statistics.stdev(self.values) / self.mean

    @property
    def ratios(self) -> tuple[float, ...]:
        """Run-to-run ratios (larger over smaller) of every pair of runs."""
        out = []
        for a, b in itertools.combinations(self.values, 2):
            lo, hi = min(a, b), max(a, b)
            out.append(hi / lo if lo > 0 else (1.0 if hi == lo else math.inf))
        return tuple(out)

    @property
    def max_ratio(self) -> float:
        return max(self.ratios, default=math.nan)

    @property
    def reason(self) -> str:
        """Why the series is unstable ("" when it is not)."""
        if len(self.values) < min(3, self.runs):
            return f"measured in only {len(self.values)} of {self.runs} runs"
        if self.values and all(v == 0 for v in self.values):
            return ""  # constant zero (e.g. no fd leak): steady, judged on any growth
        if self.mean <= 0 or any(v <= 0 for v in self.values):
            return "no relative scale (values at or below zero)"
        if self.threshold > UNSTABLE_ABOVE:
            return f"run-to-run spread too large (threshold would be {self.threshold:.0%})"
        return ""

    @property
    def unstable(self) -> bool:
        return bool(self.reason)

    @property
    def set_aside(self) -> float | None:
        """With ``TRIM_FROM`` runs or more, the run farthest from the median: a possible
        disturbance of the whole run, which the threshold need not cover — the
        confirmation (two independent, interleaved measurements) is what guards against
        those; the threshold is for the everyday spread."""
        if len(self.values) < TRIM_FROM or self.deterministic:
            return None
        med = statistics.median(self.values)
        return max(self.values, key=lambda v: abs(v - med))

    @property
    def kept(self) -> SeriesNoise:
        """The series without its set-aside run (itself when nothing is set aside)."""
        out = self.set_aside
        if out is None:
            return self
        values = list(self.values)
        values.remove(out)
        return dataclasses.replace(self, values=tuple(values))

    @property
    def threshold(self) -> float:
        floor = DETERMINISTIC_FLOOR if self.deterministic else FLOOR
        if self.values and all(v == 0 for v in self.values):
            return floor
        kept = self.kept
        cv = kept.cv
        if math.isnan(cv):
            return math.inf
        return max(floor, K_SIGMA * cv, MARGIN * (kept.max_ratio - 1.0))

    def to_json(self) -> dict[str, Any]:
        return {
            "bench": self.bench, "unit": self.unit, "values": list(self.values),
            "runs": self.runs, "mean": _finite(self.mean), "cv": _finite(self.cv),
            "max_ratio": _finite(self.max_ratio),
            "ratios": [_finite(r) for r in self.ratios],
            "set_aside": self.set_aside,
            "threshold": _finite(self.threshold), "unstable": self.unstable,
            "reason": self.reason, "deterministic": self.deterministic,
        }


@dataclass
class Calibration:
    """The outcome of one calibration."""

    commit: str
    machine: str
    profile: str
    runs: int
    bench: str
    series: list[SeriesNoise]
    run_seconds: list[float]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit, "machine": self.machine, "profile": self.profile,
            "runs": self.runs, "bench": self.bench, "run_seconds": self.run_seconds,
            "warnings": self.warnings, "series": [s.to_json() for s in self.series],
        }

    def table(self) -> str:
        """A human table: one line per series."""
        lines = [f"calibration of {self.commit[:8]} on {self.machine} ({self.profile}), "
                 f"{self.runs} runs, {sum(self.run_seconds):.0f} s",
                 f"{'series':<78} {'mean':>10} {'CV':>6} {'max r/r':>8} {'aside':>10} "
                 f"{'thr':>6}  note",
                 "(CV and max r/r over all runs; 'aside': the run left out of the threshold)"]
        for s in sorted(self.series, key=lambda s: s.bench):
            cv = "-" if math.isnan(s.cv) else f"{s.cv:.1%}"
            mr = "-" if math.isnan(s.max_ratio) else f"{s.max_ratio:.3f}"
            thr = "-" if math.isinf(s.threshold) else f"{s.threshold:.0%}"
            aside = "-" if s.set_aside is None else _short(s.set_aside)
            lines.append(f"{s.bench[:78]:<78} {_short(s.mean):>10} {cv:>6} {mr:>8} "
                         f"{aside:>10} {thr:>6}  "
                         f"{'UNSTABLE: ' + s.reason if s.unstable else ''}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def from_report(path: Path) -> Calibration:
    """A calibration read back from its JSON report: thresholds are derived again from the
    stored per-run values (after a change of the rule, no re-measuring needed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        series = [SeriesNoise(s["bench"], s.get("unit", ""), tuple(s["values"]), s["runs"],
                              bool(s.get("deterministic", False)))
                  for s in data["series"]]
        return Calibration(commit=data["commit"], machine=data["machine"],
                           profile=data["profile"], runs=data["runs"], bench=data["bench"],
                           series=series, run_seconds=data["run_seconds"],
                           warnings=data.get("warnings", []))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"{path}: not a calibration report: {exc}") from None


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _short(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.4g}"


def scratch_config(cfg: Config, name: str, *, bench: str | None) -> Config:
    """A configuration writing results and the site to ``<state>/<name>`` while sharing
    the asv environments (building them is the slow part)."""
    state = cfg.state_dir / name
    extra = (*cfg.asv.extra_args, *(("--bench", bench) if bench else ()))
    return dataclasses.replace(
        cfg,
        state_dir=state,
        site=dataclasses.replace(cfg.site, html_dir=state / "html"),
        asv=dataclasses.replace(cfg.asv, env_dir=cfg.asv.env_dir or cfg.state_dir / "env",
                                extra_args=extra),
    )


def series_noise(results: list[list[Measurement]], runs: int,
                 deterministic: Callable[[str], bool] = lambda bench: False,
                 ) -> list[SeriesNoise]:
    """Group the measurements of several runs by series."""
    values: dict[str, list[float]] = {}
    units: dict[str, str] = {}
    for measurements in results:
        for m in measurements:
            units[m.id] = m.unit
            values.setdefault(m.id, [])
            if m.ok and m.value is not None:
                values[m.id].append(float(m.value))
    return [SeriesNoise(b, units[b], tuple(v), runs, deterministic(b))
            for b, v in sorted(values.items())]


def calibrate(cfg: Config, *, commit: str = "HEAD", runs: int = 5, profile: str | None = None,
              bench: str | None = None,
              say: Callable[[str], None] = print) -> Calibration:
    """Measure ``commit`` ``runs`` times with ``profile`` (default: the premerge one)."""
    if runs < 3:
        raise CalibrationError("calibration needs at least 3 runs")
    profile = profile or cfg.profiles.premerge
    scratch = scratch_config(cfg, "calibration", bench=bench)
    local = cfg.repo_path() if cfg.repo_is_local() else None
    repo = GitRepo(cfg.repository.url, local_path=local, mirror_dir=cfg.state_dir / "repo.git")
    repo.fetch()
    sha = repo.resolve(commit)
    project = AsvProject(scratch, repo.path)
    quiet = check_idle()
    warnings = list(quiet.warnings)
    for w in warnings:
        say(f"warning: machine not idle: {w}")
    results: list[list[Measurement]] = []
    seconds: list[float] = []
    reports = scratch.state_dir / "runs"
    reports.mkdir(parents=True, exist_ok=True)
    for i in range(runs):
        say(f"calibration run {i + 1}/{runs} of {sha[:8]} (profile {profile})")
        started = time.monotonic()
        try:
            outcome = project.run(sha, profile)
        except BaseException:  # SIGTERM/Ctrl-C: stop asv's process group too
            project.abandon()
            raise
        seconds.append(round(time.monotonic() - started, 1))
        if outcome.status != "done":
            raise CalibrationError(f"run {i + 1} {outcome.status}: {outcome.error}\n"
                                   f"{outcome.log[-3000:]}")
        result = project.result_for(sha, profile)
        if result is None:
            raise CalibrationError(f"run {i + 1} stored no result for {sha[:8]}")
        # asv overwrites the result file of a commit: keep a copy of every run.
        (reports / f"run{i + 1}.json").write_bytes(result.path.read_bytes())
        results.append(list(result.measurements))
        say(f"  run {i + 1} done in {seconds[-1]:.0f} s ({len(result.measurements)} series)")
    late = check_idle(0.5)
    warnings += [f"after the runs: {w}" for w in late.warnings]
    return Calibration(commit=sha, machine=cfg.asv.machine, profile=profile, runs=runs,
                       bench=bench or "",
                       series=series_noise(results, runs, cfg.judge.is_deterministic),
                       run_seconds=seconds, warnings=warnings)


def write_noise(directory: Path, cal: Calibration) -> Path:
    """Replace this machine's and profile's entries of ``noise.toml`` with ``cal``'s."""
    load_baselines(directory)  # refuse to rewrite a directory that does not load
    path = directory / "noise.toml"
    kept: list[dict[str, Any]] = []
    if path.is_file():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        measured = {s.bench for s in cal.series}
        for entry in data.get("noise", []):
            same = (entry.get("machine", "") == cal.machine
                    and entry.get("profile", "") == cal.profile)
            if not (same and entry.get("benchmark") in measured):
                kept.append(entry)
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = [{
        "benchmark": s.bench, "machine": cal.machine, "profile": cal.profile,
        "threshold": round(min(s.threshold, 9.99), 4), "unstable": s.unstable,
        "cv": round(s.cv, 5) if math.isfinite(s.cv) else None,
        "max_run_ratio": round(s.max_ratio, 4) if math.isfinite(s.max_ratio) else None,
        "runs": len(s.values), "commit": cal.commit, "calibrated_at": now,
        "note": s.reason or None,
    } for s in cal.series]
    entries = sorted(kept + new, key=lambda e: (str(e.get("machine", "")),
                                                 str(e.get("profile", "")),
                                                 str(e.get("benchmark", ""))))
    text = dump_tables(NOISE_HEADER, "noise", entries)
    tomllib.loads(text)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    load_baselines(directory)
    return path


def write_report(cal: Calibration, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cal.to_json(), indent=1) + "\n", encoding="utf-8")
    return path

