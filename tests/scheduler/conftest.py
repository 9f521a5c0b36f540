"""Fixtures for the scheduler tests (helpers live in sched_helpers.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sched_helpers import BENCHMARK, PY, FakeSlack, TinyRepo


@pytest.fixture(scope="session")
def asv_home() -> Iterator[None]:
    """asv keeps machine names in ~/.asv-machine.json: restore it after the session."""
    path = Path.home() / ".asv-machine.json"
    saved = path.read_bytes() if path.exists() else None
    yield
    if saved is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(saved)


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory, asv_home: None) -> Path:
    """Session directory: the tiny benchmark suite, its asv.conf.json and the asv
    environments, shared by every test (creating an environment is the slow part)."""
    root = tmp_path_factory.mktemp("asvshared")
    bench = root / "benchmarks"
    bench.mkdir()
    (bench / "__init__.py").write_text("")
    (bench / "bench_tiny.py").write_text(BENCHMARK)
    conf = {
        "version": 1,
        "project": "tinyproj",
        "repo": ".",
        "branches": ["main"],
        "environment_type": "uv",
        "pythons": [PY],
        "benchmark_dir": "benchmarks",
        # one wheel, no build isolation: fast and offline once the env exists
        "build_command": ["python -m pip wheel --no-deps --no-index --no-build-isolation "
                          "-w {build_cache_dir} {build_dir}"],
        "matrix": {"req": {"setuptools": "", "pip": "", "wheel": ""}},
    }
    (root / "asv.conf.json").write_text(json.dumps(conf, indent=2))
    (root / "env").mkdir()
    return root


@pytest.fixture
def tiny_repo(tmp_path: Path) -> TinyRepo:
    return TinyRepo(tmp_path / "proj")


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    yield server
    server.stop()
