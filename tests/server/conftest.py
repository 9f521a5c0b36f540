"""Fixtures for the toolserver tests: real server subprocesses on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serverproc import ServerProcess


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``start_server("--max-connections", "2")``; every server is killed at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str, **kwargs: object) -> ServerProcess:
        server = ServerProcess(tmp_path, *args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One default-ish server for tests that do not change its state."""
    server = ServerProcess(tmp_path_factory.mktemp("shared"), "--max-frame-bytes", "4096")
    yield server
    server.kill()
