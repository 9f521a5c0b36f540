"""When the next measurement will be in the site: the daemon's second line.

Why: the first measurement of a fresh checkout takes minutes (asv builds the commit's
environment, then runs the suite); a user who opened the URL should know how long to
wait. The estimate is the median of this machine's last measurements of the profile;
before there is one, the figure measured for a first run of that profile on the 2-core
development VM (docs/SCHEDULER.md, "Site").
"""

from __future__ import annotations

import statistics

from .measure.gitrepo import GitError, GitRepo
from .store.state import State

# A first run on a fresh state directory (environment built, suite run), measured on the
# 2-core development VM with `scripts/start.sh once --profile <profile>`.
FIRST_RUN_S = {"smoke": 115.0, "quick": 297.0}
RECENT_RUNS = 5


def estimate_s(profile: str, durations: list[float]) -> tuple[float | None, str]:
    """(seconds, where the figure comes from); None when nothing is known."""
    if durations:
        return (statistics.median(durations),
                f"median of the last {len(durations)} {profile} measurement(s) here")
    if profile in FIRST_RUN_S:
        return FIRST_RUN_S[profile], f"a first {profile} run on a 2-core VM"
    return None, f"no {profile} measurement here yet"


def _minutes(seconds: float) -> str:
    return f"about {max(1, round(seconds / 60))} min"


def readiness(state: State, repo: GitRepo, branch: str, profile: str) -> str:
    """One line: which commit is measured next and when it will be in the site."""
    done = state.run_details("done", RECENT_RUNS, profile=profile)
    durations = [r["finished_at"] - r["started_at"] for r in done
                 if r["finished_at"] and r["started_at"]]
    seconds, basis = estimate_s(profile, durations)
    first = not done
    nxt = state.next_queued()
    commit, subject = "", ""
    if nxt is not None:
        commit = nxt.commit_hash
        info = state.commit_info(commit) or {}
        subject = str(info.get("subject", ""))
    else:
        try:
            head = repo.head(branch)
        except GitError:
            head = None
        if head is not None:
            commit, subject = head.hash, head.subject
            measured = state.run_for(head.hash, profile)
            if measured is not None and measured.status in ("done", "failed"):
                each = f", {_minutes(seconds)} each" if seconds else ""
                return (f"latest measurement: {head.short} ({subject[:60]}) {measured.status};"
                        f" new commits are measured as they arrive{each} ({basis})")
    what = ("first measurement" if first else "next measurement") + (
        f" of {commit[:8]} ({subject[:60]})" if commit else "")
    if seconds is None:
        return f"{what}: {basis}, no estimate"
    return f"{what} ready in {_minutes(seconds)} ({basis})"
