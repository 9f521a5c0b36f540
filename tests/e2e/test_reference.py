"""The host-corrected figures' arithmetic, calibration table and reference source.

The arithmetic is pure and tested table-driven; the table is read from real files;
the reference's source comes from a real throwaway git repository (``git archive`` of
the calibrated tree). The duet itself runs in test_load_performance.py and
test_end_to_end_latency.py, and through asv in tests/asv.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from benchmarks._harness import corrected_figure
from benchmarks.load import duet
from benchmarks.load import reference as ref


@pytest.mark.parametrize(("commit", "reference", "ratios"), [
    ([2.0, 3.0], [1.0, 3.0], [2.0, 1.0]),
    # a round of either side that measured nothing pairs with nothing
    ([2.0, None, 4.0], [1.0, 1.0, None], [2.0, None, None]),
    # a reference figure of zero cannot scale anything
    ([1.0], [0.0], [None]),
    ([], [], []),
])
def test_paired_ratios(commit: list[float | None], reference: list[float | None],
                       ratios: list[float | None]) -> None:
    assert ref.paired_ratios(commit, reference) == ratios


def test_paired_ratios_need_aligned_pairs() -> None:
    with pytest.raises(ValueError, match="must line up"):
        ref.paired_ratios([1.0, 2.0], [1.0])


@pytest.mark.parametrize(("commit", "reference", "nominal", "samples"), [
    # the host slowed both sides of the second pair by 2x: the corrected samples agree
    ([1.2, 2.4], [1.0, 2.0], 5.0, [6.0, 6.0]),
    # the commit at the reference's speed reads the nominal value
    ([3.0, 7.0, 5.0], [3.0, 7.0, 5.0], 0.25, [0.25, 0.25, 0.25]),
    # incomplete pairs are left out, never replaced by a raw value
    ([2.0, None, 9.0], [1.0, 4.0, None], 10.0, [20.0]),
    ([None], [1.0], 1.0, []),
])
def test_corrected_samples(commit: list[float | None], reference: list[float | None],
                           nominal: float, samples: list[float]) -> None:
    assert ref.corrected_samples(commit, reference, nominal) == pytest.approx(samples)


def _calibration(tmp_path: Path, nominal: dict[str, dict[str, float]]) -> ref.Calibration:
    return ref.Calibration(tmp_path / "reference.toml", tree="0" * 40, nominal=nominal)


def test_correct_phase_scales_and_names_what_is_missing(tmp_path: Path) -> None:
    cal = _calibration(tmp_path, {"load_performance": {
        "clients_10.p50_ms": 1.0, "clients_10.p95_ms": 4.0, "clients_10.us_per_msg": 100.0}})
    commit = [{"p50_ms": 2.0, "p95_ms": 6.0, "p99_ms": 9.0, "us_per_msg": 300.0},
              {"p50_ms": 3.0, "p95_ms": 6.0, "p99_ms": 9.0, "us_per_msg": 330.0},
              {"p50_ms": 1.0, "p95_ms": None, "p99_ms": 9.0, "us_per_msg": 210.0}]
    reference = [{"p50_ms": 1.0, "p95_ms": 3.0, "p99_ms": 3.0, "us_per_msg": 100.0},
                 {"p50_ms": 1.5, "p95_ms": 3.0, "p99_ms": 3.0, "us_per_msg": 110.0},
                 {"p50_ms": 1.0, "p95_ms": 3.0, "p99_ms": 3.0, "us_per_msg": 70.0}]
    out = ref.correct_phase("load_performance", "clients_10", commit, reference, cal)
    assert out["p50_ms"]["samples"] == pytest.approx([2.0, 2.0, 1.0])
    assert out["p50_ms"]["value"] == pytest.approx(2.0)
    assert out["p95_ms"]["ratios"] == [2.0, 2.0, None]
    assert out["p95_ms"]["samples"] == pytest.approx([8.0, 8.0])
    assert out["us_per_msg"]["samples"] == pytest.approx([300.0, 300.0, 300.0])
    missing = out["p99_ms"]["missing"]
    assert "clients_10.p99_ms" in missing and "--calibrate" in missing
    assert str(cal.path) in missing
    # open-loop scenarios have no time per message to correct
    e2e = ref.correct_phase("end_to_end_latency", "echo_20rps", commit, reference, cal)
    assert set(e2e) == {"p50_ms", "p95_ms", "p99_ms"}


def test_nominal_is_the_median_of_the_runs_medians() -> None:
    runs = [{"a.p50_ms": [1.0, 2.0, 9.0], "a.p95_ms": [4.0]},
            {"a.p50_ms": [3.0, 3.0, 3.0], "a.p95_ms": []},
            {"a.p50_ms": [2.5, 2.5, 100.0]}]
    assert ref.nominal_from_runs(runs) == {"a.p50_ms": 2.5, "a.p95_ms": 4.0}


@pytest.mark.parametrize(("latency_ms", "max_pairs", "blocks", "pairs"), [
    (1.0, 48, 8, 48),     # fast replies: as many pairs as allowed
    (None, 48, 8, 48),    # nothing measured in the warm-up: the same
    (50.0, 48, 8, 24),    # 6 s / (4 x 50 ms) = 30 pairs fit: 3 per block
    (120.0, 48, 8, 8),    # 12 fit: one pair per block
    (900.0, 48, 8, 8),    # slower than a round: still one pair per block
    (0.1, 14, 7, 14),
])
def test_plan_fits_rounds_to_the_latency(latency_ms: float | None, max_pairs: int,
                                         blocks: int, pairs: int) -> None:
    cut = duet.plan(6.0, max_pairs=max_pairs, blocks=blocks, settle_s=0.02,
                    latency_ms=latency_ms)
    assert (cut.pairs, cut.blocks) == (pairs, blocks)
    assert cut.pairs_per_block * blocks == pairs
    assert cut.round_s == pytest.approx(6.0 / pairs)


def test_abba_order_and_shared_seeds() -> None:
    assert [duet.order(i) for i in range(4)] == [
        ("commit", "reference"), ("reference", "commit")] * 2
    assert len({duet.pair_seed(1, p) for p in range(-1, 20)}) == 21


def test_table_round_trip_and_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "reference.toml"
    meta = {"tree": "ab" * 20, "date": "2026-12-01T00:00:00+00:00", "runs": 5,
            "command": 'python -m benchmarks.load.reference --calibrate "quoted"'}
    nominal = {"load_performance": {"clients_1.p50_ms": 0.3125},
               "end_to_end_latency": {"chat_20rps.p95_ms": 30.5}}
    ref.write_table(path, meta, nominal)
    cal = ref.load_calibration(path)
    assert cal.error == "" and cal.tree == "ab" * 20
    assert cal.value("load_performance", "clients_1.p50_ms") == 0.3125
    assert cal.value("end_to_end_latency", "chat_20rps.p95_ms") == 30.5
    assert cal.meta["command"] == meta["command"]
    with pytest.raises(ref.MissingNominal, match=r"clients_1000\.p99_ms.*--calibrate"):
        cal.value("load_performance", "clients_1000.p99_ms")

    # a corrupt entry is ignored and reported, the others still count
    path.write_text(path.read_text() + '"clients_1.p95_ms" = "fast"\n')
    cal = ref.load_calibration(path)
    assert cal.meta["ignored_entries"] == ["load_performance.clients_1.p95_ms"]
    assert cal.value("load_performance", "clients_1.p50_ms") == 0.3125

    # an unreadable or absent table: every lookup says why
    path.write_text("[nominal\n")
    broken = ref.load_calibration(path)
    assert broken.error.startswith("cannot read")
    with pytest.raises(ref.MissingNominal, match="cannot read"):
        broken.value("load_performance", "clients_1.p50_ms")
    absent = ref.load_calibration(tmp_path / "nope.toml")
    with pytest.raises(ref.MissingNominal, match="does not exist"):
        absent.value("load_performance", "clients_1.p50_ms")


def test_the_committed_table_covers_every_profile() -> None:
    cal = ref.load_calibration()
    assert cal.error == "" and cal.tree
    assert "ignored_entries" not in cal.meta
    from benchmarks.load import profiles
    for scenario, figures in ref.FIGURES.items():
        for params in profiles.TABLE[scenario].values():
            if scenario == "load_performance":
                phases = [f"clients_{n}" for n in params.clients]
            else:
                phases = [f"{t}_{r:g}rps" for t in params.tools for r in params.rates]
            for phase in phases:
                for fig in figures:
                    assert cal.value(scenario, f"{phase}.{fig}") > 0


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, text=True,
                          capture_output=True).stdout.strip()


def test_the_reference_is_the_calibrated_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "src" / "toolserver").mkdir(parents=True)
    (repo / "src" / "toolserver" / "__init__.py").write_text("VERSION = 'calibrated'\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q",
         "-m", "calibrated")
    tree = ref.checkout_tree(repo)
    assert tree is not None
    # the checkout moves on: the reference does not
    (repo / "src" / "toolserver" / "__init__.py").write_text("VERSION = 'moved on'\n")
    src, info = ref.source_dir(ref.Calibration(repo / "t.toml", tree=tree), repo)
    assert info["source"] == "tree" and not info["stale"] and info["tree"] == tree
    assert "calibrated" in (src / "toolserver" / "__init__.py").read_text()
    again, _ = ref.source_dir(ref.Calibration(repo / "t.toml", tree=tree), repo)
    assert again == src  # extracted once
    # a tree the repository does not have: the checkout stands in, and says so
    src, info = ref.source_dir(ref.Calibration(repo / "t.toml", tree="1" * 40), repo)
    assert src == repo / "src" and info["stale"] and "--calibrate" in info["warning"]


def test_asv_reads_corrected_figures_and_fails_loudly_without_a_nominal() -> None:
    doc = {"metric_samples": {"clients_10.corrected_p95_ms": [1.0, 2.0, 3.0]},
           "metrics": {"clients_10.corrected_p95_ms": 2.0},
           "reference": {"missing": {"clients_10.p99_ms": "no nominal value for ..."}}}
    assert corrected_figure(doc, "clients_10.p95_ms") == {"samples": [1.0, 2.0, 3.0],
                                                          "number": 1}
    with pytest.raises(RuntimeError, match="no nominal value"):
        corrected_figure(doc, "clients_10.p99_ms")
    assert math.isnan(corrected_figure(doc, "clients_1000.p95_ms"))  # type: ignore[arg-type]
