"""Judging: Mann-Whitney + threshold, precedence of thresholds, limits, unstable series."""

from __future__ import annotations

import random
from pathlib import Path

from scheduler.policy.compare import Verdict, check_limit, compare, recovered
from scheduler.policy.criteria import Baselines, Limit, MinChange, Noise
from scheduler.policy.thresholds import JudgeConfig, Threshold, threshold_for
from scheduler.results import Measurement


def meas(value: float, spread: float = 0.01, n: int = 20, seed: int = 1) -> Measurement:
    rnd = random.Random(seed)
    samples = tuple(value * (1 + rnd.uniform(-spread, spread)) for _ in range(n))
    return Measurement("b.Suite.track_x", (("clients", "10"),), value, samples,
                       (value * 0.99, value * 1.01), "seconds", "1")


CFG = JudgeConfig(default_threshold=0.05, thresholds=(("track_noisy", 0.5),), alpha=0.01)


def test_regression_needs_size_and_significance() -> None:
    thr = threshold_for(CFG, None, "b.Suite.track_x", "m", "p")
    assert compare(meas(1.0), meas(1.5, seed=2), thr, CFG).verdict is Verdict.REGRESSION
    assert compare(meas(1.0), meas(1.02, seed=2), thr, CFG).verdict is Verdict.OK
    assert compare(meas(1.5), meas(1.0, seed=2), thr, CFG).verdict is Verdict.IMPROVEMENT
    # large but noisy and overlapping: not significant -> OK
    noisy_a, noisy_b = meas(1.0, spread=0.9, n=6), meas(1.1, spread=0.9, n=6, seed=3)
    assert compare(noisy_a, noisy_b, thr, CFG).verdict is Verdict.OK


def test_threshold_precedence_and_unstable() -> None:
    assert threshold_for(CFG, None, "x.track_noisy", "m", "p").value == 0.5
    assert threshold_for(CFG, None, "x.track_other", "m", "p").value == 0.05
    noise = Baselines(Path("."), (), (), (Noise("b.Suite.track_x(clients=10)", 0.2,
                                                unstable=True),))
    thr = threshold_for(CFG, noise, "b.Suite.track_x(clients=10)", "m", "p")
    assert thr.value == 0.2 and thr.unstable
    assert compare(meas(1.0), meas(3.0, seed=2), thr, CFG).verdict is Verdict.UNSTABLE


def test_limit_per_machine() -> None:
    bl = Baselines(Path("."), (Limit(r"track_x\(clients=10\)", 0.1, note="p95 < 100 ms"),
                               Limit(r"track_x", 0.5, machine="slowbox")), (), ())
    m = meas(0.2)
    f = check_limit(m, bl, "fastbox", "fastbox-quick", "quick", "abc")
    assert f is not None and f.kind == "limit" and "p95 < 100 ms" in f.crossed
    assert check_limit(m, bl, "slowbox", "slowbox-quick", "quick", "abc") is None
    assert check_limit(meas(0.05), bl, "fastbox", "fastbox-quick", "quick", "abc") is None


def test_min_change_is_an_absolute_floor_on_top_of_the_relative_threshold() -> None:
    """1.5 -> 1.9 ms is +27 % but under a 1 ms floor: not a regression; 1.5 -> 3 ms is."""
    bl = Baselines(Path("."), (), (), (Noise("b.Suite.track_x(clients=10)", 0.16),),
                   (MinChange(r"track_x\(", 1.0), MinChange(r"track_x\(", 5.0, machine="slow")))
    thr = threshold_for(CFG, bl, "b.Suite.track_x(clients=10)", "m", "p")
    assert (thr.value, thr.min_change) == (0.16, 1.0)
    assert threshold_for(CFG, bl, "b.Suite.track_x(clients=10)", "slow", "p").min_change == 5.0
    assert threshold_for(CFG, bl, "b.Suite.track_y", "m", "p").min_change == 0.0
    assert compare(meas(1.5), meas(1.9, seed=2), thr, CFG).verdict is Verdict.OK
    assert compare(meas(1.5), meas(3.0, seed=2), thr, CFG).verdict is Verdict.REGRESSION
    assert compare(meas(1.9), meas(1.5, seed=2), thr, CFG).verdict is Verdict.OK
    assert compare(meas(3.0), meas(1.5, seed=2), thr, CFG).verdict is Verdict.IMPROVEMENT
    # recovered once it is no longer worse by both measures
    assert recovered("history", 1.5, 2.2, thr) and not recovered("history", 1.5, 2.6, thr)
    assert thr.text("ms") == "16% and 1 ms"


def test_a_series_below_zero_is_judged_only_on_its_absolute_floor() -> None:
    """A soak slope of -1 fd/min going to +0.4 is "-140 %": meaningless as a ratio."""
    plain = Threshold(0.05, "t")
    assert not plain.worse(-1.0, 0.4) and not plain.better(-1.0, -2.0)
    floored = Threshold(0.05, "t", min_change=1.0)
    assert not floored.worse(-1.0, -0.5) and floored.worse(-1.0, 0.5)
    # from zero (no fd left behind) any growth beyond the floor is worse
    assert plain.worse(0.0, 1.0) and not floored.worse(0.0, 0.5)
