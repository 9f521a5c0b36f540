"""The tiny asv project of the scheduler tests and the fault-injection run: a throwaway git
repository whose measured value is set by a file in each commit (so a planted slowdown is
one commit), its benchmark suite and asv configuration.

Why tiny: the real asv (uv environments, ``asv run``, ``asv publish``) on a project whose
"build" checks pyproject.toml and whose benchmark takes milliseconds: seconds per commit,
so a history of ten commits with kills in every phase runs in minutes. With
``toolserver=True`` each commit also carries this checkout's ``src/toolserver``, so the
side-by-side check (``versus --commits``, which starts both commits' servers) applies to it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"

BENCHMARK = '''
"""Tiny suite: the value comes from the commit under test (tinyproj.VALUE)."""
import os
import random
import time


class Suite:
    version = "1"
    unit = "seconds"

    def track_latency(self):
        import tinyproj

        delay = float(os.environ.get("TINY_SLEEP", "0"))
        if delay:
            time.sleep(delay)
        if getattr(tinyproj, "FAIL", False):
            raise RuntimeError("planted benchmark failure")
        rnd = random.Random(int(tinyproj.VALUE * 1e6))
        samples = [tinyproj.VALUE * (1 + rnd.uniform(-0.01, 0.01)) for _ in range(20)]
        # A disturbance from outside the commit (another load on the machine): the file
        # holds "RUNS FACTOR"; the next RUNS measurements are FACTOR times slower (FACTOR
        # "fail": they fail, whatever the commit).
        disturb = os.environ.get("TINY_DISTURB_FILE")
        if disturb and os.path.exists(disturb):
            runs, factor = open(disturb).read().split()
            if int(runs) > 0:
                open(disturb, "w").write(f"{int(runs) - 1} {factor}")
                if factor == "fail":
                    raise RuntimeError("planted disturbance: the measurement fails")
                samples = [s * float(factor) for s in samples]
        return {"samples": samples, "number": 1}

    if os.environ.get("TINY_OTHER_FILE"):
        def track_other(self):
            # A second series, only when asked for: the file holds one factor per coming
            # measurement ("1.0 1.0 1.8": the third measurement from now is 80 % slow).
            path = os.environ["TINY_OTHER_FILE"]
            factors = open(path).read().split() if os.path.exists(path) else []
            factor = float(factors[0]) if factors else 1.0
            if factors:
                open(path, "w").write(" ".join(factors[1:]))
            rnd = random.Random(7)
            return {"samples": [factor * (1 + rnd.uniform(-0.01, 0.01)) for _ in range(20)],
                    "number": 1}
'''

INSTALLER = '''
"""asv install_command of the tiny project: check pyproject.toml, put the checkout on
sys.path of the environment (a .pth file)."""
import site
import sys
import tomllib
from pathlib import Path

build_dir = Path(sys.argv[1])
try:
    tomllib.loads((build_dir / "pyproject.toml").read_text())
except tomllib.TOMLDecodeError as exc:
    print(f"build failed: pyproject.toml: tomllib.TOMLDecodeError: {exc}", file=sys.stderr)
    sys.exit(1)
Path(site.getsitepackages()[0], "tinyproj_checkout.pth").write_text(str(build_dir) + "\\n")
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tinyproj"
version = "0.1"

[tool.setuptools]
packages = ["tinyproj"]
'''


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada Author", "GIT_AUTHOR_EMAIL": "ada@example.com",
           "GIT_COMMITTER_NAME": "Ada Author", "GIT_COMMITTER_EMAIL": "ada@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


class TinyRepo:
    """A throwaway git repository of the tiny project (``toolserver``: with this checkout's
    ``src/toolserver`` in every commit)."""

    def __init__(self, path: Path, *, toolserver: bool = False) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")
        (path / "tinyproj").mkdir()
        (path / "pyproject.toml").write_text(PYPROJECT)
        if toolserver:
            shutil.copytree(REPO_ROOT / "src" / "toolserver", path / "src" / "toolserver",
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        self._n = 0

    def commit(self, value: float, msg: str = "", *, broken_build: bool = False,
               fail_bench: bool = False, code: str = "") -> str:
        """A commit whose benchmark measures ``value`` seconds; ``code`` is appended to
        the module the benchmark imports (it runs in asv's benchmark process)."""
        self._n += 1
        (self.path / "tinyproj" / "__init__.py").write_text(
            f"VALUE = {value!r}\nFAIL = {fail_bench!r}\nSERIAL = {self._n}\n{code}")
        text = PYPROJECT + ("\nthis is [[ not toml\n" if broken_build else "")
        (self.path / "pyproject.toml").write_text(text)
        git(self.path, "add", "-A")
        # distinct, increasing commit dates keep "newest first" deterministic
        date = f"2026-01-01T00:{self._n:02d}:00Z"
        env_date = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        subprocess.run(["git", "commit", "-q", "-m", msg or f"commit {self._n}"],
                       cwd=self.path, check=True, capture_output=True,
                       env={**os.environ, **env_date, "GIT_AUTHOR_NAME": "Ada Author",
                            "GIT_AUTHOR_EMAIL": "ada@example.com",
                            "GIT_COMMITTER_NAME": "Ada Author",
                            "GIT_COMMITTER_EMAIL": "ada@example.com"})
        return git(self.path, "rev-parse", "HEAD")


def make_asv_project(root: Path) -> Path:
    """Write the tiny benchmark suite and its asv.conf.json into ``root`` (with an empty
    ``env`` directory for asv's environments, and this checkout's instrument as
    ``benchmarks/load``); returns ``root``. Creating the
    environment is the slow part: share ``root`` between runs where possible."""
    root.mkdir(parents=True, exist_ok=True)
    bench = root / "benchmarks"
    bench.mkdir()
    (bench / "__init__.py").write_text("")
    # the instrument, for the side-by-side check (python -m benchmarks.load.versus runs
    # from the parent of the benchmark directory); asv's discovery skips it, as in this
    # checkout (no __init__.py)
    (bench / "load").symlink_to(REPO_ROOT / "benchmarks" / "load", target_is_directory=True)
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


def write_config(work: Path, asv_project: Path, repo_url: str, *, machine: str = "testbox",
                 asv: str = "", schedule: str = "", initial_commits: int = 1,
                 max_queue: int = 50, limits: str = "", extra: str = "") -> Path:
    """A scheduler configuration for the tiny project: state, site and baselines under
    ``work``, the smoke profile, polling every 2 s. ``asv`` and ``schedule`` are more
    lines of those sections, ``limits`` the baselines' limits.toml, ``extra`` more
    sections. Returns the path of ``work/scheduler.toml``."""
    (work / "baselines").mkdir(parents=True, exist_ok=True)
    if limits:
        (work / "baselines" / "limits.toml").write_text(limits)
    text = textwrap.dedent(f"""\
        [repository]
        url = "{repo_url}"
        branches = ["main"]
        initial_commits = {initial_commits}
        max_queue_per_poll = {max_queue}

        [asv]
        config = "{asv_project / 'asv.conf.json'}"
        env_dir = "{asv_project / 'env'}"
        machine = "{machine}"
        {asv}

        [profiles]
        premerge = "smoke"
        nightly = "full"

        [schedule]
        poll_interval_s = 2
        work_interval_s = 1
        {schedule}

        [site]
        html_dir = "{work / 'html'}"
        port = 0
        public_url = "http://bench.example/"

        [state]
        dir = "{work / 'state'}"

        [baselines]
        dir = "{work / 'baselines'}"
        """) + extra
    path = work / "scheduler.toml"
    path.write_text(text)
    return path
