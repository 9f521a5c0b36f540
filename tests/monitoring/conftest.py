"""Fixtures for the monitoring tests: a real ``python -m toolserver serve --port 0`` process.

Every test gets its own server so counters start at zero and the figures the endpoints
report can be compared exactly with what the test's client sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from monitoring_server import Server, start_server, stop_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server with a fast simulated provider."""
    srv = start_server(tmp_path, "--provider-latency-ms", "2", "--provider-spread-ms", "1")
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers with custom options; all are stopped at teardown."""
    started: list[Server] = []

    def make(*extra: str) -> Server:
        sub = tmp_path / f"srv{len(started)}"
        sub.mkdir()
        srv = start_server(sub, *extra)
        started.append(srv)
        return srv

    try:
        yield make
    finally:
        for srv in started:
            stop_server(srv)
