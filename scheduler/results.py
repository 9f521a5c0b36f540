"""The result model the judge works on, independent of asv's file format.

Why a separate model: judging, plotting and blessing should not care how asv lays out its
JSON (``asvrun`` translates). One ``Measurement`` is one benchmark × one parameter
combination for one commit on one machine/profile; its ``id`` is the stable name used in
baselines, alert keys and thresholds.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path


class ResultsError(Exception):
    """A result file is missing, truncated or not in the expected format."""


Params = tuple[tuple[str, str], ...]


def bench_id(benchmark: str, params: Params) -> str:
    """``name`` or ``name(p1=repr, p2=repr)`` — the key used everywhere for one series."""
    if not params:
        return benchmark
    return f"{benchmark}({', '.join(f'{k}={v}' for k, v in params)})"


@dataclass(frozen=True)
class Measurement:
    """One benchmark value (asv's median of samples) with its samples and 99 % CI."""

    benchmark: str
    params: Params
    value: float | None  # None: the benchmark failed; NaN: skipped
    samples: tuple[float, ...]
    ci: tuple[float | None, float | None]
    unit: str = ""
    version: str = ""

    @property
    def id(self) -> str:
        return bench_id(self.benchmark, self.params)

    @property
    def ok(self) -> bool:
        return self.value is not None and math.isfinite(self.value)

    def stat_samples(self) -> tuple[float, ...]:
        """Samples for statistics; a lone value when asv kept no samples."""
        if self.samples:
            return self.samples
        return (self.value,) if self.ok and self.value is not None else ()

    def spread(self) -> float:
        """Relative half-width of the 99 % CI (0 when unknown) — input for an "unstable"
        verdict and for noise-derived thresholds."""
        lo, hi = self.ci
        if lo is None or hi is None or not self.ok or not self.value:
            return 0.0
        return abs(hi - lo) / 2 / abs(self.value)


@dataclass(frozen=True)
class ResultFile:
    """All measurements asv stored for one commit on one machine."""

    path: Path
    commit: str
    machine: str
    date: int
    measurements: tuple[Measurement, ...]

    def by_id(self) -> dict[str, Measurement]:
        return {m.id: m for m in self.measurements}


@dataclass(frozen=True)
class StepRegression:
    """One step found by asv's step detection (``asv publish`` → regressions.json)."""

    benchmark: str
    params: Params
    machine: str
    good: str
    bad: str
    before: float
    after: float

    @property
    def id(self) -> str:
        return bench_id(self.benchmark, self.params)


def median(values: tuple[float, ...] | list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def format_value(value: float | None, unit: str) -> str:
    """Human-readable value: seconds get ms/µs, bytes get MB; others as is."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if unit == "seconds":
        if abs(value) >= 1:
            return f"{value:.3g} s"
        if abs(value) >= 1e-3:
            return f"{value * 1e3:.3g} ms"
        return f"{value * 1e6:.3g} µs"
    if unit == "bytes":
        return f"{value / 1e6:.3g} MB"
    suffix = f" {unit}" if unit and unit != "unit" else ""
    return f"{value:.4g}{suffix}"
