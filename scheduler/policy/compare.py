"""Comparing results: a limit breached, a regression against the blessed baseline, a
regression against recent history (Mann-Whitney U on the samples; asv's step detection
corroborates), a recovery. Only "is B worse than A, by how much, how sure": which commits
are compared is decided in :mod:`scheduler.policy.decide`. asv treats lower as better and
so does everything here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from ..results import Measurement
from .criteria import Baselines
from .thresholds import JudgeConfig, Threshold, threshold_for


class Verdict(StrEnum):
    OK = "ok"
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    UNSTABLE = "unstable"  # the series is too noisy to judge (noise.toml) — never alerted
    MISSING = "missing"  # one side has no value


@dataclass(frozen=True)
class Comparison:
    """B (after) against A (before) for one series."""

    bench: str
    unit: str
    before: float
    after: float
    ratio: float
    pvalue: float | None  # None: too few samples to test
    significant: bool
    verdict: Verdict
    threshold: Threshold

    @property
    def change_pct(self) -> float:
        return (self.ratio - 1.0) * 100.0

    def significance_text(self) -> str:
        if self.pvalue is None:
            return "not tested (too few samples)"
        return f"Mann-Whitney U p={self.pvalue:.2g}" + (
            " (significant)" if self.significant else " (not significant)")


def mann_whitney(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Two-sided p-value that A and B come from the same distribution."""
    from scipy.stats import mannwhitneyu

    if len(set(a) | set(b)) <= 1:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def compare(a: Measurement, b: Measurement, threshold: Threshold, cfg: JudgeConfig) -> Comparison:
    """Is B worse than A? A regression needs both the size (ratio beyond the threshold) and,
    when both sides have enough samples, significance (p < alpha)."""
    if not (a.ok and b.ok) or a.value is None or b.value is None:
        return Comparison(b.id, b.unit, a.value or math.nan, b.value or math.nan, math.nan,
                          None, False, Verdict.MISSING, threshold)
    before, after = a.value, b.value
    ratio = after / before if before else (math.inf if after > 0 else 1.0)
    sa, sb = a.stat_samples(), b.stat_samples()
    pvalue: float | None = None
    if len(sa) >= cfg.min_samples and len(sb) >= cfg.min_samples:
        pvalue = mann_whitney(sa, sb)
    significant = pvalue is None or pvalue < cfg.alpha
    if threshold.unstable:
        verdict = Verdict.UNSTABLE
    elif threshold.worse(before, after) and significant:
        verdict = Verdict.REGRESSION
    elif threshold.better(before, after) and significant:
        verdict = Verdict.IMPROVEMENT
    else:
        verdict = Verdict.OK
    return Comparison(b.id, b.unit, before, after, ratio, pvalue,
                      pvalue is not None and pvalue < cfg.alpha, verdict, threshold)


@dataclass
class Finding:
    """One thing worth an alert (or a recovery note)."""

    kind: str  # "limit" | "baseline" | "history" | "side_by_side" (measure/side_by_side.py)
    machine: str  # asv machine (includes the profile)
    profile: str
    bench: str  # series id
    benchmark: str  # asv benchmark name (for links)
    params: tuple[tuple[str, str], ...]
    unit: str
    good: str  # last good commit ("" for limit/baseline)
    bad: str  # first bad commit
    before: float | None
    after: float
    crossed: str  # what was crossed, in words
    comparison: Comparison | None = None
    asv_step: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identity of the regression: one key, one alert."""
        if self.kind in ("history", "side_by_side"):
            return f"{self.kind}|{self.machine}|{self.bench}|{self.bad}"
        if self.kind == "baseline":
            return f"baseline|{self.machine}|{self.bench}|{self.extra.get('baseline_commit', '')}"
        return f"limit|{self.machine}|{self.bench}"


def check_limit(m: Measurement, baselines: Baselines, machine_name: str, asv_machine: str,
                profile: str, commit: str) -> Finding | None:
    """Absolute criteria from limits.toml (per machine where the entry says so)."""
    lim = baselines.limit_for(m.id, machine_name, profile)
    if lim is None or not m.ok or m.value is None or m.value <= lim.max:
        return None
    note = f" ({lim.note})" if lim.note else ""
    return Finding("limit", asv_machine, profile, m.id, m.benchmark, m.params, m.unit, "",
                   commit, lim.max, m.value, f"limit {lim.max:g}{note}",
                   extra={"limit": repr(lim.max)})


def check_baseline(m: Measurement, baselines: Baselines, cfg: JudgeConfig, machine_name: str,
                   asv_machine: str, profile: str, commit: str) -> Finding | None:
    """Regression against the blessed value (no samples kept for baselines: ratio only)."""
    base = baselines.baseline_for(m.id, machine_name, profile)
    if base is None or not m.ok or m.value is None:
        return None
    thr = threshold_for(cfg, baselines, m.id, machine_name, profile)
    if thr.unstable or base.value <= 0 or not thr.worse(base.value, m.value):
        return None
    ratio = m.value / base.value
    comp = Comparison(m.id, m.unit, base.value, m.value, ratio, None, False,
                      Verdict.REGRESSION, thr)
    return Finding("baseline", asv_machine, profile, m.id, m.benchmark, m.params, m.unit,
                   base.commit, commit, base.value, m.value,
                   f"blessed baseline from {base.commit[:8]} + {thr.text(m.unit)} ({thr.source})",
                   comparison=comp, extra={"baseline_commit": base.commit})


def recovered(alert_kind: str, before: float | None, value: float,
              threshold: Threshold) -> bool:
    """Has an open regression recovered at this value?"""
    if before is None or not math.isfinite(value):
        return False
    if alert_kind == "limit":
        return value <= before
    return not threshold.worse(before, value)
