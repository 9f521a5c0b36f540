"""Side-by-side check of a commit against its parent: both servers in one run.

Why next to asv: asv measures one commit per run, and on a shared machine two runs
minutes apart differ by up to 30 % in server CPU per message for the *same* code
(docs/SCHEDULER.md, "Calibration and the detection self-test"), so a +10 % change cannot
be told from the host's mood by comparing asv results. ``python -m benchmarks.load.versus
--commits A B`` runs the parent A and the commit B at the same time, alternates short
rounds between them and judges the round-paired ratios b/a with a sign test: the host's
slow and fast minutes hit both sides of each pair alike. Measured here: a +7 % CPU plant
named in 9 of 10 rounds twice (p = 0.011), a README change clean twice.

The check runs twice before it alerts, each time with fresh worktrees and fresh server
processes, and a point is a regression only when both runs say so: one run's verdict can
be carried by something that lasts the whole run (one server process placed badly, a
neighbour busy on one side's core for a minute), a second independent run is not. The
chance of a false alert on an unchanged point is then about ``alpha`` squared per point.

The instrument (``benchmarks/``) is this working tree's, as for asv; each side's server
is imported from a ``git worktree`` of its commit and runs on this interpreter (its
dependencies are the ones installed here).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.load.versus import point_name, sign_test_p

from ..children import child_env, groups_of, kill_group, kill_orphan_group
from ..config import SideBySideConfig

#: After SIGTERM, versus stops both servers (each drains for up to 15 s) and removes its
#: worktrees; it gets this long before SIGKILL.
STOP_GRACE_S = 40.0


class SideBySideError(Exception):
    """The side-by-side check could not run (no toolserver at a commit, crashed, timed
    out); the commit is judged by asv alone."""


#: Per point: the asv series the same cost is tracked in (the alert links its graph).
SERIES_OF_POINT: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "10x1": ("load_performance.LoadPerformance.track_server_cpu_per_message",
             (("clients", "10"),)),
    "churn10": ("concurrent_connections.ConcurrentConnections.track_churn_server_cpu_per_cycle",
                ()),
}


@dataclass(frozen=True)
class PointVerdict:
    """One point of one side-by-side run."""

    point: str  # "10x1" (closed loop) or "churn10" (connect, initialize, call, close)
    ratio: float | None  # median of the round-paired server-CPU ratios b/a
    higher: int  # rounds in which b cost more
    rounds: int
    p: float  # one-sided sign test
    regression: bool
    cpu_a: float | None  # median server CPU µs per message (per connection for churn)
    cpu_b: float | None
    tool: str = "echo"
    # wall time per message (1 / msg/s) of b over a, paired the same way: a change that
    # waits instead of computing (a sleep, a lock) shows here and not in CPU
    tpm_ratio: float | None = None
    tpm_higher: int = 0
    tpm_p: float = 1.0
    tpm_regression: bool = False

    @property
    def clean(self) -> bool:
        """Neither CPU nor time per message regressed at this point."""
        return not (self.regression or self.tpm_regression)

    @property
    def series(self) -> str:
        """The id of the side-by-side series, e.g. ``side_by_side.server_cpu_per_message(10x1)``."""
        what = "connection" if self.point.startswith("churn") else "message"
        return f"side_by_side.server_cpu_per_{what}(tool='{self.tool}', point='{self.point}')"

    def text(self) -> str:
        tpm = ""
        if self.tpm_ratio is not None:
            tpm = (f"; time per message b/a {self.tpm_ratio:.3f} ({self.tpm_higher}/"
                   f"{self.rounds}, p={self.tpm_p:.3g})"
                   + (" REGRESSION" if self.tpm_regression else ""))
        return (f"{self.point}: CPU b/a {_num(self.ratio)}, b higher in {self.higher}/"
                f"{self.rounds} paired rounds, sign test p={self.p:.3g}"
                f"{' REGRESSION' if self.regression else ''}{tpm}")


def _num(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "n/a"


@dataclass(frozen=True)
class SideBySideResult:
    """One side-by-side run of parent ``a`` and commit ``b``."""

    a: str
    b: str
    points: tuple[PointVerdict, ...]
    seconds: float

    def regressed(self) -> list[PointVerdict]:
        return [p for p in self.points if p.regression]


def parse_versus(doc: dict[str, Any], a: str, b: str, seconds: float = 0.0, *,
                 threshold: float = 0.05, alpha: float = 0.06) -> SideBySideResult:
    """Read ``versus --commits --json`` output; ``SideBySideError`` if it is not one. The time
    per message is judged here, from the rounds' msg/s, with ``threshold`` and ``alpha``."""
    try:
        if doc.get("mode") != "commits":
            raise ValueError(f"mode {doc.get('mode')!r}, expected 'commits'")
        la, lb = doc["labels"]
        rows = {point_name(r["connections"], r["inflight"]): r for r in doc["rows"]}
        points = []
        for v in doc["verdict"]["points"]:
            row = rows[v["point"]]
            # paired by round like the CPU ratios: a's msg/s over b's is b's time per
            # message over a's
            tpm = [x / y for x, y in zip(row[la]["msg_s_rounds"], row[lb]["msg_s_rounds"],
                                         strict=True) if x and y]
            t_ratio = statistics.median(tpm) if tpm else None
            t_higher = sum(r > 1 for r in tpm)
            t_p = sign_test_p(t_higher, len(tpm))
            points.append(PointVerdict(
                v["point"], v["paired_cpu_ratio_b_over_a"], int(v["b_higher_rounds"]),
                int(v["rounds"]), float(v["sign_test_p"]), bool(v["regression"]),
                row[la]["server_cpu_us_per_msg_median"], row[lb]["server_cpu_us_per_msg_median"],
                tool=str(doc.get("tool", "echo")),
                tpm_ratio=round(t_ratio, 4) if t_ratio else None, tpm_higher=t_higher,
                tpm_p=round(t_p, 4),
                tpm_regression=t_ratio is not None and t_ratio > 1 + threshold and t_p < alpha))
    except (KeyError, TypeError, ValueError) as exc:
        raise SideBySideError(f"unreadable versus result: {exc!r}") from None
    return SideBySideResult(a, b, tuple(points), seconds)


#: In the command line of a side-by-side run (how a restarted daemon recognises one).
MARKER = b"benchmarks.load.versus"

#: ``started(pgid, work_dir)`` when a run starts, ``started(None, "")`` when it ended.
Started = Callable[[int | None, str], None]


class SideBySideRunner:
    """Runs ``versus --commits`` as a child process group that :meth:`abandon` can stop.

    ``started`` learns the group id and the work directory (worktrees, result) of each
    run, so that a daemon killed with SIGKILL can be cleaned up after by the next start
    (:meth:`kill_orphan`). ``pass_env``: see ``scheduler.children.child_env``."""

    def __init__(self, cfg: SideBySideConfig, *, repo: Path, pass_env: tuple[str, ...] = (),
                 started: Started | None = None) -> None:
        self.cfg = cfg
        self.repo = repo
        self.pass_env = pass_env
        self.started = started
        self._proc: subprocess.Popen[str] | None = None
        self._stopping = False
        self._lock = threading.Lock()

    def applies(self, commit: str) -> bool:
        """Only a commit with the toolserver's sources can be compared side by side."""
        proc = subprocess.run(["git", "-C", str(self.repo), "cat-file", "-e",
                               f"{commit}:src/toolserver/__init__.py"],
                              capture_output=True, check=False)
        return proc.returncode == 0

    def run(self, a: str, b: str, *, project_dir: Path,
            progress: Callable[[str], None] | None = None) -> SideBySideResult:
        """One side-by-side run of ``a`` (parent) and ``b`` with the instrument in
        ``project_dir`` (where ``benchmarks`` is importable from); raises ``SideBySideError``."""
        # the work directory is known to the state before anything runs in it, and
        # removed before the state forgets it: a daemon killed at any point leaves nothing
        # the next start cannot find (kill_orphan)
        tmp = tempfile.mkdtemp(prefix="scheduler-side-by-side-")
        if self.started:
            self.started(0, tmp)
        try:
            return self._run(a, b, tmp, project_dir=project_dir, progress=progress)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if self.started:
                self.started(None, "")

    def _run(self, a: str, b: str, tmp: str, *, project_dir: Path,
             progress: Callable[[str], None] | None) -> SideBySideResult:
        """``run`` in the work directory ``tmp``."""
        out = Path(tmp) / "versus.json"
        cmd = [sys.executable, "-m", "benchmarks.load.versus", "--commits", a, b,
               "--repo", str(self.repo), "--points", self.cfg.points,
               "--rounds", str(self.cfg.rounds), "--duration", f"{self.cfg.duration_s:g}",
               "--threshold", f"{self.cfg.threshold:g}", "--alpha", f"{self.cfg.alpha:g}",
               "--tool", self.cfg.tool, "--json", str(out),
               "--worktree-dir", str(Path(tmp) / "worktrees")]
        # the servers run the commit's code: the allow-listed environment only
        env = child_env(self.pass_env, overrides={"PYTHONUNBUFFERED": "1"})
        t0 = time.monotonic()
        with self._lock:
            if self._stopping:
                raise SideBySideError("abandoned (shutdown)")
            try:
                proc = subprocess.Popen(cmd, cwd=project_dir, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True, errors="replace")
            except OSError as exc:
                raise SideBySideError(f"cannot start versus: {exc}") from None
            self._proc = proc
        if self.started:
            self.started(proc.pid, tmp)
        timer = threading.Timer(self.cfg.timeout_s, kill_group, args=(proc, STOP_GRACE_S))
        timer.daemon = True
        timer.start()
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if progress and line.strip():
                    progress(line.rstrip())
            rc = proc.wait()
        except BaseException:  # SIGTERM/Ctrl-C in this process: take the child along
            kill_group(proc, STOP_GRACE_S)
            raise
        finally:
            timer.cancel()
            with self._lock:
                self._proc = None
            self._remove_worktrees(Path(tmp) / "worktrees")
        seconds = time.monotonic() - t0
        if self._stopping:
            raise SideBySideError("abandoned (shutdown)")
        if rc not in (0, 1) or not out.is_file():
            why = "timed out" if seconds >= self.cfg.timeout_s else f"exit {rc}"
            tail = "".join(lines[-5:]).strip()
            raise SideBySideError(f"versus {a[:8]} {b[:8]} failed ({why}): {tail}")
        try:
            doc = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SideBySideError(f"unreadable versus result: {exc}") from None
        return parse_versus(doc, a, b, seconds, threshold=self.cfg.threshold,
                            alpha=self.cfg.alpha)

    def abandon(self) -> None:
        """Stop a run in progress (shutdown) and refuse new ones."""
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            kill_group(proc, STOP_GRACE_S)

    def kill_orphan(self, pgid: int, work_dir: str) -> bool:
        """Start-up after a SIGKILL: stop the side-by-side run (versus and both servers, one
        process group) a killed daemon left behind — group ``pgid``, or found by its work
        directory when the daemon died before it could store the group — and remove its
        worktrees and work directory. SIGKILL at once: nobody waits for its verdict, and
        its worktrees are removed here. True when a run was still there."""
        groups = {pgid} if pgid > 0 else set()
        if work_dir:
            groups |= groups_of(work_dir.encode())
        killed = False
        # versus has the work directory on its command line, the servers in PYTHONPATH
        markers = (MARKER, work_dir.encode()) if work_dir else (MARKER,)
        for group in groups:
            killed = kill_orphan_group(group, markers, grace_s=0) or killed
        if work_dir:
            self._remove_worktrees(Path(work_dir) / "worktrees")
            shutil.rmtree(work_dir, ignore_errors=True)
        return killed

    def _remove_worktrees(self, under: Path) -> None:
        """Worktrees a killed versus left under ``under`` (it removes its own when it can
        unwind; a SIGKILL after the grace period does not let it)."""
        listing = subprocess.run(["git", "-C", str(self.repo), "worktree", "list",
                                  "--porcelain"], capture_output=True, text=True, check=False)
        for line in listing.stdout.splitlines():
            path = line.removeprefix("worktree ")
            if line.startswith("worktree ") and Path(path).is_relative_to(under):
                subprocess.run(["git", "-C", str(self.repo), "worktree", "remove", "--force",
                                path], capture_output=True, check=False)
        subprocess.run(["git", "-C", str(self.repo), "worktree", "prune"],
                       capture_output=True, check=False)
