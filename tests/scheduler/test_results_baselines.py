"""Result files and baselines: corrupt input is a clear error; bless round-trips."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest

from scheduler.measure.asvrun import parse_result_file
from scheduler.results import ResultsError
from scheduler.store.baselines import BaselinesError, bless, load_baselines

GOOD = {
    "commit_hash": "a" * 40, "env_name": "uv-py3.11", "date": 1700000000000,
    "params": {"machine": "box-quick"}, "python": "3.11", "requirements": {},
    "env_vars": {}, "version": 2,
    "result_columns": ["result", "params", "version", "started_at", "duration",
                       "stats_ci_99_a", "stats_ci_99_b", "stats_q_25", "stats_q_75",
                       "stats_number", "stats_repeat", "samples", "profile"],
    "results": {
        "b.Suite.track_lat": [[0.01, 0.02], [["1", "10"]], "1", 0, 1.0, [0.009, 0.019],
                              [0.011, 0.021], None, None, [1, 1], [3, 3],
                              [[0.01, 0.01, 0.01], [0.02, 0.02, 0.02]]],
        "b.Suite.track_failed": [None, [], "1", 0, 1.0],
    },
}
META = {"b.Suite.track_lat": {"param_names": ["clients"], "unit": "seconds"}}


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "results" / "box-quick" / "aaaaaaaa-uv-py3.11.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def test_parse_params_samples_and_failures(tmp_path: Path) -> None:
    res = parse_result_file(write(tmp_path, json.dumps(GOOD)), META)
    by = res.by_id()
    assert set(by) == {"b.Suite.track_lat(clients=1)", "b.Suite.track_lat(clients=10)",
                       "b.Suite.track_failed"}
    assert by["b.Suite.track_lat(clients=10)"].value == 0.02
    assert by["b.Suite.track_lat(clients=10)"].samples == (0.02, 0.02, 0.02)
    assert by["b.Suite.track_lat(clients=1)"].unit == "seconds"
    assert not by["b.Suite.track_failed"].ok
    nan = json.dumps(GOOD).replace("0.01, 0.02]", "NaN, 0.02]", 1)
    res = parse_result_file(write(tmp_path, nan), META)
    assert math.isnan(res.by_id()["b.Suite.track_lat(clients=1)"].value or 0.0)


@pytest.mark.parametrize("content", [
    '{"commit_hash": "aaa", "results": {',      # truncated
    "[1, 2, 3]",                                 # not an object
    '{"commit_hash": "a", "results": {}}',       # no result_columns
    json.dumps({**GOOD, "results": {"x": [["fast"], [], "1"]}}),  # a string value
    "\x00\x01 binary garbage",
])
def test_corrupt_result_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ResultsError) as err:
        parse_result_file(path, META)
    assert str(path) in str(err.value)
    assert "corrupt asv result file" in str(err.value) or "cannot read" in str(err.value)


def test_bless_writes_reviewable_toml_and_replaces(tmp_path: Path) -> None:
    res = parse_result_file(write(tmp_path, json.dumps(GOOD)), META)
    bdir = tmp_path / "baselines"
    new = bless(bdir, res, "quick", "box")
    assert len(new) == 2  # the failed benchmark is not blessed
    text = (bdir / "blessed.toml").read_text()
    assert text.startswith("# Blessed baseline values")
    tomllib.loads(text)
    loaded = load_baselines(bdir)
    b = loaded.baseline_for("b.Suite.track_lat(clients=10)", "box", "quick")
    assert b is not None and b.value == 0.02 and b.commit == "a" * 40
    bless(bdir, res, "quick", "box")  # again: replaced, not duplicated
    assert len(load_baselines(bdir).baselines) == 2
    bless(bdir, res, "full", "box")  # another profile: kept side by side
    assert len(load_baselines(bdir).baselines) == 4


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("limits.toml", "[[limit]]\nbenchmark = 'x'\n", "missing 'max'"),
    ("limits.toml", "[[limit]]\nbenchmark = '('\nmax = 1\n", "bad regex"),
    ("limits.toml", "[[limit]]\nbenchmark = 'x'\nmax = 'fast'\n", "wrong type"),
    ("limits.toml", "[[limit]]\nbenchmark = 'x'\nmax = 1\nmaximum = 2\n", "unknown key"),
    ("limits.toml", "[[min_change]]\nbenchmark = 'x'\n", "min_change #1: missing 'value'"),
    ("limits.toml", "[[min_change]]\nbenchmark = 'x'\nvalue = -1\n", "must be >= 0"),
    ("limits.toml", "[[min_change]]\nbenchmark = 'x'\nmax = 1\n", "unknown key"),
    ("limits.toml", "[[minchange]]\nbenchmark = 'x'\n", "[[limit]] and [[min_change]]"),
    ("blessed.toml", "[[baseline]\n", "invalid TOML"),
    ("noise.toml", "noise = 3\n", "array of tables"),
])
def test_bad_baselines_are_clear_errors(tmp_path: Path, name: str, text: str,
                                        needle: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(BaselinesError) as err:
        load_baselines(tmp_path)
    assert needle in str(err.value) and name in str(err.value)


def test_repository_baselines_are_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    bl = load_baselines(root / "baselines")
    # the floors the self-test's false alerts called for (see limits.toml), and none on CPU
    p95 = "end_to_end_latency.EndToEndLatency.track_latency_p95(tool='status', load='heavy')"
    assert bl.min_change_for(p95, "vm", "quick") is not None
    rss = "concurrent_connections.ConcurrentConnections.track_churn_rss_per_cycle"
    assert bl.min_change_for(rss, "vm", "quick") is not None
    cpu = "load_performance.LoadPerformance.track_server_cpu_per_message(clients=10)"
    assert bl.min_change_for(cpu, "vm", "quick") is None
