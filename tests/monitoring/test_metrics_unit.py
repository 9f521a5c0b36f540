"""``ServerMetrics`` on its own: percentile maths, windows, the disabled mode, hook cost."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from toolserver.metrics import COARSE_BOUNDS, FINE_BOUNDS, ServerMetrics, percentile


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_bucket_bounds_are_sorted_and_coarse_is_a_subset() -> None:
    assert list(FINE_BOUNDS) == sorted(set(FINE_BOUNDS))
    assert set(COARSE_BOUNDS) <= set(FINE_BOUNDS)
    assert FINE_BOUNDS[0] <= 1e-6 and FINE_BOUNDS[-1] >= 60


def test_percentiles_are_within_bucket_resolution() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-6, 1.0) for _ in range(20_000)]  # median about 2.5 ms
    m = ServerMetrics()
    for v in values:
        m.request_done("tools/call", "echo", "ok", v)
    m.tick()
    lat = m.snapshot()["latency"]["by_tool"]["echo"]
    assert lat["count"] == len(values)
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        want = exact(values, q) * 1000
        assert abs(lat[key] - want) / want < 0.15, (key, lat[key], want)
    assert abs(lat["mean_ms"] - sum(values) / len(values) * 1000) < 1e-3


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([0] * (len(FINE_BOUNDS) + 1), 0.5) is None


def test_windows_and_rates_come_from_ticks() -> None:
    m = ServerMetrics()
    for _ in range(500):
        m.message_in(10)
        m.request_done("tools/call", "echo", "ok", 0.002)
    time.sleep(0.2)
    m.tick()
    doc = m.snapshot()
    # 500 messages between two ticks about 0.2 s apart: about 2,500/s
    assert 1000 < doc["messages"]["rate_in"]["1s"] < 3000
    m.tick()
    assert m.snapshot()["messages"]["rate_in"]["1s"] == 0  # nothing since the last tick
    assert m.snapshot()["latency"]["last_1s"]["count"] == 0
    assert m.snapshot()["latency"]["overall"]["count"] == 500  # still inside the 60 s window


def test_busy_is_counted_but_not_in_latency() -> None:
    m = ServerMetrics()
    m.request_done("tools/call", "echo", "busy", 0.0)
    m.request_done("tools/call", "echo", "ok", 0.01)
    m.tick()
    doc = m.snapshot()
    assert doc["rejections"]["overload"] == 1
    assert doc["requests"]["by_tool"]["echo"]["busy"] == 1
    assert doc["latency"]["by_tool"]["echo"]["count"] == 1


def test_disabled_hooks_are_noops_and_exposition_still_parses() -> None:
    m = ServerMetrics(enabled=False)
    m.connection_opened()
    m.message_in(100)
    m.request_done("tools/call", "echo", "ok", 0.1)
    m.provider_call("glm", False, 0.1)
    m.set_inflight(3)
    doc = m.snapshot()
    assert doc["enabled"] is False
    assert doc["messages"]["in"] == 0 and doc["requests"]["total"] == 0
    assert doc["inflight"]["current"] == 0 and doc["providers"] == {}
    names = {f.name for f in text_string_to_metric_families(m.prometheus_text().decode())}
    assert "toolserver_metrics_enabled" in names and "process_cpu_seconds" in names


_HOOKS = """
from toolserver.metrics import ServerMetrics
m = ServerMetrics(enabled={enabled})
mi, mo, rd, si = m.message_in, m.message_out, m.request_done, m.set_inflight
for _ in range({n}):
    mi(120)
    si(1)
    rd("tools/call", "echo", "ok", 0.00042)
    si(0)
    mo(150)
"""


def _instructions(script: str) -> int:
    """Instructions this interpreter executes running ``script`` (valgrind's count: the
    same on a busy host as on an idle one)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, "-c", script],
            capture_output=True, text=True, check=False,
            env={**os.environ, "PYTHONHASHSEED": "0"})
    match = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    assert proc.returncode == 0 and match, proc.stderr[-2000:]
    return int(match.group(1))


@pytest.mark.skipif(shutil.which("valgrind") is None,
                    reason="valgrind not installed (bash scripts/bootstrap.sh installs it)")
def test_hook_cost_per_message_is_small() -> None:
    """The hooks one echo round trip triggers (5 calls), in instructions: about 7,600
    (3,000 with the hooks disabled) where a whole echo costs about 150,000. The bound
    catches an accidental prometheus_client call or allocation on the hot path (10x
    more); an instruction count, unlike a timing, does not depend on how busy the
    machine is."""
    n = 2000
    per_trip = (_instructions(_HOOKS.format(enabled=True, n=n))
                - _instructions(_HOOKS.format(enabled=True, n=0))) / n
    print(f"hooks per echo round trip: {per_trip:.0f} instructions")
    assert 0 < per_trip < 15_000
