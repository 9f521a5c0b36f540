"""The fault-injection run of ``selftest.faults``, short: SIGKILL of the real daemon while
it judges and while it delivers, on a two-commit history (real asv, real slack-sdk
against the Slack-compatible server), then everything measured, every alert delivered
exactly once, nothing left. (A kill during ``asv run`` is in test_end_to_end.py, one in a
poll in test_hardening.py; the long run, every phase, is ``python -m selftest.faults
--kills 20``: figures in docs/SCHEDULER.md.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from selftest.faults import FaultRun

pytestmark = pytest.mark.slow

PLAN = ((0.010, "base"), (0.020, "planted slowdown"))


def test_kills_while_judging_and_delivering_lose_nothing_and_send_nothing_twice(tmp_path: Path,
                                                                    shared: Path) -> None:
    run = FaultRun(tmp_path / "faults", kills=2, seed=19, asv_project=shared,
                   phases=("judging", "outbox"), plan=PLAN, side_by_side=False,
                   confirm=False, phase_timeout_s=90, max_minutes=8, log=print)
    report = run.run()
    # passed: a kill landed in each phase, every commit measured, every alert delivered
    # once, no orphan, the state database intact
    assert report.passed, report.table()
    assert report.expected >= 2  # the regression, the limit breach (and what more
    # commits brought, when a kill came too late for its phase and was repeated)
