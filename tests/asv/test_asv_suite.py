"""The asv suite end to end with the unchanged asv command line (smoke profile).

One throwaway repository: ``base`` (the working tree), ``docs`` (a
documentation-only commit) and ``slow`` (a CPU busy-wait planted in every
``tools/call``). The significance verdicts are asv's own: Mann-Whitney U on the
per-window samples the suite reports, plus ``--factor``.
"""

from __future__ import annotations

import json
import re

import pytest

from scheduler.plant import cpu_per_message, docs_change

from .conftest import Project

# A steady figure keeps the continuous checks about the statistics, not the
# noise of this shared machine: server CPU time per message at 10 clients.
STEADY = r"LoadPerformance\.track_server_cpu_per_message"

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def history(asv_project: Project) -> Project:
    """base -> docs, both run with the whole smoke suite."""
    docs_change(1).apply(asv_project.path)
    asv_project.commit("docs", "Docs: clarify the quick start")
    base, docs = asv_project.commits["base"], asv_project.commits["docs"]
    hashes = asv_project.path.parent / "hashes.txt"
    hashes.write_text(f"{base}\n{docs}\n")
    # --record-samples: keep the per-slice samples (asv continuous always does).
    proc = asv_project.asv("run", "--show-stderr", "--record-samples", f"HASHFILE:{hashes}")
    assert proc.returncode == 0, "asv run failed"
    return asv_project


def test_check_passes(asv_project: Project) -> None:
    proc = asv_project.asv("check", "--python=same")
    assert proc.returncode == 0
    assert "No problems found" in proc.stdout


def test_run_records_samples_for_every_scenario(history: Project) -> None:
    results = history.path / "results" / "ci-test"
    files = sorted(p for p in results.glob("*.json") if p.name != "machine.json")
    assert {f.name[:8] for f in files} == {c[:8] for c in history.commits.values()}
    data = json.loads(files[0].read_text())
    columns = data["result_columns"]
    rows = {name: dict(zip(columns, row, strict=False)) for name, row in data["results"].items()}
    for scenario in ("LoadPerformance", "EndToEndLatency", "ConcurrentConnections",
                     "OverloadRecovery", "Soak"):
        assert any(scenario in name for name in rows), f"no results for {scenario}"
    cpu = rows["load_performance.LoadPerformance.track_server_cpu_per_message"]
    # params: clients 1, 10, 100 measured in smoke; 1000 skipped (NaN) there
    values = cpu["result"]
    assert all(v is not None and v > 0 for v in values[:3]), values
    # asv needs >= 7 samples a side before its Mann-Whitney test can reach p < 0.002
    assert all(n >= 7 for n in cpu["stats_repeat"][:3]), cpu["stats_repeat"]
    samples = cpu.get("samples")
    assert samples and all(s and len(s) >= 7 for s in samples[:3]), samples
    # host-corrected figures (interleaved with the reference server): one sample a block
    for fig in ("latency_p50", "latency_p95", "latency_p99", "time_per_message"):
        row = rows[f"load_performance.LoadPerformance.track_corrected_{fig}"]
        assert all(v is not None and v > 0 for v in row["result"][:3]), (fig, row["result"])
        assert all(s and len(s) >= 7 for s in row["samples"][:3]), (fig, row["samples"])
    e2e = rows["end_to_end_latency.EndToEndLatency.track_corrected_latency_p95"]
    assert any(v is not None and v > 0 for v in e2e["result"]), e2e["result"]


def test_publish_and_compare(history: Project) -> None:
    assert history.asv("publish").returncode == 0
    html = history.path / "html"
    assert (html / "index.html").exists()
    graphs = list((html / "graphs").rglob("*track_server_cpu_per_message.json"))
    assert graphs, "publish wrote no graph for the CPU figure"
    points = json.loads(graphs[0].read_text())
    assert len(points) == 2
    base, docs = history.commits["base"], history.commits["docs"]
    proc = history.asv("compare", base, docs)
    assert proc.returncode == 0
    assert base[:8] in proc.stdout and docs[:8] in proc.stdout
    assert re.search(r"track_server_cpu_per_message\(10\)", proc.stdout)


#: asv's factor for the two continuous tests: generous, because two runs minutes apart on
#: this shared VM differ by up to 30 % on the same code (docs/BENCHMARKS.md); a test
#: asserts the pipeline's behaviour, not this host's quietness. The plant is >= x1.9.
FACTOR = "1.5"


def test_continuous_is_quiet_on_a_neutral_commit(history: Project) -> None:
    base, docs = history.commits["base"], history.commits["docs"]
    proc = history.asv("continuous", "--show-stderr", "--factor", FACTOR, "-b", STEADY,
                       base, docs)
    assert proc.returncode == 0, "a documentation-only commit was reported as slower"


def test_continuous_fails_on_a_planted_slowdown(history: Project) -> None:
    # ~100 µs of extra work per call against ~30-115 µs of CPU: x1.9 or more.
    cpu_per_message(100).apply(history.path)
    history.commit("slow", "Validate harder (planted slowdown)")
    docs, slow = history.commits["docs"], history.commits["slow"]
    proc = history.asv("continuous", "--show-stderr", "--factor", FACTOR, "-b", STEADY,
                       docs, slow)
    assert proc.returncode == 1, "the planted slowdown was not reported"
    assert "PERFORMANCE DECREASED" in proc.stdout or "worse" in proc.stdout.lower()
    assert re.search(r"\+\s.*track_server_cpu_per_message", proc.stdout)
