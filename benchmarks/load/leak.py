"""Leak verdicts: a resource's growth rate with its confidence interval, and what it says.

A least-squares slope alone cannot say "no leak": a slope of 0.3 KiB/min means nothing
until one knows whether 0.3 ± 0.1 or 0.3 ± 50. So the fit returns the slope's standard
error too, and the verdict compares the whole 95 % interval with the leak size the run is
asked to resolve.

Why block means and an autocorrelation correction: the server is sampled every 0.1 s and
its RSS moves in steps (allocator arenas, pages) that stay for minutes, so neighbouring
samples are nearly equal and the ordinary standard error of 36 000 raw samples would be
far too small. The samples are averaged into ``blocks`` equal time blocks first — few and
long (12: four minutes each in the hour's fit), longer than those excursions — and the
standard error is widened by ``sqrt((1 + r) / (1 - r))`` with ``r`` the lag-1
autocorrelation of the residuals (the usual AR(1) correction; ``n (1 - r) / (1 + r)``
effective points). Measured on the nightly's hour (2026-12-02): with 60 blocks of 48 s the
residuals' r was 0.90 and the interval ±1.08 KiB per 1000 messages, too wide to say
anything; with 12 blocks r was 0.42 and the interval ±0.36.

The verdict's boundary is half the leak size: "leak" when the whole interval lies above
it *and* each half of the window grows faster than it on its own, "no leak" when the
interval lies below, "cannot tell" otherwise — then the run was too short or too noisy to
resolve that leak size, or the growth was one step (an arena taken once: steep in one
half, flat in the other) rather than a steady leak, and it says which instead of
guessing. A run resolves the size when the interval's half-width is under half of it.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LEAK = "leak"
NO_LEAK = "no leak"
CANNOT_TELL = "cannot tell"


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares slope (value per second) with an autocorrelation-adjusted interval."""

    slope: float
    se: float
    lo: float
    hi: float
    points: int          # block means fitted
    r1: float            # lag-1 autocorrelation of the residuals (clamped to [0, 0.95])
    dof: float           # degrees of freedom of the t quantile (effective points - 2)
    span_s: float        # time covered
    halves: tuple[float, float] | None = None  # the slope of each half on its own

    def scaled(self, factor: float) -> SlopeFit:
        """The same fit in other units (per minute, per 1000 messages, ...)."""
        halves = (self.halves[0] * factor, self.halves[1] * factor) if self.halves else None
        return SlopeFit(self.slope * factor, self.se * abs(factor),
                        min(self.lo * factor, self.hi * factor),
                        max(self.lo * factor, self.hi * factor), self.points, self.r1,
                        self.dof, self.span_s, halves)


def t_quantile(p: float, dof: float) -> float:
    """Student's t quantile (Cornish-Fisher expansion of the normal one; within 1 % of
    the exact value from 3 degrees of freedom up, which is all a verdict needs)."""
    z = statistics.NormalDist().inv_cdf(p)
    v = max(dof, 1.0)
    return (z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * v ** 3))


def block_means(points: Sequence[tuple[float, float]],
                blocks: int) -> list[tuple[float, float]]:
    """Mean (t, value) of each of ``blocks`` equal time blocks (empty blocks skipped)."""
    if not points:
        return []
    pts = sorted(points)
    t0, t1 = pts[0][0], pts[-1][0]
    width = (t1 - t0) / blocks if t1 > t0 else 0.0
    if width <= 0:
        return [(t0, statistics.fmean(v for _t, v in pts))]
    sums: dict[int, list[float]] = {}
    for t, v in pts:
        k = min(int((t - t0) / width), blocks - 1)
        acc = sums.setdefault(k, [0.0, 0.0, 0.0])
        acc[0] += t
        acc[1] += v
        acc[2] += 1
    return [(acc[0] / acc[2], acc[1] / acc[2]) for _k, acc in sorted(sums.items())]


def fit_slope(points: Sequence[tuple[float, float]], *, blocks: int = 12,
              confidence: float = 0.95) -> SlopeFit | None:
    """The slope of (t seconds, value) with its ``confidence`` interval; None with fewer
    than 5 blocks of data."""
    means = block_means(points, blocks)
    n = len(means)
    if n < 5:
        return None
    mt = statistics.fmean(t for t, _v in means)
    mv = statistics.fmean(v for _t, v in means)
    sxx = sum((t - mt) ** 2 for t, _v in means)
    if sxx <= 0:
        return None
    slope = sum((t - mt) * (v - mv) for t, v in means) / sxx
    resid = [v - (mv + slope * (t - mt)) for t, v in means]
    ssr = sum(e * e for e in resid)
    se = math.sqrt(ssr / (n - 2) / sxx)
    r1 = 0.0
    if ssr > 0:
        r1 = sum(a * b for a, b in itertools.pairwise(resid)) / ssr
    r1 = min(max(r1, 0.0), 0.95)
    se *= math.sqrt((1 + r1) / (1 - r1))
    dof = max(1.0, n * (1 - r1) / (1 + r1) - 2)
    half = t_quantile(0.5 + confidence / 2, dof) * se
    mid = n // 2
    halves = (_ols(means[:mid]), _ols(means[mid:])) if mid >= 3 else None
    return SlopeFit(slope, se, slope - half, slope + half, n, round(r1, 3), round(dof, 1),
                    means[-1][0] - means[0][0], halves)


def _ols(points: Sequence[tuple[float, float]]) -> float:
    mt = statistics.fmean(t for t, _v in points)
    mv = statistics.fmean(v for _t, v in points)
    sxx = sum((t - mt) ** 2 for t, _v in points)
    return sum((t - mt) * (v - mv) for t, v in points) / sxx if sxx > 0 else 0.0


def verdict(fit: SlopeFit | None, leak_size: float) -> str:
    """``leak`` / ``no leak`` / ``cannot tell`` for a fit in the leak size's unit."""
    if fit is None:
        return CANNOT_TELL
    boundary = leak_size / 2
    if fit.lo > boundary and (fit.halves is None or min(fit.halves) > boundary):
        return LEAK
    if fit.hi < boundary:
        return NO_LEAK
    return CANNOT_TELL


def describe(fit: SlopeFit | None, leak_size: float, unit: str) -> str:
    """One line: the verdict, the estimate with its interval, and the resolution."""
    if fit is None:
        return f"{CANNOT_TELL}: too few samples to fit a slope"
    v = verdict(fit, leak_size)
    half = (fit.hi - fit.lo) / 2
    text = (f"{v}: {fit.slope:+.3g} {unit} (95 % CI {fit.lo:+.3g} .. {fit.hi:+.3g}); "
            f"leak size {leak_size:g} {unit}, boundary {leak_size / 2:g}")
    if v == CANNOT_TELL:
        if fit.lo > leak_size / 2 and fit.halves:
            text += (f"; but the halves grew {fit.halves[0]:+.3g} and {fit.halves[1]:+.3g}: "
                     "one step, not a steady leak")
        elif half >= leak_size / 2:
            text += f"; the interval (±{half:.3g}) is too wide to resolve it: run longer"
        else:
            text += "; the estimate sits on the boundary"
    return text
