"""Breaking points and leak verdicts: the capacity search, the soak's slope interval, and
the capacity scenario end to end against a real server (smoke profile), with its page."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from e2e_support import scenario

from benchmarks.load.leak import (
    CANNOT_TELL,
    LEAK,
    NO_LEAK,
    describe,
    fit_slope,
    t_quantile,
    verdict,
)
from benchmarks.load.scenarios.capacity import search
from scheduler.publish import knee


def _probe(capacity: float, calls: list[float]):
    def probe(rate: float) -> bool:
        calls.append(rate)
        return rate <= capacity
    return probe


@pytest.mark.parametrize("start", [500.0, 4000.0, 30000.0])
def test_search_brackets_and_bisects(start: float) -> None:
    calls: list[float] = []
    found = search(_probe(5000.0, calls), start, factor=2.0, bisections=3, min_rate=25.0,
                   max_rate=64000.0)
    assert found.capacity is not None and found.first_fail is not None
    assert found.capacity <= 5000.0 < found.first_fail
    assert found.first_fail / found.capacity <= 2 ** (1 / 8) * 1.001  # 3 bisections of x2
    assert [r for r, _ok in found.steps] == calls


def test_search_stops_at_its_budget() -> None:
    calls: list[float] = []
    found = search(_probe(5000.0, calls), 500.0, factor=2.0, bisections=3, min_rate=25.0,
                   max_rate=64000.0, more=lambda: len(calls) < 3)
    assert calls == [500.0, 1000.0, 2000.0] and found.truncated
    assert (found.capacity, found.first_fail) == (2000.0, None)


def test_search_edges() -> None:
    top = search(_probe(1e9, []), 1000.0, factor=2.0, bisections=3, min_rate=25.0,
                 max_rate=8000.0)
    assert (top.capacity, top.first_fail) == (8000.0, None)  # max_rate passed: a bound
    bottom = search(_probe(0.0, []), 1000.0, factor=2.0, bisections=3, min_rate=100.0,
                    max_rate=8000.0)
    assert (bottom.capacity, bottom.first_fail) == (None, 100.0)


def _rss(seconds: float, leak_kib_per_s: float, seed: int) -> list[tuple[float, float]]:
    """RSS samples every 0.1 s: the leak, allocator steps (a mean-reverting walk of whole
    pages) and sampling noise, as the server's look."""
    rng = random.Random(seed)
    out, level = [], 0.0
    for i in range(int(seconds * 10)):
        t = i / 10
        if rng.random() < 0.02:
            level = 0.9 * level + rng.choice((-1, 1)) * 4 * rng.randint(1, 16)
        out.append((t, 40_000 + leak_kib_per_s * t + level + rng.gauss(0, 8)))
    return out


def test_t_quantile_close_to_exact() -> None:
    # exact two-sided 95 % quantiles: 3.182 (3), 2.228 (10), 2.009 (50)
    for dof, exact in ((3, 3.182), (10, 2.228), (50, 2.009)):
        assert abs(t_quantile(0.975, dof) / exact - 1) < 0.01


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_leak_verdict_both_ways(seed: int) -> None:
    rate = 2000.0                       # msg/s, the full soak's
    leak = 1.0 * rate / 1000            # 1 KiB per 1000 messages, in KiB/s
    per_1000 = 1000 / rate              # KiB/s -> KiB per 1000 messages
    leaky = fit_slope(_rss(600, leak, seed))
    clean = fit_slope(_rss(600, 0.0, seed))
    assert leaky is not None and clean is not None
    assert verdict(leaky.scaled(per_1000), 1.0) == LEAK
    assert verdict(clean.scaled(per_1000), 1.0) == NO_LEAK
    assert clean.scaled(per_1000).lo < 0.0 < clean.scaled(per_1000).hi  # covers zero


def test_leak_verdict_says_when_it_cannot_tell() -> None:
    # no leak, but a 512 KiB arena taken once, half way through 10 s: a steep slope
    # with a narrow interval, yet one half of the window is flat — a step, not a leak
    pts = [(t, v + (512 if t > 5 else 0)) for t, v in _rss(10, 0.0, 1)]
    fit = fit_slope(pts)
    assert fit is not None and fit.scaled(0.5).lo > 0.5
    assert verdict(fit.scaled(0.5), 1.0) == CANNOT_TELL
    assert "one step, not a steady leak" in describe(fit.scaled(0.5), 1.0, "KiB")
    # too short to say anything
    short = fit_slope(_rss(2, 0.0, 1))
    assert short is not None and verdict(short.scaled(0.5), 1.0) == CANNOT_TELL
    assert "run longer" in describe(short.scaled(0.5), 1.0, "KiB")
    assert verdict(None, 1.0) == CANNOT_TELL


def test_capacity_smoke_and_its_page(tmp_path: Path) -> None:
    doc = scenario("capacity")
    cap = doc["analysis"]["capacity"]["tools"]["echo"]["100"]
    assert cap["steps"], "no step was run"
    for step in cap["steps"]:
        assert step["passed"] == (not step["fails"])
        assert step["p99_ms"] is not None and step["offered_msg_s"] > 0
    if cap["capacity_msg_s"] is not None:  # a loaded machine may fail even the lowest step
        assert doc["metrics"]["capacity.echo.100.us_per_msg"] == pytest.approx(
            1e6 / cap["capacity_msg_s"], rel=1e-3)
    if cap["first_fail_msg_s"] is not None:
        assert cap["fails_first"], "a failing step must say what failed"
    # the knee page: a placeholder before any capacity run, then from the kept document
    empty = knee.publish(tmp_path / "none", tmp_path / "html")
    assert "No capacity measurement has been kept yet" in empty.read_text()
    docs = tmp_path / "instrument" / "abcdef12-smoke"
    docs.mkdir(parents=True)
    import json
    (docs / "capacity.json").write_text(json.dumps(doc))
    page = knee.publish(tmp_path / "instrument", tmp_path / "html")
    assert page == tmp_path / "html" / knee.PAGE
    text = page.read_text()
    assert "<code>abcdef12</code>" in text and "<td>echo</td><td>100</td>" in text
    assert (tmp_path / "html" / "capacity" / "knee-smoke.png").stat().st_size > 5000
    assert 'src="capacity/knee-smoke.png"' in text
