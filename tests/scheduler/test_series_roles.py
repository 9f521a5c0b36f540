"""What the judge does with a series depends on what can disturb it: a deterministic
series (instruction counts) is alerted at once, without the re-measurement that exists to
distrust the host; a raw wall-clock or CPU-time series (``limits_only``) is judged against
the plan's limits only, its history being the host's as much as the commit's. Real asv on
the tiny project; the tiny series stands in for either role through the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from sched_helpers import TinyRepo, alerts_file, once, runs, write_config

from scheduler.config import ConfigError, load_config


def _regressions(state: Path) -> list[dict[str, object]]:
    return [a for a in alerts_file(state) if a.get("kind") == "regression"]


def test_a_deterministic_series_is_alerted_without_re_measurement(
        tmp_path: Path, shared: Path, tiny_repo: TinyRepo) -> None:
    r = tiny_repo
    r.commit(1.0, "base")
    cfg = write_config(tmp_path, shared, r,
                       extra='[judge]\ndeterministic = "track_latency"\n')
    once(cfg)
    slow = r.commit(1.05, "+5 % instructions")
    proc = once(cfg)
    state = tmp_path / "state"
    found = _regressions(state)
    assert len(found) == 1 and slow[:8] in str(found[0]), found
    assert "to confirm before alerting" not in proc.stderr
    # nothing was measured a second time: one run per commit, none of kind confirm
    assert set(runs(state).values()) == {"done"} and len(runs(state)) == 2
    assert "default threshold of deterministic series" in str(found[0])


def test_a_limits_only_series_is_judged_against_its_limit_not_its_history(
        tmp_path: Path, shared: Path, tiny_repo: TinyRepo) -> None:
    r = tiny_repo
    r.commit(1.0, "base")
    limits = ("[[limit]]\nbenchmark = 'track_latency$'\nmax = 1.7\n"
              "note = 'the plan: under 1.7 s'\n")
    cfg = write_config(tmp_path, shared, r, limits=limits,
                       extra='[judge]\nlimits_only = ["track_latency"]\n')
    once(cfg)
    r.commit(1.5, "+50 % on a raw figure")
    proc = once(cfg)
    state = tmp_path / "state"
    assert not _regressions(state), "a limits-only series was judged against history"
    assert "to confirm before alerting" not in proc.stderr
    over = r.commit(1.8, "over the limit")
    once(cfg)
    found = _regressions(state)
    assert len(found) == 1 and over[:8] in str(found[0]) and "limit" in str(found[0]), found


@pytest.mark.parametrize(("bench", "deterministic", "limits_only"), [
    ("instructions.Instructions.track_instructions_per_message(path='echo')", True, False),
    ("load_performance.LoadPerformance.track_latency_p95(clients=10)", False, True),
    ("load_performance.LoadPerformance.track_time_per_message(clients=1000)", False, True),
    ("load_performance.LoadPerformance.track_server_cpu_per_message(clients=1)", False, True),
    ("load_performance.LoadPerformance.track_server_cpu_relative(clients=1)", False, True),
    ("load_performance.LoadPerformance.track_corrected_latency_p95(clients=10)", False, False),
    ("end_to_end_latency.EndToEndLatency.track_latency_p99(tool='chat', load='heavy')",
     False, True),
    ("end_to_end_latency.EndToEndLatency.track_corrected_latency_p99(tool='chat', "
     "load='heavy')", False, False),
    ("concurrent_connections.ConcurrentConnections.track_server_cpu_per_session",
     False, True),
    ("concurrent_connections.ConcurrentConnections.track_churn_server_cpu_per_cycle",
     False, True),
    ("concurrent_connections.ConcurrentConnections.track_memory_per_connection",
     False, False),
    ("soak.Soak.track_server_cpu_per_message", False, True),
    ("soak.Soak.track_rss_slope", False, False),
])
def test_default_roles_of_the_suite_series(tmp_path: Path, bench: str, deterministic: bool,
                                           limits_only: bool) -> None:
    (tmp_path / "scheduler.toml").write_text("")
    judge = load_config(tmp_path / "scheduler.toml", env={}).judge
    assert judge.is_deterministic(bench) is deterministic
    assert judge.is_limits_only(bench) is limits_only
    if deterministic:
        assert judge.threshold_for(bench)[0] == judge.deterministic_threshold


def test_the_removed_veto_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.toml"
    path.write_text('[side_by_side]\ncovers = "^load_performance\\\\."\n')
    with pytest.raises(ConfigError, match=r"\[side_by_side\] covers was removed"):
        load_config(path, env={})
    path.write_text('[judge]\nlimits_only = ["("]\n')
    with pytest.raises(ConfigError, match=r"\[judge\] limits_only: bad regex"):
        load_config(path, env={})
