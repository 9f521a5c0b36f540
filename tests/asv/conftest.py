"""A throwaway git repository holding commits of this project, and the real asv.

The repository is a copy of the working tree's project files (the server, the
suite, ``asv.conf.json``); tests add commits to it and run the unchanged asv
command line on it, as a user would. asv's machine file lives under a private
HOME so the developer's ``~/.asv-machine.json`` is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from selftest.plant import copy_project

ROOT = Path(__file__).resolve().parents[2]
ASV = [sys.executable, "-m", "asv"]


@dataclass
class Project:
    """A throwaway clone-like copy of the project under git."""

    path: Path
    env: dict[str, str]
    commits: dict[str, str] = field(default_factory=dict)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.path, env=self.env, check=True, text=True,
            stdout=subprocess.PIPE,
        ).stdout.strip()

    def commit(self, name: str, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        sha = self.git("rev-parse", "HEAD")
        self.commits[name] = sha
        return sha

    def asv(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run the real asv command line in the project, output captured and echoed."""
        proc = subprocess.run(
            [*ASV, *args], cwd=self.path, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
        )
        print(f"$ asv {' '.join(args)}  -> exit {proc.returncode}\n{proc.stdout[-6000:]}")
        return proc


@pytest.fixture(scope="session")
def asv_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One throwaway repository per test session; its asv environment is shared."""
    base = tmp_path_factory.mktemp("asvproject")
    path = base / "repo"
    path.mkdir()
    home = base / "home"
    home.mkdir()
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        # keep pip's download cache even though HOME moved
        PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
        BENCH_PROFILE="smoke",
        BENCH_INSTRUMENT_PYTHON=sys.executable,
        GIT_AUTHOR_NAME="Test Author", GIT_AUTHOR_EMAIL="author@example.invalid",
        GIT_COMMITTER_NAME="Test Author", GIT_COMMITTER_EMAIL="author@example.invalid",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    copy_project(ROOT, path)
    project = Project(path=path, env=env)
    project.git("init", "-q", "-b", "main")
    project.commit("base", "Base: the project as in the working tree")
    proc = project.asv("machine", "--yes", "--machine", "ci-test")
    assert proc.returncode == 0, proc.stdout
    yield project
    shutil.rmtree(base, ignore_errors=True)
