"""Confirmation before a history alert: the suspect B and its last good commit A are
measured again, interleaved (A B A B), and B's fresh result is judged against A's fresh
one. A run disturbed from outside the commit (another load on the machine) is therefore
not alerted, even when the disturbance outlasts B's first measurement; a real regression
still is, once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sched_helpers import TinyRepo, alerts_file, once, run_cli, runs, write_config


def run_rows(state_dir: Path) -> dict[str, dict[str, object]]:
    """commit -> its run row (one per commit: the last measurement's kind and times)."""
    with sqlite3.connect(state_dir / "state.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return {r["commit_hash"]: dict(r) for r in db.execute(
            "SELECT commit_hash, kind, status, started_at, finished_at FROM runs")}


def regressions(state_dir: Path) -> list[dict[str, object]]:
    return [a for a in alerts_file(state_dir) if a.get("kind") == "regression"]


def measured_base(tmp_path: Path, shared: Path, r: TinyRepo,
                  **extra_env: str) -> tuple[str, Path, Path, dict[str, str]]:
    """A base commit, measured: (its hash, the config, the disturbance file, the env)."""
    base = r.commit(1.0, "base")
    cfg = write_config(tmp_path, shared, r)
    disturb = tmp_path / "disturb"
    env = {"TINY_DISTURB_FILE": str(disturb), **extra_env}
    once(cfg, **env)
    return base, cfg, disturb, env


def test_disturbed_run_is_re_measured_and_not_alerted(tmp_path: Path, shared: Path,
                                                      tiny_repo: TinyRepo) -> None:
    r = tiny_repo
    base, cfg, disturb, env = measured_base(tmp_path, shared, r)

    neutral = r.commit(1.0, "docs only")
    disturb.write_text("1 1.8")  # the next measurement runs 80 % slow, once
    proc = once(cfg, **env)
    assert (f"re-measuring {base[:8]} (last good) then {neutral[:8]} to confirm before "
            "alerting") in proc.stderr
    assert disturb.read_text().split()[0] == "0", "the disturbed run did happen"
    assert runs(tmp_path / "state")[neutral] == "done"
    assert not regressions(tmp_path / "state")

    slow = r.commit(1.5, "real slowdown")
    once(cfg, **env)
    found = regressions(tmp_path / "state")
    assert len(found) == 1, found
    assert slow[:8] in str(found[0])


def test_disturbance_over_two_measurements_is_not_alerted(tmp_path: Path, shared: Path,
                                                          tiny_repo: TinyRepo) -> None:
    """The machine stays slow for B's measurement and the next one. Re-measuring B alone,
    back to back, confirmed the slowdown (the old false alert); interleaved, the next
    measurement is A's, so A and B are both slow in the first pass, and B's re-measurement
    is judged against A's slow one."""
    r = tiny_repo
    base, cfg, disturb, env = measured_base(tmp_path, shared, r)

    neutral = r.commit(1.0, "docs only")
    disturb.write_text("2 1.8")  # the next two measurements run 80 % slow
    proc = once(cfg, **env)
    out = proc.stderr
    assert disturb.read_text().split()[0] == "0", "both disturbed runs did happen"
    assert not regressions(tmp_path / "state"), out

    # the order: B, then A again (the reference), then B again
    say = (f"re-measuring {base[:8]} (last good) then {neutral[:8]} to confirm before "
           "alerting")
    assert say in out
    first_b = out.index(f"measuring {neutral[:8]} on main (profile smoke, poll)")
    again_a = out.index(f"measuring {base[:8]} on main (profile smoke, confirm-base")
    again_b = out.index(f"measuring {neutral[:8]} on main (profile smoke, confirm")
    assert first_b < out.index(say) < again_a < again_b, out
    assert f"judging {neutral[:8]} against {base[:8]} (last good)" in out
    rows = run_rows(tmp_path / "state")
    assert rows[base]["kind"] == "confirm-base" and rows[base]["status"] == "done"
    assert rows[neutral]["kind"] == "confirm" and rows[neutral]["status"] == "done"
    assert rows[base]["finished_at"] <= rows[neutral]["started_at"]  # type: ignore[operator]
    with sqlite3.connect(tmp_path / "state" / "state.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM runs WHERE judged = 0").fetchone()[0] == 0


def test_failed_re_measurement_of_the_good_commit_still_judges(
        tmp_path: Path, shared: Path, tiny_repo: TinyRepo) -> None:
    """A's re-measurement fails: B is still measured again and judged (against the
    nearest measured commit before A), and the output says so."""
    r = tiny_repo
    first = r.commit(1.0, "first")
    good = r.commit(1.0, "good")
    cfg = write_config(tmp_path, shared, r, initial_commits=2)
    disturb = tmp_path / "disturb"
    env = {"TINY_DISTURB_FILE": str(disturb)}
    once(cfg, **env)

    slow = r.commit(1.5, "real slowdown")
    proc = run_cli("--config", str(cfg), "once", "--max-runs", "1", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"re-measuring {good[:8]} (last good) then {slow[:8]}" in proc.stderr
    assert not regressions(tmp_path / "state")

    disturb.write_text("1 fail")  # the next measurement (A's) fails
    proc = once(cfg, **env)
    out = proc.stderr
    assert f"re-measuring {good[:8]} (last good) failed" in out
    assert (f"the re-measurement of {good[:8]} (last good) failed; judging {slow[:8]} "
            "against the nearest measured commit before it") in out
    rows = run_rows(tmp_path / "state")
    assert rows[good]["status"] == "failed" and rows[slow]["status"] == "done"
    found = regressions(tmp_path / "state")
    assert len(found) == 1, out
    assert slow[:8] in str(found[0]) and first[:8] in str(found[0])


def test_regression_only_in_the_re_measurement_is_not_alerted(
        tmp_path: Path, shared: Path, tiny_repo: TinyRepo) -> None:
    """The confirmation alerts only series that regressed in both measurements of the
    suspect. Here the first measurement of B is slow in ``track_latency`` (queued for
    confirmation), and its re-measurement is slow in ``track_other`` only: neither was
    seen twice, so nothing is alerted (before, the confirmation alerted whatever its own
    single measurement showed)."""
    r = tiny_repo
    other = tmp_path / "other"
    _, cfg, disturb, env = measured_base(tmp_path, shared, r,
                                         TINY_OTHER_FILE=str(other))

    neutral = r.commit(1.0, "docs only")
    disturb.write_text("1 1.8")      # B's first measurement: track_latency 80 % slow
    other.write_text("1.0 1.0 1.8")  # B, A again, B again: track_other slow in the last
    proc = once(cfg, **env)
    out = proc.stderr
    assert other.read_text().split() == [], "all three measurements happened"
    assert "to confirm before alerting" in out
    assert (f"bench_tiny.Suite.track_other +80.0% at {neutral[:8]}: only in the "
            "re-measurement") in out, out
    assert not regressions(tmp_path / "state"), out
