"""``bash scripts/start.sh`` (the README's main command): the site's URL is the first line
it prints, whatever the set-up printed, and the second says when the first measurement
will be ready.

The checkout is a temporary directory with the real ``scripts/start.sh``, this
checkout's ``scheduler`` and ``benchmarks`` packages and ``.venv`` (symlinks), and a
``scripts/bootstrap.sh`` that talks like the real one on a fresh machine (the real one
installs for minutes there); the daemon watches a tiny repository.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from sched_helpers import REPO_ROOT, TinyRepo, write_config

CHATTY_BOOTSTRAP = """\
echo "bootstrap: creating .venv with Python 3.11" >&2
echo "Collecting asv>=0.6.4"
echo "bootstrap: installing the project and its dependencies into .venv" >&2
exit {code}
"""


def _checkout(tmp: Path, bootstrap_exit: int) -> Path:
    co = tmp / "checkout"
    (co / "scripts").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "scripts" / "start.sh", co / "scripts" / "start.sh")
    (co / "scripts" / "bootstrap.sh").write_text(CHATTY_BOOTSTRAP.format(code=bootstrap_exit))
    for name in ("scheduler", "benchmarks", ".venv"):
        (co / name).symlink_to(REPO_ROOT / name)
    return co


def test_url_first_then_when_the_first_measurement_is_ready(
        tmp_path: Path, shared: Path, tiny_repo: TinyRepo) -> None:
    tiny_repo.commit(0.010, "c1")
    head = tiny_repo.commit(0.010, "the head")
    cfg = write_config(tmp_path, shared, tiny_repo)
    co = _checkout(tmp_path, 0)
    proc = subprocess.Popen(["bash", str(co / "scripts" / "start.sh"), "--config", str(cfg),
                             "run", "--port", "0"], cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"})
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert re.fullmatch(r"history page: http://127\.0\.0\.1:\d+/index\.html\n", first), (
            first + second)
        assert second.startswith(f"first measurement of {head[:8]} (the head) ready in "
                                 "about 2 min (a first smoke run on a 2-core VM)"), second
        for line in proc.stdout:  # its signal handlers are set once it says so
            if "daemon started" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "bootstrap:" not in out  # in the log instead
    log = (co / ".scheduler" / "bootstrap.log").read_text()
    assert "creating .venv" in log and "Collecting asv" in log


def test_failed_set_up_prints_its_log(tmp_path: Path) -> None:
    co = _checkout(tmp_path, 3)
    proc = subprocess.run(["bash", str(co / "scripts" / "start.sh")], cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "start: set-up failed" in proc.stderr
    assert "bootstrap: installing the project" in proc.stderr
    assert "Collecting asv" in proc.stderr


@pytest.mark.parametrize("profile,durations,expected", [
    ("quick", [], (297.0, "a first quick run on a 2-core VM")),
    ("smoke", [30.0, 50.0, 40.0], (40.0, "median of the last 3 smoke measurement(s) here")),
    ("full", [], (None, "no full measurement here yet")),
])
def test_estimate(profile: str, durations: list[float],
                  expected: tuple[float | None, str]) -> None:
    from scheduler.estimate import estimate_s

    assert estimate_s(profile, durations) == expected
