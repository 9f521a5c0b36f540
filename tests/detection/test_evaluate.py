"""The detection self-test, reduced for CI: two neutral commits and one planted
regression, smoke profile, through the service's real detection path and real asv.

The planted slowdown is large (+100 % server CPU per message at 10 clients) and the
thresholds generous (25 %; side by side: 6 of 6 rounds) so that the test is about the
mechanism — the right commit named, neutral commits quiet — and not about how noisy the
CI machine is today.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest

from scheduler.config import load_config
from scheduler.evaluate import _cpu, evaluate
from scheduler.plant import AnchorNotFound, cpu_per_message, insert_at_top, iterations_for

ROOT = Path(__file__).resolve().parents[2]
STEADY = r"LoadPerformance\.track_server_cpu_per_message"


@pytest.mark.timeout(1200)
def test_planted_regression_is_named_and_neutral_commits_stay_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asv keeps its machine file in $HOME: use a private one, keep pip's cache.
    monkeypatch.setenv("PIP_CACHE_DIR", os.environ.get("PIP_CACHE_DIR",
                                                       str(Path.home() / ".cache" / "pip")))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BENCH_INSTRUMENT_PYTHON", sys.executable)
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None)
    cfg = dataclasses.replace(
        cfg,
        state_dir=tmp_path / "state",
        baselines_dir=tmp_path / "no-baselines",
        asv=dataclasses.replace(cfg.asv, config=ROOT / "asv.conf.json", machine="ci"),
        judge=dataclasses.replace(cfg.judge, default_threshold=0.25, use_asv_steps=True),
        # the side-by-side check, short: 6 rounds of 1 s, CPU per message only
        paired=dataclasses.replace(cfg.paired, points="10x1", rounds=6, duration_s=1.0,
                                   alpha=0.05),
    )
    result = evaluate(cfg, project_root=ROOT, neutral=2, targets=[_cpu(1.0)],
                      profile="smoke", bench=STEADY, workdir=tmp_path / "evaluation")
    print(result.table())
    assert not result.failures, result.failures
    planted = result.planted
    assert len(planted) == 1 and planted[0].caught, result.table()
    # named by the side-by-side check too (both of its runs), not only by asv's history
    assert any(a["kind"] == "paired" and "server_cpu_per_message" in a["bench"]
               for a in planted[0].alerts), result.table()
    assert len(planted[0].paired) == 2 and all(  # flagged, then confirmed by a second run
        run[0]["regression"] for run in planted[0].paired), planted[0].paired
    assert "side by side with the parent, b/a per point" in result.table()
    # the plant sits between the neutral commits: both sides of it are judged
    assert planted[0].plant is not None
    assert [o.plant.name for o in result.outcomes if o.plant is not None] == [
        "docs1", planted[0].plant.name, "comment2"], "history shape"
    assert not result.false_alerts, result.table()
    assert result.passed


def test_plants_edit_the_named_function_and_fail_loudly_without_it(tmp_path: Path) -> None:
    src = tmp_path / "src" / "toolserver"
    src.mkdir(parents=True)
    (src / "server.py").write_text(
        "class S:\n    def _tools_call(\n        self, a: int\n    ) -> int:\n"
        "        \"\"\"Doc.\"\"\"\n        return a\n")
    cpu_per_message(5).apply(tmp_path)
    text = (src / "server.py").read_text()
    iterations = iterations_for(5)
    assert f"for _planted in range({iterations}):" in text
    namespace: dict[str, object] = {}
    exec(compile(text, "server.py", "exec"), namespace)  # still valid Python
    # The planted work costs CPU of the size asked for (generous bounds: a shared host).
    server = namespace["S"]()  # type: ignore[operator]
    batches = []
    for _ in range(5):
        start = time.thread_time_ns()
        for _ in range(400):
            assert server._tools_call(1) == 1
        batches.append((time.thread_time_ns() - start) / 400 / 1000)
    assert 3 < min(batches) < 15, batches
    with pytest.raises(AnchorNotFound):
        insert_at_top(src / "server.py", "no_such_function", ["pass"])
