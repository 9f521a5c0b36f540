"""Thresholds: how much worse a series may get before it is a regression.

Resolved in order: a noise-derived threshold from ``baselines/noise.toml`` (which may mark
a series *unstable*: judged, reported as such, never alerted), then the first matching
``[judge.thresholds]`` regex, then the default of the series' role (deterministic series
have their own), plus the absolute smallest change (``[[min_change]]``). The settings of
the judging live here too (``[judge]``), so the policy needs nothing from the loader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .criteria import Baselines

#: Instruction counts under valgrind (benchmarks/instructions.py).
DETERMINISTIC = r"^instructions\."

#: Raw figures with a trustworthy sibling (see ``JudgeConfig.limits_only``).
LIMITS_ONLY: tuple[str, ...] = (
    r"^load_performance\.LoadPerformance\.track_(latency_p\d+|time_per_message)\(",
    r"^end_to_end_latency\.EndToEndLatency\.track_latency_p\d+\(",
    r"\.track_(server|churn_server)_cpu_",
)


@dataclass(frozen=True)
class JudgeConfig:
    """How results are judged; thresholds are relative (0.05 = 5 % slower)."""

    default_threshold: float = 0.05
    thresholds: tuple[tuple[str, float], ...] = ()  # (regex, threshold), first match wins
    alpha: float = 0.01  # Mann-Whitney U p-value below which a change is significant
    min_samples: int = 5  # fewer samples on either side: ratio only, marked "not tested"
    use_asv_steps: bool = True
    # Re-measure a commit before alerting on a regression against its neighbour: a run
    # disturbed by something else on the machine is not repeated, a real regression is.
    confirm: bool = True
    plot_history: int = 30  # commits shown in the alert plot
    # Series whose figures the host cannot disturb (instruction counts under valgrind):
    # alerted without re-measurement, with their own default threshold.
    deterministic: str = DETERMINISTIC
    deterministic_threshold: float = 0.015
    # Series judged against limits only (the plan's absolute criteria), never against
    # history or a blessed baseline: raw wall-clock and CPU-time figures, whose history
    # is the host's as much as the commit's. Each has a trustworthy sibling that is
    # judged: host-corrected latency and time per message, instructions per message.
    limits_only: tuple[str, ...] = LIMITS_ONLY

    def threshold_for(self, benchmark: str) -> tuple[float, str]:
        """Threshold for a benchmark name and where it came from (for the alert text)."""
        for pattern, value in self.thresholds:
            if re.search(pattern, benchmark):
                return value, f"threshold /{pattern}/"
        if self.is_deterministic(benchmark):
            return self.deterministic_threshold, "default threshold of deterministic series"
        return self.default_threshold, "default threshold"

    def is_deterministic(self, bench: str) -> bool:
        return bool(self.deterministic) and re.search(self.deterministic, bench) is not None

    def is_limits_only(self, bench: str) -> bool:
        return any(re.search(p, bench) for p in self.limits_only)


@dataclass(frozen=True)
class Threshold:
    value: float  # relative
    source: str
    unstable: bool = False
    min_change: float = 0.0  # absolute, in the series' unit ([[min_change]] in limits.toml)

    def worse(self, before: float, after: float) -> bool:
        """Is ``after`` beyond this threshold over ``before``, relatively and absolutely?

        A relative change means nothing from a value below zero (a slope of -1 fd per
        minute to +0.4 is "-140 %"): there only the absolute floor can judge, and a series
        without one is not judged against history. From zero (no fd left behind), any
        growth beyond the floor is worse."""
        if before < 0:
            return self.min_change > 0 and after - before > self.min_change
        if before == 0:
            return after > self.min_change
        return after > before * (1 + self.value) and after - before > self.min_change

    def better(self, before: float, after: float) -> bool:
        if before <= 0:
            return self.min_change > 0 and before - after > self.min_change
        return after < before / (1 + self.value) and before - after > self.min_change

    def text(self, unit: str = "") -> str:
        """``16%`` or ``16% and 1 ms``, for the alert's "what was crossed"."""
        floor = f" and {self.min_change:g} {unit}".rstrip() if self.min_change else ""
        return f"{_percent(self.value)}{floor}"


def threshold_for(cfg: JudgeConfig, baselines: Baselines | None, bench: str, machine: str,
                  profile: str) -> Threshold:
    """The threshold of one series (relative, plus the absolute smallest change) and where
    it comes from."""
    floor = baselines.min_change_for(bench, machine, profile) if baselines else None
    min_change = floor.value if floor else 0.0
    if baselines is not None:
        noise = baselines.noise_for(bench, machine, profile)
        if noise is not None:
            return Threshold(noise.threshold, "noise-derived (baselines/noise.toml)",
                             noise.unstable, min_change)
    value, source = cfg.threshold_for(bench)
    return Threshold(value, source, min_change=min_change)


def _percent(value: float) -> str:
    """``16%``, ``1.5%`` (a deterministic series' threshold is below 2 %: not ``2%``)."""
    return f"{value * 100:.2g}%" if value < 0.1 else f"{value:.0%}"
