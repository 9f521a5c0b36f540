"""Where a measured commit stands on its branch: its measured neighbours, the unmeasured
commits between them, and the commit bisection measures next. Pure functions of the
first-parent history (oldest first) and of each commit's run status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Run statuses that settle a commit: measured, or not measurable. Bisection skips both.
SETTLED = ("done", "failed")


@dataclass(frozen=True)
class Neighbours:
    """The nearest measured commits before and after ``commit`` ("" when none)."""

    commit: str
    previous: str = ""
    next: str = ""
    on_branch: bool = True

    @property
    def newest(self) -> bool:
        """On the branch with no measured commit after it: it speaks for the branch's
        current state (limits, blessed baselines, recoveries)."""
        return self.on_branch and not self.next


def neighbours(history: Sequence[str], status: Mapping[str, str], commit: str) -> Neighbours:
    """``commit``'s measured neighbours; a commit no longer on the branch has none and
    does not speak for it."""
    if commit not in history:
        return Neighbours(commit, on_branch=False)
    pos = history.index(commit)
    before = next((history[i] for i in range(pos - 1, -1, -1)
                   if status.get(history[i]) == "done"), "")
    after = next((history[i] for i in range(pos + 1, len(history))
                  if status.get(history[i]) == "done"), "")
    return Neighbours(commit, before, after)


def between(history: Sequence[str], a: str, b: str) -> list[str]:
    """The commits strictly between ``a`` and ``b`` (both on the branch, ``a`` first)."""
    if a not in history or b not in history:
        return []
    return list(history[history.index(a) + 1: history.index(b)])


def unmeasured(history: Sequence[str], status: Mapping[str, str], a: str, b: str) -> list[str]:
    """Commits between ``a`` and ``b`` that may still be measured (not done, not failed):
    where the first bad commit may hide."""
    return [h for h in between(history, a, b) if status.get(h) not in SETTLED]


def bisection_point(candidates: Sequence[str]) -> str:
    """The commit to measure next to halve the range (the middle one)."""
    return candidates[len(candidates) // 2]


def earliest(history: Sequence[str], commits: Sequence[str]) -> list[str]:
    """``commits`` in branch order (a commit not on the branch last)."""
    return sorted(commits, key=lambda h: history.index(h) if h in history else len(history))
