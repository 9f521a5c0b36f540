"""Fixtures for the distributed-runner tests: one deployment per module — a real
``redis-server`` (append-only file, so a restart keeps its jobs), one coordinator
configuration and state on a throwaway repository of the tiny asv project, and runners
started and stopped by the tests (``Deployment.runner``). Everything is stopped at the
end of the module, whatever the tests did."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "scheduler"))

from dispatch_helpers import REDIS_SERVER, Deployment, RedisServer, dispatch_config
from sched_helpers import TinyRepo, write_config

from selftest.tinyproj import make_asv_project

TARGETS = """
[dispatch.profile_targets]
full = ["any"]
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not Path(REDIS_SERVER).is_file():
        pytest.skip("redis-server is not installed (as root, bash scripts/bootstrap.sh "
                    "installs Debian's redis-server)")
    root = tmp_path_factory.mktemp("dispatch")
    shared = make_asv_project(root / "shared")
    redis = RedisServer(root / "redis").start()
    repo = TinyRepo(root / "proj")
    config = write_config(root, shared, repo, initial_commits=3, extra=dispatch_config(
        redis.url, targets='["machine:a", "machine:b"]', lost=6, extra=TARGETS))
    dep = Deployment(root, redis, repo, config)
    try:
        yield dep
    finally:
        dep.stop()
