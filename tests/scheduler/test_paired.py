"""The side-by-side check's edges: what it applies to, and clear errors instead of
verdicts when it cannot run. (Its verdicts on a real planted regression are tested
through the service in tests/detection/test_evaluate.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sched_helpers import REPO_ROOT

from scheduler.config import PairedConfig
from scheduler.paired import PairedError, PairedRunner, parse_versus


def _repo(tmp_path: Path, *, toolserver: bool) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    (repo / "src" / ("toolserver" if toolserver else "other")).mkdir(parents=True)
    (repo / "src" / ("toolserver" if toolserver else "other") / "__init__.py").write_text("")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    return repo, head


def test_applies_only_to_commits_with_the_toolserver(tmp_path: Path) -> None:
    repo, head = _repo(tmp_path, toolserver=False)
    assert not PairedRunner(PairedConfig(), repo=repo).applies(head)
    assert not PairedRunner(PairedConfig(), repo=repo).applies("no-such-commit")
    repo2, head2 = _repo(tmp_path / "2", toolserver=True)
    assert PairedRunner(PairedConfig(), repo=repo2).applies(head2)


def test_a_commit_that_cannot_be_checked_out_is_a_clear_error(tmp_path: Path) -> None:
    repo, head = _repo(tmp_path, toolserver=True)
    runner = PairedRunner(PairedConfig(rounds=2, duration_s=0.2), repo=repo)
    with pytest.raises(PairedError, match=r"versus .* failed \(exit 1\).*no-such-commit"):
        runner.run(head, "no-such-commit", project_dir=REPO_ROOT)
    # its worktrees are gone again
    listing = subprocess.run(["git", "-C", str(repo), "worktree", "list"], check=True,
                             capture_output=True, text=True).stdout
    assert listing.count("\n") == 1


@pytest.mark.parametrize("doc", [
    {"mode": "versus"},
    {"mode": "commits", "labels": ["a"], "rows": [], "verdict": {"points": []}},
    {"mode": "commits", "labels": ["a", "b"], "rows": [],
     "verdict": {"points": [{"point": "10x1"}]}},
])
def test_a_corrupt_versus_result_is_a_clear_error(doc: dict) -> None:
    with pytest.raises(PairedError, match="unreadable versus result"):
        parse_versus(doc, "a" * 40, "b" * 40)
