"""``python -m benchmarks.load.versus --commits A B``: two commits of the server, one run.

A throwaway git repository holds the server as it is (A), the same code again with only
a README change (A'), and a commit that adds a lot of work to every ``tools/call`` (B).
The real command checks them out as worktrees, runs both servers side by side and
alternates the load between them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from e2e_support import REPO

from selftest.evaluate import _commit, _git
from selftest.plant import copy_project, cpu_per_message


def _versus(repo: Path, a: str, b: str, out: Path, *extra: str) -> tuple[int, dict]:
    cp = subprocess.run(
        [sys.executable, "-m", "benchmarks.load.versus", "--commits", a, b,
         "--repo", str(repo), "--rounds", "6", "--duration", "1", "--warmup", "0.2",
         "--json", str(out), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    print(cp.stdout[-1500:], cp.stderr[-1500:])
    return cp.returncode, json.loads(out.read_text())


def test_commits_side_by_side(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    copy_project(REPO, repo)
    _git(repo, "init", "-q", "-b", "main")
    a = _commit(repo, "base")
    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nmore words\n")
    a2 = _commit(repo, "docs only")
    # About 60 µs of CPU per call on a message that costs about 30: b/a near 3 on an idle
    # machine (measured under load: 1.50, the base's CPU per message inflated by the host).
    # The behaviour is the verdict and every round agreeing; the ratio bound is a sanity
    # bound only.
    cpu_per_message(60).apply(repo)
    b = _commit(repo, "slow")

    code, doc = _versus(repo, a, b, tmp_path / "slow.json")
    point = doc["verdict"]["points"][0]
    assert doc["mode"] == "commits" and doc["labels"] == [a[:8], b[:8]]
    assert point["rounds"] == 6 and len(point["round_ratios"]) == 6
    assert point["b_higher_rounds"] == 6 and point["paired_cpu_ratio_b_over_a"] > 1.2, point
    assert point["regression"] and code == 1
    for label in doc["labels"]:
        assert doc["rows"][0][label]["errors"] == 0

    # Same code: no regression (a generous threshold, the test judges behaviour only).
    code, doc = _versus(repo, a, a2, tmp_path / "same.json", "--threshold", "0.25")
    point = doc["verdict"]["points"][0]
    assert 0.6 < point["paired_cpu_ratio_b_over_a"] < 1.25, point
    assert not point["regression"] and code == 0

    # The worktrees are gone again; a commit that does not exist is one clear line.
    assert _git(repo, "worktree", "list").count("\n") == 0
    cp = subprocess.run([sys.executable, "-m", "benchmarks.load.versus", "--commits", a,
                         "no-such-commit", "--repo", str(repo)], cwd=REPO,
                        capture_output=True, text=True, timeout=60, check=False)
    assert cp.returncode != 0 and "no-such-commit" in cp.stderr, cp.stderr
