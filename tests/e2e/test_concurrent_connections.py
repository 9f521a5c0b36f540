"""Scenario 2 (concurrent connections): rapid connect, hold, churn, resource check.

CI asserts: 100 connections open (within a generous 3 s; the plan's 1 s under E2E_FULL),
hundreds of held connections with light traffic and no errors, server CPU under 80 %,
churn without errors, file descriptors back to baseline after churn and bounded RSS
growth.
"""

from __future__ import annotations

import pytest
from e2e_support import FULL, failed_criteria, scenario

# the full profile runs the plan's durations (10 min hold, ...): beyond pytest's 600 s
pytestmark = pytest.mark.timeout(3 * 3600 if FULL else 600)


def test_concurrent_connections() -> None:
    doc = scenario("concurrent_connections")
    names = [p["name"] for p in doc["phases"]]
    rounds = doc["settings"]["params"]["rapid_rounds"]
    assert names == ["rapid"] * rounds + ["hold", "churn"]
    assert doc["metrics"]["rapid.connect_wall_ms"] is not None
    # the rounds are the samples asv gets (one value per round)
    for fig in ("rapid.connect_wall_ms", "rapid.server_cpu_us_per_session"):
        assert len(doc["metric_samples"][fig]) == rounds, fig
    per_session = doc["metric_samples"]["rapid.server_cpu_us_per_session"]
    # a websocket handshake + initialize + close costs the server tens of µs at least,
    # and far less than the 10 ms a clock tick would round it to
    assert all(20 < v < 20_000 for v in per_session), per_session
    assert doc["server"]["cpu_clock"] == "process-clock"
    assert doc["metrics"]["hold.rss_kib_per_connection"] is not None
    assert doc["metrics"]["churn.fd_delta"] is not None
    churn = doc["phases"][-1]
    assert churn["connections"]["opened"] > 10, "churn did not cycle connections"
    per_cycle = doc["metrics"]["churn.rss_kib_per_cycle"]
    assert per_cycle == round(doc["metrics"]["churn.rss_delta_kib"]
                              / churn["connections"]["opened"], 4)
    assert not failed_criteria(doc), failed_criteria(doc)
