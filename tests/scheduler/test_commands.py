"""backfill, bless, status, the nightly job with its summary, and corrupt result files in
the pipeline — real asv on a throwaway repository."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from sched_helpers import TinyRepo, alerts_file, git, once, run_cli, runs, write_config

from scheduler.config import load_config
from scheduler.pipeline import Pipeline

pytestmark = pytest.mark.slow


def test_backfill_bless_nightly_and_corrupt_results(tmp_path: Path, shared: Path,
                                                    tiny_repo: TinyRepo) -> None:
    r = tiny_repo
    c1 = r.commit(0.010, "c1")
    c2 = r.commit(0.0110, "c2")
    c3 = r.commit(0.0100, "c3")
    # limits of the full profile only: the nightly summary lists them, met or not measured
    cfg = write_config(tmp_path, shared, r, limits=(
        "[[limit]]\nbenchmark = 'track_latency$'\nmax = 1.0\nprofile = \"full\"\n"
        "note = \"one second\"\n"
        "[[limit]]\nbenchmark = 'track_gone$'\nmax = 2.0\nprofile = \"full\"\n"))
    state = tmp_path / "state"
    once(cfg)
    assert runs(state) == {c3: "done"}

    # backfill: queue a range, measure it now
    proc = run_cli("--config", str(cfg), "backfill", f"{c1}..{c3}", "--now")
    assert proc.returncode == 0, proc.stderr
    assert "queued 1 commit(s)" in proc.stdout  # c2 (c3 is already measured)
    assert runs(state) == {c2: "done", c3: "done"}

    # bless c2: a reviewable TOML entry with its value
    proc = run_cli("--config", str(cfg), "bless", c2[:10])
    assert proc.returncode == 0, proc.stderr
    blessed = tomllib.loads((tmp_path / "baselines" / "blessed.toml").read_text())
    (entry,) = blessed["baseline"]
    assert entry["commit"] == c2 and entry["machine"] == "testbox"
    assert entry["profile"] == "smoke" and abs(entry["value"] - 0.011) < 0.0005

    # slower than the blessed baseline (and than its predecessor): both kinds alert once
    c4 = r.commit(0.0130, "c4 slower")
    once(cfg)
    kinds = [str(a["text"]).split(":")[0] for a in alerts_file(state)]
    assert kinds.count("Slower than blessed baseline") == 1
    assert kinds.count("Performance regression") == 1

    # the nightly job: full profile on the head, then a summary
    svc = Pipeline(load_config(cfg), verbose=False)
    try:
        assert svc.enqueue_heads("nightly") == 1
        # a commit lands while the nightly runs: the summary still reports the head it ran
        r.commit(0.0130, "landed during the nightly")
        assert svc.measure_queued() == 1
        git(r.path, "reset", "-q", "--hard", c4)
        assert svc.state.run_for(c4, "full").status == "done"  # type: ignore[union-attr]
    finally:
        svc.close()
    summaries = [a for a in alerts_file(state) if a["kind"] == "summary"]
    assert len(summaries) == 1 and "Nightly full run" in str(summaries[0]["text"])
    assert f"• `main` `{c4[:8]}`: done" in summaries[0]["details"]
    assert "limits main: 0 breached, 1 met, 1 not measured" in str(summaries[0]["text"])
    details = "\n".join(summaries[0]["details"])
    assert "✓ met: bench_tiny.Suite.track_latency: 13 ms ≤ 1 s — one second" in details
    assert "? not measured: /track_gone$/: no value (limit 2)" in details
    assert (state / "results" / "testbox-full").is_dir()

    # status shows the queue, last values and open regressions
    proc = run_cli("--config", str(cfg), "status")
    assert proc.returncode == 0, proc.stderr
    assert "bench_tiny.Suite.track_latency: 13" in proc.stdout
    assert "open regressions: 2" in proc.stdout
    as_json = json.loads(run_cli("--config", str(cfg), "status", "--json").stdout)
    assert len(as_json["open_regressions"]) == 2

    # a corrupt result file: clear errors, and the daemon moves on
    (result_file,) = (state / "results" / "testbox-smoke").glob(f"{c4[:8]}-*.json")
    result_file.write_text('{"commit_hash": "' + c4 + '", "results": {"trunc')
    proc = run_cli("--config", str(cfg), "bless", c4)
    assert proc.returncode == 2
    assert "corrupt asv result file" in proc.stderr and str(result_file) in proc.stderr
    assert "Traceback" not in proc.stderr
    status = run_cli("--config", str(cfg), "status")
    assert status.returncode == 0 and "corrupt asv result file" in status.stdout
    c5 = r.commit(0.0130, "c5")
    proc = once(cfg)
    assert runs(state)[c5] == "done"
    assert "corrupt asv result file" in proc.stderr
    judge_errors = [a for a in alerts_file(state) if "Cannot judge" in str(a["text"])]
    assert len(judge_errors) == 1
