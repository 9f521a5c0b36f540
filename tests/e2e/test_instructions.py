"""The instruction-count instrument's decisions and its failure modes (no valgrind run).

The measurement itself runs under valgrind in tests/asv (the smoke suite and the
``asv continuous`` gate over a docs-only commit and a +3 % instruction plant).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import REPO

from benchmarks import instructions as asv_instructions
from benchmarks.load import instructions as I
from benchmarks.load import profiles
from selftest.plant import instructions_per_call, iterations_for_instructions


def test_profiles_give_asv_enough_samples() -> None:
    for name in profiles.PROFILES:
        p = profiles.instructions_params(name)
        # Mann-Whitney at p < 0.002 needs 7 a side, after a window with a collector pass
        assert p.windows >= 8, name
        assert all(I.messages_for(path, p) >= 1 for path in I.PATHS)
        # the idle windows fit in the idle server's steady stretch, with room for retries
        assert p.windows * p.idle_seconds + 6 <= I.IDLE_UNTIL_S - I.IDLE_FROM_S, name
    assert 1000 in profiles.instructions_params("quick").open_connections
    p = profiles.instructions_params("smoke", {"windows": "11", "open_connections": "1,10"})
    assert p.windows == 11 and p.open_connections == (1, 10)
    with pytest.raises(ValueError, match="no parameter"):
        profiles.instructions_params("smoke", {"nope": "1"})


def test_windows_with_a_collector_pass_are_left_out_of_the_samples() -> None:
    # the smoke base of analyze on 2026-12-02: one window in seven held a pass (+7 %)
    analyze = [325135.9, 325303.3, 325045.4, 324909.0, 324443.8, 324414.0, 348655.3]
    assert I.without_collector(analyze) == analyze[:6]
    steady = [299445.15, 299306.6, 299383.85, 299314.875, 299291.45, 299227.525]
    assert I.without_collector(steady) == steady  # within 0.1 %: all kept
    assert I.without_collector([]) == []
    # cheaper windows are never left out (a pass makes a window dearer, never cheaper)
    assert I.without_collector([100.0, 100.0, 100.0, 90.0]) == [100.0, 100.0, 100.0, 90.0]


def test_server_arguments_are_deterministic(tmp_path: Path) -> None:
    args = I.server_arguments(profiles.instructions_params("quick"), tmp_path)
    assert args[args.index("--provider-latency-ms") + 1] == "0"
    assert args[args.index("--provider-spread-ms") + 1] == "0"
    # room for the measuring connection, 1000 others and a window of connection lives
    assert int(args[args.index("--max-connections") + 1]) > 1001
    none = I.server_arguments(profiles.instructions_params("quick", {"request_log": "none"}),
                              tmp_path)
    assert none[none.index("--request-log") + 1] == "none"
    with pytest.raises(ValueError, match="request_log"):
        I.server_arguments(profiles.instructions_params("quick", {"request_log": "pg"}),
                           tmp_path)


def test_idle_windows_keep_one_tick_a_second() -> None:
    def w(count: int) -> I.Window:
        return I.Window("idle_per_second", 2, count, 2.0)

    # a window that missed a tick (a late one went into the next) is dropped with it
    windows = [w(3_600_000), w(3_610_000), w(1_800_000), w(5_400_000), w(3_605_000)]
    assert [x.count for x in I.usable_idle(windows)] == [3_600_000, 3_610_000, 3_605_000]
    assert I.usable_idle([]) == []


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
def test_plant_loop_is_sized_in_instructions() -> None:
    # both sides of CPython's small-int cache (the loop's cost per iteration doubles)
    for target in (5_000, 60_000):
        n = iterations_for_instructions(target)
        assert abs(instructions_per_call(n) - target) <= 0.01 * target, (target, n)
    assert iterations_for_instructions(60_000) > 256 > iterations_for_instructions(5_000)


def test_missing_valgrind_is_a_clear_error_and_nan_in_asv(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.load.instructions", "--server-python",
         sys.executable], cwd=REPO, env={"PATH": str(tmp_path)}, capture_output=True,
        text=True, timeout=60)
    assert proc.returncode == 3
    assert "valgrind not found" in proc.stderr
    assert math.isnan(asv_instructions._figure({"skipped": "valgrind not found"}, "x"))


def test_help_names_the_figures() -> None:
    text = I.build_parser().format_help()
    assert "valgrind" in text and "libfaketime" in text and "--server-python" in text


def test_a_request_that_waits_past_the_timeout_says_why(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    # the real server, its provider slower than the driver's timeout: what a path that
    # sleeps looks like to the driver under callgrind's slowed clock
    import asyncio

    from benchmarks.load.api import start_server
    from benchmarks.load.protocol import default_call

    monkeypatch.setattr(I, "TIMEOUT_S", 0.3)
    server = start_server(sys.executable, ["--provider-latency-ms", "2000",
                                           "--provider-spread-ms", "0"],
                          pythonpath=[str(REPO / "src")], request_log_dir=str(tmp_path))

    async def one_chat() -> None:
        driver = I.Driver(server.url)
        await driver.open_measuring()
        try:
            await driver.request(default_call("chat"))()
        finally:
            assert driver.ws is not None
            await driver.ws.close()

    try:
        with pytest.raises(I.InstrumentError, match="waits on a timer") as caught:
            asyncio.run(one_chat())
        assert "What instruction counts cannot see" in str(caught.value)
    finally:
        server.discard()
