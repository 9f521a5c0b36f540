"""The asv suite end to end with the unchanged asv command line (smoke profile).

One throwaway repository: ``base`` (the working tree), ``docs`` (a
documentation-only commit) and ``slow`` (+3 % instructions planted in every
``tools/call``). The significance verdicts are asv's own: Mann-Whitney U on the
per-window samples the suite reports, plus ``--factor``. The continuous checks gate
on the instruction counts (``-b Instructions --factor 1.02``, the pre-merge gate of
docs/BENCHMARKS.md): a CPU-time figure of this shared machine moves by 50 % between
two runs of one commit, an instruction count does not.
"""

from __future__ import annotations

import glob
import json
import re
import shutil

import pytest

from selftest.plant import docs_change, instructions_per_message

from .conftest import Project

# The figures the pre-merge gate trusts: instruction counts under valgrind.
GATE = r"Instructions\."

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


#: The gate's factor: two runs of one commit agree to well under 1 % on every
#: instruction series (docs/BENCHMARKS.md, A/A table), the plant adds 3 % or more.
FACTOR = "1.02"


def _needs_valgrind() -> None:
    if shutil.which("valgrind") is None or not glob.glob("/usr/lib/*/faketime/libfaketime.so.1"):
        pytest.skip("valgrind and libfaketime are needed for instruction counts "
                    "(scripts/bootstrap.sh installs them as root)")


def _rows(project: Project, commit: str) -> dict[str, dict[str, object]]:
    results = project.path / "results" / "ci-test"
    path = next(p for p in results.glob(f"{commit[:8]}-*.json"))
    data = json.loads(path.read_text())
    columns = data["result_columns"]
    return {name: dict(zip(columns, row, strict=False)) for name, row in data["results"].items()}


def test_run_records_instruction_samples(history: Project) -> None:
    """Every instruction series: >= 7 samples per point, steady within the run."""
    _needs_valgrind()
    rows = _rows(history, history.commits["base"])
    names = [n for n in rows if n.startswith("instructions.Instructions.")]
    assert len(names) == 4, names
    for name in names:
        row = rows[name]
        points = row["samples"] or []
        assert isinstance(points, list)
        for i, samples in enumerate(points):
            if "open_connections" in name and i == 2:
                continue  # 1000 other connections: not measured in smoke
            assert samples and len(samples) >= 7, (name, i, samples)
            # Generous: a garbage-collector pass makes one window in a few up to 15 %
            # dearer; the A/A runs of docs/BENCHMARKS.md are what the gate rests on.
            assert max(samples) / min(samples) < 1.3, (name, i, samples)


def test_continuous_is_quiet_on_a_neutral_commit(history: Project) -> None:
    _needs_valgrind()
    base, docs = history.commits["base"], history.commits["docs"]
    proc = history.asv("continuous", "--show-stderr", "--factor", FACTOR, "-b", GATE,
                       base, docs)
    assert proc.returncode == 0, "a documentation-only commit was reported as slower"


def test_continuous_fails_on_a_planted_slowdown(history: Project) -> None:
    _needs_valgrind()
    # +3 % of the dearest tools/call (analyze), so every tools/call path grows by 3 % or
    # more; sized from the base commit's own counts.
    rows = _rows(history, history.commits["base"])
    medians = rows["instructions.Instructions.track_instructions_per_message"]["result"]
    assert isinstance(medians, list)
    dearest = max(v for v in medians if v is not None)  # tools_list's too: no harm
    instructions_per_message(round(0.03 * dearest)).apply(history.path)
    history.commit("slow", "Validate harder (planted +3 % instructions)")
    docs, slow = history.commits["docs"], history.commits["slow"]
    proc = history.asv("continuous", "--show-stderr", "--factor", FACTOR, "-b", GATE,
                       docs, slow)
    assert proc.returncode == 1, "the planted slowdown was not reported"
    assert "PERFORMANCE DECREASED" in proc.stdout or "worse" in proc.stdout.lower()
    for path in ("echo", "status", "chat", "analyze", "listmodels"):
        assert re.search(rf"\+\s.*track_instructions_per_message\('{path}'\)", proc.stdout), path
    assert not re.search(r"\+\s.*track_instructions_per_message\('tools_list'\)", proc.stdout)
