"""Scenario 4 (overload and recovery): busy shedding, circuit breaker, restart.

The instrument starts the server itself (the restart needs to own the process) with
``--allow-admin`` and a global in-flight cap of 32, so capacity = cap / echo delay.
CI asserts the rejection behaviour (fast -32001 busy errors, no other errors, accepted
latency bounded, clean service after the overload), the breaker opening and closing
again, and clients reconnecting after the restart.
"""

from __future__ import annotations

import pytest
from e2e_support import FULL, criterion, failed_criteria, scenario

from benchmarks.load import protocol as P

# the full profile runs the plan's durations (10 min hold, ...): beyond pytest's 600 s
pytestmark = pytest.mark.timeout(3 * 3600 if FULL else 600)


def test_overload_recovery() -> None:
    doc = scenario("overload_recovery")
    phases = {p["name"]: p for p in doc["phases"]}
    assert {"probe", "overload", "recover", "breaker", "restart"} <= set(phases), \
        (sorted(phases), doc["notes"])
    over = phases["overload"]
    assert over["errors"].get(P.KIND_BUSY, 0) > 0, over["errors"]
    assert over["achieved_rate_msg_s"] > over["throughput_msg_s"], "nothing was shed"
    assert criterion(doc, "breaker: circuit opened")["passed"]
    assert criterion(doc, "breaker: closed again")["passed"]
    assert criterion(doc, "restart: every client reconnected")["passed"]
    restarts = doc["settings"]["params"]["restarts"]
    assert doc["server"]["starts"] == 1 + restarts
    # each restart is one sample of the resume time
    resumes = doc["metric_samples"]["restart.resume_after_ready_s"]
    assert len(resumes) == restarts and all(0 <= r < 5 for r in resumes), resumes
    # the busy rejections' p99 per slice of the overload phase: asv's samples
    rejects = doc["metric_samples"]["overload.reject_p99_ms"]
    assert len(rejects) >= 5 and max(rejects) <= over["error_latency_ms"]["max"], rejects
    assert not failed_criteria(doc), failed_criteria(doc)
