"""The detection self-test, reduced for CI: two neutral commits and one planted
regression, smoke profile, through the service's real detection path and real asv.

The plant adds 5 % instructions to every tools/call and the series judged are the
instruction counts under valgrind (deterministic: judged on one measurement, threshold
1.5 %), so the test is about the mechanism — the right commit named, neutral commits
quiet — and its verdict does not depend on how busy the CI machine is.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from scheduler.config import load_config
from selftest.evaluate import _instr, evaluate
from selftest.plant import AnchorNotFound, cpu_per_message, insert_at_top, iterations_for

ROOT = Path(__file__).resolve().parents[2]
COUNTS = r"Instructions\.track_instructions_per_message"


@pytest.mark.timeout(1500)
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed "
                    "(bash scripts/bootstrap.sh installs it as root)")
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
        judge=dataclasses.replace(cfg.judge, use_asv_steps=True),
    )
    result = evaluate(cfg, project_root=ROOT, neutral=2, targets=[_instr(0.05)],
                      profile="smoke", bench=COUNTS, workdir=tmp_path / "evaluation")
    print(result.table())
    assert not result.failures, result.failures
    planted = result.planted
    assert len(planted) == 1 and planted[0].caught, result.table()
    # every tools/call path pays the same absolute amount (5 % of echo's count): named
    # where that is over the threshold (analyze costs several times echo: under 2 % there)
    named = {a["bench"] for a in planted[0].alerts}
    for path in ("echo", "status", "listmodels"):
        assert any(f"track_instructions_per_message(path='{path}')" in b for b in named), (
            path, result.table())
    assert not any("tools_list" in b for b in named), result.table()  # not a tools/call
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
