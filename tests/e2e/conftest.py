"""Fixtures of the end-to-end load tests (helpers: e2e_support.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import SRC

from benchmarks.load.api import start_server
from benchmarks.load.server_process import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A toolserver started by the test (pinned like the instrument does it)."""
    proc = start_server(sys.executable, [], pythonpath=[SRC], request_log_dir=str(tmp_path))
    try:
        yield proc
    finally:
        proc.discard()
