"""Fixtures for the scheduler tests (helpers live in sched_helpers.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sched_helpers import FakeSlack, TinyRepo

from selftest.tinyproj import make_asv_project


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
    return make_asv_project(tmp_path_factory.mktemp("asvshared"))


@pytest.fixture
def tiny_repo(tmp_path: Path) -> TinyRepo:
    return TinyRepo(tmp_path / "proj")


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    yield server
    server.stop()
