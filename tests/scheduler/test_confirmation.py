"""Confirmation before a history alert: a run disturbed from outside the commit (another
load on the machine) is re-measured and not alerted; a real regression still is, once."""

from __future__ import annotations

from pathlib import Path

from sched_helpers import TinyRepo, alerts_file, once, runs, write_config


def test_disturbed_run_is_re_measured_and_not_alerted(tmp_path: Path, shared: Path,
                                                      tiny_repo: TinyRepo) -> None:
    r = tiny_repo
    r.commit(1.0, "base")
    cfg = write_config(tmp_path, shared, r)
    disturb = tmp_path / "disturb"
    env = {"TINY_DISTURB_FILE": str(disturb)}
    once(cfg, **env)

    neutral = r.commit(1.0, "docs only")
    disturb.write_text("1 1.8")  # the next measurement runs 80 % slow, once
    proc = once(cfg, **env)
    assert "to confirm before alerting" in proc.stdout + proc.stderr
    assert disturb.read_text().split()[0] == "0", "the disturbed run did happen"
    assert runs(tmp_path / "state")[neutral] == "done"
    assert not [a for a in alerts_file(tmp_path / "state") if a.get("kind") == "regression"]

    slow = r.commit(1.5, "real slowdown")
    once(cfg, **env)
    regressions = [a for a in alerts_file(tmp_path / "state") if a.get("kind") == "regression"]
    assert len(regressions) == 1, regressions
    assert slow[:8] in str(regressions[0])
