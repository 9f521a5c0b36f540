"""Fixtures for the scheduler tests (helpers live in sched_helpers.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sched_helpers import BENCHMARK, INSTALLER, PY, FakeSlack, TinyRepo


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
    (root / "install_tiny.py").write_text(INSTALLER)
    conf = {
        "version": 1,
        "project": "tinyproj",
        "repo": ".",
        "branches": ["main"],
        "environment_type": "uv",
        "pythons": [PY],
        "benchmark_dir": "benchmarks",
        # No wheel: "installing" validates pyproject.toml (a broken one fails like a build
        # failure) and points the environment at asv's checkout of the commit. Seconds
        # per commit instead of a pip build, so the suite stays well under five minutes.
        "build_command": [],
        "install_command": [f"python {root / 'install_tiny.py'} {{build_dir}}"],
        "uninstall_command": ["return-code=any python -c pass"],
        "matrix": {},
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
