"""Fault injection: kill -9 the scheduler daemon at random moments of a measured history,
restart it each time, and check that nothing was lost, sent twice or left behind.

    python -m selftest.faults --kills 20

Under a work directory it builds the tiny asv project (``selftest.tinyproj``) with this
checkout's ``src/toolserver`` in every commit, so that the side-by-side check runs too; a
Slack-compatible server (``selftest.slack``); and the daemon (``python -m scheduler run``,
bot backend, the repository watched through a ``file://`` URL so that every poll fetches).
It commits a planned history one commit at a time — slowdowns that breach a limit, fixes,
a broken build: each commit is worth a known set of alerts — and while the daemon works
on it, kills it with SIGKILL in each phase in turn, and starts it again:

* ``poll``: during the ``git fetch`` of a poll that brings a new commit (a ``git`` shim
  on the daemon's PATH makes the fetch last 0.4 s, so that it can be hit);
* ``asv run``: while ``asv run`` measures a commit;
* ``side by side``: while ``versus --commits`` runs the commit against its parent;
* ``judging``: after the measurement, while the daemon publishes, judges and writes
  alerts (it is busy and no child of the other phases runs);
* ``outbox``: while a message is being delivered: the Slack server kills the daemon
  0–0.3 s after it stored a posted message, before or after the answer went out.

At the end the daemon is stopped with SIGTERM and the run checks: every commit measured
(the broken build failed), every expected alert delivered exactly once (by its text, and
by the outbox key the message carries in its metadata; the plots too), nothing
unexpected, no orphan process (nothing left with the run's TMPDIR), no worktree or work
directory left, ``PRAGMA integrity_check`` of the state database ``ok``. Exit 0 when all
hold; ``--json`` writes the figures.

The commit under test is not at fault for being killed here, so ``[asv] max_attempts`` is
raised for the run (a real daemon gives up on a commit after 3).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .slack import SlackServer
from .tinyproj import REPO_ROOT, TinyRepo, make_asv_project, write_config

PHASES = ("poll", "asv run", "side by side", "judging", "outbox")
LIMIT_S = 0.015  # [[limit]] of the tiny series: above it is a "Limit breached" alert
THRESHOLD = 0.05
TOKEN = "xoxb-faults-secret-token"
SERIES = "bench_tiny.Suite.track_latency"

#: The planned history: (value in seconds or "broken", subject). Each one adds known
#: alerts (expected_alerts); more kills than it can hold extend it (EXTENSION).
PLAN: tuple[tuple[float | str, str], ...] = (
    (0.010, "base"),
    (0.010, "docs only"),
    (0.020, "planted slowdown"),
    (0.020, "still slow"),
    (0.010, "fix"),
    ("broken", "broken build"),
    (0.010, "after the broken build"),
    (0.025, "second slowdown"),
    (0.010, "second fix"),
    (0.010, "tail"),
)
EXTENSION = ((0.030, "another slowdown"), (0.010, "another fix"))

GIT_SHIM = """#!/bin/sh
# git of the fault-injection run: a poll's fetch takes a moment, so that a kill can land in it
case " $* " in
  *" fetch --prune origin "*)
    mark="{marks}/poll.$$"; : > "$mark"; sleep 0.4
    "{git}" "$@"; rc=$?; rm -f "$mark"; exit $rc;;
esac
exec "{git}" "$@"
"""


def say(msg: str) -> None:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%H:%M:%S")
    print(f"[faults {stamp}] {msg}", file=sys.stderr, flush=True)


def expected_alerts(plan: list[tuple[float | str, str]]) -> list[tuple[str, int]]:
    """(message prefix, commit index) of every alert the history is worth, from the
    judge's rules: a step over the threshold against the previous measured commit (a
    regression), a value over the limit (a breach, once while open), back within the
    threshold of an open regression's "before" or under the limit (a recovery note), a
    commit that fails to build (a failure)."""
    out: list[tuple[str, int]] = []
    prev: float | None = None
    open_history: list[float] = []  # "before" of each open regression
    limit_open = False
    for i, (value, _subject) in enumerate(plan):
        if value == "broken":
            out.append(("Build or benchmark run failed for", i))
            continue
        assert isinstance(value, float)
        # the alerts opened before this commit that it brings back
        recovered = [b for b in open_history if value <= b * (1 + THRESHOLD)]
        out += [("Recovered:", i)] * len(recovered)
        open_history = [b for b in open_history if b not in recovered]
        if limit_open and value <= LIMIT_S:
            out.append(("Recovered:", i))
            limit_open = False
        if prev is not None and value > prev * (1 + THRESHOLD):
            out.append(("Performance regression:", i))
            open_history.append(prev)
        if value > LIMIT_S and not limit_open:
            out.append(("Limit breached:", i))
            limit_open = True
        prev = value
    return out


@dataclass
class Kill:
    number: int
    target: str
    phase: str
    commit: int  # index of the newest commit added when it happened
    seconds: float  # since the start of the run


@dataclass
class Report:
    kills_wanted: int = 0
    phases: tuple[str, ...] = PHASES
    kills: list[Kill] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    commits: int = 0
    measured: int = 0
    failed_builds: int = 0
    not_measured: list[str] = field(default_factory=list)
    expected: int = 0
    delivered: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    plots_duplicated: list[str] = field(default_factory=list)
    outbox_not_sent: list[str] = field(default_factory=list)
    orphans_cleaned_at_restart: int = 0
    orphans: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    integrity: str = ""
    token_leaks: list[str] = field(default_factory=list)
    restarts: int = 0
    minutes: float = 0.0

    @property
    def phases_missed(self) -> list[str]:
        counts = Counter(k.phase for k in self.kills)
        return [p for p in self.phases if not counts.get(p)]

    @property
    def passed(self) -> bool:
        return not (self.not_measured or self.lost or self.duplicated or self.unexpected
                    or self.plots_duplicated or self.outbox_not_sent or self.orphans
                    or self.leftovers or self.token_leaks or self.phases_missed) \
            and self.integrity == "ok" and len(self.kills) >= self.kills_wanted

    def per_phase(self) -> dict[str, int]:
        counts = Counter(k.phase for k in self.kills)
        return {p: counts.get(p, 0) for p in (*PHASES, *sorted(set(counts) - set(PHASES)))}

    def table(self) -> str:
        lines = [f"kills: {len(self.kills)} of {self.kills_wanted} ({self.restarts} restarts), "
                 "per phase: " + ", ".join(f"{p} {n}" for p, n in self.per_phase().items())
                 + (f"; no kill in {', '.join(self.phases_missed)}"
                    if self.phases_missed else "")]
        if self.skipped:
            lines.append("targets not reached in time: " + ", ".join(
                f"{p} {n}" for p, n in sorted(self.skipped.items())))
        lines += [
            f"commits: {self.commits}, measured {self.measured}, failed builds "
            f"{self.failed_builds}, not measured {len(self.not_measured)}"
            + (f" ({', '.join(self.not_measured)})" if self.not_measured else ""),
            f"alerts: expected {self.expected}, delivered {self.delivered}, lost "
            f"{len(self.lost)}, duplicated {len(self.duplicated)}, unexpected "
            f"{len(self.unexpected)}, plots shared twice {len(self.plots_duplicated)}, "
            f"outbox rows not sent {len(self.outbox_not_sent)}",
            f"orphans: stopped by a restart {self.orphans_cleaned_at_restart}, left at the "
            f"end {len(self.orphans)}; leftover worktrees/work dirs {len(self.leftovers)}",
            f"state database integrity_check: {self.integrity}; token in logs, state or "
            f"Slack: {len(self.token_leaks)}",
            f"{self.minutes:.1f} min: {'PASS' if self.passed else 'FAIL'}",
        ]
        for name in ("lost", "duplicated", "unexpected", "plots_duplicated",
                     "outbox_not_sent", "orphans", "leftovers", "token_leaks"):
            for item in getattr(self, name):
                lines.append(f"  {name}: {item}")
        return "\n".join(lines)


class Daemon:
    """One ``python -m scheduler run`` process, its output read by threads (stderr lines
    are kept with their time: the phase is read from them and from its children)."""

    def __init__(self, config: Path, env: dict[str, str], log_dir: Path) -> None:
        self.config, self.env, self.log_dir = config, env, log_dir
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[tuple[float, str]] = []
        self.starts = 0
        self._lock = threading.Lock()

    def start(self, timeout: float = 120.0) -> None:
        self.starts += 1
        log = open(self.log_dir / f"daemon-{self.starts:02d}.log", "w",  # noqa: SIM115
                   encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "--config", str(self.config), "run"],
            cwd=REPO_ROOT, env=self.env, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, errors="replace")
        ready = threading.Event()

        def read(stream: Any, is_err: bool) -> None:
            for line in stream:
                log.write(line)
                log.flush()
                if is_err:
                    with self._lock:
                        self.lines.append((time.monotonic(), line.rstrip()))
                    if "] daemon started (" in line:  # its SIGTERM handler is in place
                        ready.set()
            if is_err:
                log.close()

        threading.Thread(target=read, args=(self.proc.stdout, False), daemon=True).start()
        threading.Thread(target=read, args=(self.proc.stderr, True), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if self.proc.poll() == -signal.SIGKILL:
                return  # killed while starting (an outbox kill): started again by the run
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start (exit {self.proc.poll()}); "
                                   f"see {self.log_dir}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=180)

    def last_event(self) -> tuple[float, str]:
        """The newest say-line that marks a step of measuring a run."""
        with self._lock:
            for t, line in reversed(self.lines):
                text = line.split("] ", 1)[-1]
                if text.startswith(("measuring ", "measured ", "FAILED ", "side by side",
                                    "side-by-side check", "judging ", "alerts: ",
                                    "daemon started")):
                    return t, text
        return 0.0, ""

    def children(self) -> list[str]:
        if not self.alive():
            return []
        assert self.proc is not None
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        out = []
        for kid in kids:
            with contextlib.suppress(psutil.Error):
                out.append(" ".join(kid.cmdline()))
        return out

    def cpu(self) -> float:
        assert self.proc is not None
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return t.user + t.system


class FaultRun:
    """The history, the Slack server, the daemon, the kills (see the module docstring)."""

    def __init__(self, workdir: Path, *, kills: int, seed: int, asv_project: Path | None,
                 phases: tuple[str, ...] = PHASES, plan: tuple[Any, ...] = PLAN,
                 side_by_side: bool = True, confirm: bool = True, phase_timeout_s: float = 240.0,
                 max_minutes: float = 120.0, log: Callable[[str], None] = say) -> None:
        self.work = workdir
        self.kills_wanted = kills
        self.rng = random.Random(seed)
        self.phases = phases
        self.plan: list[tuple[float | str, str]] = list(plan)
        self.side_by_side = side_by_side
        self.confirm = confirm
        self.phase_timeout_s = phase_timeout_s
        self.deadline = time.monotonic() + max_minutes * 60
        self.say = log
        self.report = Report(kills_wanted=kills, phases=phases)
        self.t0 = time.monotonic()
        self.hashes: list[str] = []
        self._kill_lock = threading.Lock()
        # outbox kills: "" -> armed (the next posted message fires) -> fired -> killed
        self._outbox = ""
        self._published_after = -1.0  # time of the say-line an asv publish was seen after
        self._judged_for = -1.0  # time of the say-line whose judging was seen to end
        self._idle_since = 0.0
        self.judging_since = 0.0
        self.asv = asv_project or make_asv_project(workdir / "asv")
        self.tmp = workdir / "tmp"
        self.marks = workdir / "marks"
        for d in (self.tmp, self.marks, workdir / "logs", workdir / "baselines"):
            d.mkdir(parents=True, exist_ok=True)
        self.repo = TinyRepo(workdir / "repo", toolserver=True)
        self.slack = SlackServer()
        self.slack.on_post = self._on_post
        self.config = self._write_config()
        self.daemon = Daemon(self.config, self._env(), workdir / "logs")

    # ---- set-up --------------------------------------------------------------------------

    def _write_config(self) -> Path:
        return write_config(
            self.work, self.asv, f"file://{self.repo.path}", machine="faults",
            asv="max_attempts = 1000", schedule='nightly = "59 23 31 12 *"',
            initial_commits=100, max_queue=100,
            limits=f"[[limit]]\nbenchmark = '{SERIES.rsplit('.', 1)[-1]}'\nmax = {LIMIT_S}\n",
            extra=textwrap.dedent(f"""
                [judge]
                confirm = {str(self.confirm).lower()}

                [side_by_side]
                enabled = {str(self.side_by_side).lower()}
                points = "10x1"
                rounds = 2
                duration_s = 0.3
                timeout_s = 180

                [slack]
                backend = "bot"
                channel = "#perf"
                base_url = "{self.slack.base_url}"
                timeout_s = 10
                """))

    def _env(self) -> dict[str, str]:
        bindir = self.work / "bin"
        bindir.mkdir(exist_ok=True)
        real_git = shutil.which("git")
        if real_git is None:
            raise RuntimeError("git is not on PATH")
        shim = bindir / "git"
        shim.write_text(GIT_SHIM.format(marks=self.marks, git=real_git))
        shim.chmod(0o755)
        # a HOME of its own: asv keeps its machine names in ~/.asv-machine.json, which
        # test sessions of the same user rewrite; uv's and matplotlib's caches stay
        # shared (no downloads, no font cache built at every start)
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        uv_cache = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")
        mpl = os.environ.get("MPLCONFIGDIR") or str(Path.home() / ".cache" / "matplotlib")
        return {**os.environ, "SLACK_BOT_TOKEN": TOKEN, "TMPDIR": str(self.tmp),
                "HOME": str(home), "UV_CACHE_DIR": uv_cache, "MPLCONFIGDIR": mpl,
                "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1"}

    # ---- observing the daemon ------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(f"file:{self.work / 'state' / 'state.sqlite3'}?mode=ro",
                             uri=True, timeout=10)
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def _settled(self) -> bool:
        """Every commit added is measured and judged, nothing queued, nothing to send."""
        if not (self.work / "state" / "state.sqlite3").exists():
            return False
        try:
            with contextlib.closing(self._db()) as db:
                busy = db.execute(
                    "SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running') "
                    "OR judged = 0").fetchone()[0]
                pending = db.execute(
                    "SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
                finished = {h for (h,) in db.execute(
                    "SELECT commit_hash FROM runs WHERE status IN ('done', 'failed')")}
        except sqlite3.Error:
            return False
        return not busy and not pending and set(self.hashes) <= finished

    def _known(self, commit: str) -> bool:
        try:
            with contextlib.closing(self._db()) as db:
                return db.execute("SELECT 1 FROM commits WHERE hash = ?",
                                  (commit,)).fetchone() is not None
        except sqlite3.Error:
            return False

    def phase(self) -> str:
        """What the daemon is doing now: one of PHASES, "publish" or "idle". Judging is
        the time after the side-by-side verdict (or without one: after the ``asv publish``
        that follows a measurement; for a confirmation: from "judging X against") while
        the daemon is busy and nothing else has started (``judging_since``: its start)."""
        kids = self.daemon.children()
        if any("benchmarks.load.versus" in k for k in kids):
            return "side by side"
        if any(" asv run " in f" {k} " for k in kids):
            return "asv run"
        t, event = self.daemon.last_event()
        if any(" asv publish " in f" {k} " for k in kids):
            self._published_after = t
            return "publish"
        start = 0.0
        if _judging_event(event):
            start = t
        elif event.startswith(("measured ", "FAILED ")) and self._published_after == t:
            if self.judging_since < t:  # the first look since that publish ended
                self.judging_since = time.monotonic()
            start = self.judging_since
        # judging ends when the daemon has been idle for half a second (it waits for git
        # now and then while it judges)
        if start and self._judged_for != t:
            if self._busy():
                self.judging_since = start
                self._idle_since = 0.0
                return "judging"
            now = time.monotonic()
            self._idle_since = self._idle_since or now
            if now - self._idle_since > 0.5:
                self._judged_for = t
                self._idle_since = 0.0
        if any(self.marks.iterdir()):
            return "poll"
        return "idle"

    def _busy(self, window_s: float = 0.05) -> bool:
        """Whether the daemon spent CPU time just now (judging runs in-process)."""
        before = self.daemon.cpu()
        time.sleep(window_s)
        return self.daemon.cpu() > before

    # ---- killing -------------------------------------------------------------------------

    def _kill(self, target: str, phase: str) -> None:
        with self._kill_lock:
            if not self.daemon.alive():
                return
            self.daemon.kill9()
            kill = Kill(len(self.report.kills) + 1, target, phase, len(self.hashes) - 1,
                        round(time.monotonic() - self.t0, 1))
            self.report.kills.append(kill)
        self.say(f"kill {kill.number}/{self.kills_wanted}: SIGKILL in {phase} "
                 f"(commit {kill.commit + 1}/{len(self.plan)})")

    def _on_post(self, message: dict[str, Any]) -> None:
        """Slack server thread: a message was just stored; kill if armed (0–0.3 s later:
        before the answer went out, or after, while the daemon records it)."""
        with self._kill_lock:
            if self._outbox != "armed":
                return
            self._outbox = "fired"

        def fire() -> None:
            self._kill("outbox", "outbox")
            self._outbox = "killed"

        threading.Timer(self.rng.uniform(0.0, 0.3), fire).start()

    def _try_kill(self, target: str) -> bool:
        """Kill in ``target`` if the daemon is in it now; True when it did."""
        if target == "outbox":  # armed by _aim; the Slack server kills (_on_post)
            return False
        phase = self.phase()
        if phase != target:
            return False
        if target == "poll" and (not self.hashes or self._known(self.hashes[-1])):
            return False  # a poll that brings nothing new
        # judging is short: the label is then what the last 50 ms before the kill showed
        delay = {"poll": 0.15, "asv run": 2.0, "side by side": 3.0, "judging": 0.1}[target]
        time.sleep(self.rng.uniform(0.0, delay))
        self._kill(target, self.phase())
        return True

    # ---- the run -------------------------------------------------------------------------

    def _aim(self, target: str) -> str:
        """Aim at ``target``; for the outbox, arm the Slack server's kill at once (a
        restarted daemon delivers what is pending while it starts)."""
        with self._kill_lock:
            if target == "outbox" and self._outbox == "":
                self._outbox = "armed"
        return target

    def _next_target(self, current: str) -> str:
        """The phase to kill in next ("" when done): in turn, each up to its share of the
        kills (a kill that landed elsewhere — the judge was done already — does not count
        for the phase it aimed at, so that phase is tried again), then in turn up to the
        number of kills asked for; at most twice that many kills in all. A phase not reached
        within ``phase_timeout_s`` three times is not tried again."""
        if not self.kills_wanted or len(self.report.kills) >= 2 * self.kills_wanted:
            return ""
        given_up = {p for p, n in self.report.skipped.items() if n >= 3}
        share = max(1, self.kills_wanted // len(self.phases))
        landed = Counter(k.phase for k in self.report.kills)
        start = self.phases.index(current) + 1 if current in self.phases else 0
        order = [self.phases[(start + i) % len(self.phases)] for i in range(len(self.phases))]
        for phase in order:
            if landed[phase] < share and phase not in given_up:
                return phase
        if len(self.report.kills) < self.kills_wanted:
            return next((p for p in order if p not in given_up), "")
        return ""

    def _add_commit(self) -> None:
        i = len(self.hashes)
        if i >= len(self.plan):
            self.plan.append(EXTENSION[(i - len(PLAN)) % len(EXTENSION)])
        value, subject = self.plan[i]
        if value == "broken":
            h = self.repo.commit(0.010, subject, broken_build=True)
        else:
            assert isinstance(value, float)
            h = self.repo.commit(value, subject)
        self.hashes.append(h)
        self.say(f"commit {i + 1}: {h[:8]} {subject} ({value})")

    def run(self) -> Report:
        self.say(f"work directory {self.work}; {self.kills_wanted} kills over "
                 f"{', '.join(self.phases)}")
        self._add_commit()
        self.daemon.start()
        target = self._aim(self._next_target(""))
        waiting_since = time.monotonic()
        try:
            while True:
                if time.monotonic() > self.deadline:
                    raise RuntimeError("the run exceeded --max-minutes")
                kills_done = len(self.report.kills)
                if target == "outbox" and self._outbox == "killed":  # by the Slack server
                    self._outbox = ""
                    target = self._aim(self._next_target(target))
                    waiting_since = time.monotonic()
                wanted = bool(target)
                if not self.daemon.alive():
                    if kills_done == 0 or self.daemon.proc is None or \
                            self.daemon.proc.returncode != -signal.SIGKILL:
                        raise RuntimeError(f"the daemon stopped by itself (exit "
                                           f"{self.daemon.proc and self.daemon.proc.returncode}"
                                           f"); see {self.work / 'logs'}")
                    self.daemon.start()
                    self.report.restarts += 1
                    continue
                if self._outbox == "fired":  # the Slack server's kill is on its way
                    time.sleep(0.05)
                    continue
                if self._settled():
                    more = len(self.hashes) < len(self.plan) or (
                        wanted and len(self.hashes) < len(PLAN) + 2 * self.kills_wanted)
                    if more:
                        self._add_commit()
                        time.sleep(0.2)
                        continue
                    break  # done, or a phase never came within the commits allowed
                # kills start once the first commit is measured (asv's environment exists)
                if wanted and len(self.hashes) > 1:
                    if self._try_kill(target):
                        target = self._aim(self._next_target(target))
                        waiting_since = time.monotonic()
                        continue
                    if time.monotonic() - waiting_since > self.phase_timeout_s:
                        self.say(f"no {target} within {self.phase_timeout_s:.0f}s; next phase")
                        self.report.skipped[target] += 1
                        with self._kill_lock:
                            if self._outbox == "armed":
                                self._outbox = ""
                        target = self._aim(self._next_target(target))
                        waiting_since = time.monotonic()
                elif self._outbox == "armed":
                    self._outbox = ""
                time.sleep(0.01)
            self.say("history done; stopping the daemon (SIGTERM)")
            rc = self.daemon.stop()
            if rc != 0:
                raise RuntimeError(f"the daemon did not stop cleanly (exit {rc})")
            self._verify()
        finally:
            if self.daemon.alive():
                self.daemon.kill9()
            self.slack.stop()
        self.report.minutes = round((time.monotonic() - self.t0) / 60, 1)
        return self.report

    # ---- the verdict ---------------------------------------------------------------------

    def _verify(self) -> None:
        r = self.report
        time.sleep(1.0)  # children of the last kill that finish by themselves (a fetch)
        with contextlib.closing(self._db()) as db:
            status = dict(db.execute("SELECT commit_hash, status FROM runs"))
            r.integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
            r.outbox_not_sent = [f"{k} ({s})" for k, s in db.execute(
                "SELECT key, status FROM outbox WHERE status != 'sent'")]
        r.commits = len(self.hashes)
        for i, h in enumerate(self.hashes):
            want = "failed" if self.plan[i][0] == "broken" else "done"
            got = status.get(h, "not queued")
            if got != want:
                r.not_measured.append(f"{h[:8]} {self.plan[i][1]}: {got}, expected {want}")
            elif want == "done":
                r.measured += 1
            else:
                r.failed_builds += 1
        # alerts: by text (prefix + commit) and by outbox key (message metadata)
        posted = self.slack.posted()
        texts = [str(m.get("text", "")) for m in posted]
        expected = Counter(expected_alerts(self.plan[:len(self.hashes)]))
        r.expected = sum(expected.values())
        r.delivered = len(posted)
        found: Counter[tuple[str, int]] = Counter()
        for text in texts:
            match = [(prefix, i) for (prefix, i) in expected
                     if text.startswith(prefix) and self.hashes[i][:8] in text]
            if match:
                found[match[0]] += 1
            else:
                r.unexpected.append(text[:160])
        for item, n in expected.items():
            got = found.get(item, 0)
            name = f"{item[0]} {self.hashes[item[1]][:8]} ({self.plan[item[1]][1]})"
            if got < n:
                r.lost.append(f"{name}: {got} of {n}")
            elif got > n:
                r.duplicated.append(f"{name}: {got} for {n}")
        keys = Counter(self.slack.outbox_keys())
        r.duplicated += [f"outbox key {k} posted {n} times" for k, n in keys.items() if n > 1]
        files = Counter(self.slack.thread_files())
        r.plots_duplicated = [f"{name} shared {n} times into thread {ts}"
                              for (ts, name), n in files.items() if n > 1]
        # what the daemons said about orphans they stopped at start-up
        for log in sorted((self.work / "logs").glob("daemon-*.log")):
            r.orphans_cleaned_at_restart += log.read_text(errors="replace").count(
                "left behind by a killed scheduler")
        r.orphans = _orphans(self.work, self.tmp)
        r.leftovers = [str(p) for p in self.tmp.glob("scheduler-side-by-side-*")]
        mirror = self.work / "state" / "repo.git"
        if mirror.is_dir():
            listing = subprocess.run(["git", "-C", str(mirror), "worktree", "list"],
                                     capture_output=True, text=True, check=False).stdout
            r.leftovers += [line for line in listing.splitlines()[1:] if line.strip()]
        r.token_leaks = _token_leaks(self.work, self.slack)


def _judging_event(event: str) -> bool:
    """A say-line after which the daemon judges: the side-by-side verdict (or that there is
    none), the start of a confirmation's judgement."""
    return (event.startswith(("side by side ", "side-by-side check", "judging "))
            and not event.startswith("side by side:"))


def _orphans(work: Path, tmp: Path) -> list[str]:
    """Processes still alive that belong to the run: the daemon's children get its TMPDIR."""
    out = []
    me = psutil.Process()
    ours = {me.pid, *(p.pid for p in me.parents())}  # this run and what started it
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid in ours:
            continue
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            mine = str(work) in cmd or proc.environ().get("TMPDIR") == str(tmp)
        except (psutil.Error, OSError):
            continue
        if mine:
            out.append(f"{proc.pid} {cmd[:160]}")
    return out


def _token_leaks(work: Path, slack: SlackServer) -> list[str]:
    """Where the bot token shows up: logs, the state directory, the messages."""
    leaks = []
    for path in itertools.chain((work / "logs").glob("*.log"), (work / "state").glob("*")):
        if path.is_file() and TOKEN.encode() in path.read_bytes():
            leaks.append(str(path))
    if TOKEN in json.dumps(slack.messages):
        leaks.append("a Slack message")
    return leaks


@contextlib.contextmanager
def _workdir(path: str | None, keep: bool) -> Iterator[Path]:
    if path:
        root = Path(path).resolve()
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    root = Path(tempfile.mkdtemp(prefix="selftest-faults-"))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None, *, prog: str = "python -m selftest.faults") -> int:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Kill -9 the scheduler daemon at random moments of a measured history "
                    "(poll, asv run, side by side, judging, outbox delivery in turn), "
                    "restart it each time, and check at the end: every commit measured, "
                    "every expected alert delivered exactly once, no orphan process, the "
                    "state database intact. Exit 1 when one of them fails.")
    ap.add_argument("--kills", type=int, default=20, help="kills (default 20)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help=f"phases to kill in, in turn (default {','.join(PHASES)})")
    ap.add_argument("--no-side-by-side", "--no-paired", action="store_true",
                    help="without the side-by-side check (faster)")
    ap.add_argument("--workdir", metavar="DIR", help="work here (default: a temporary "
                    "directory, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--max-minutes", type=float, default=120.0,
                    help="give up after this long (default 120)")
    args = ap.parse_args(argv)
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"--phases: unknown {', '.join(sorted(unknown))} (known: {', '.join(PHASES)})")
    if args.no_side_by_side and "side by side" in phases:
        phases = tuple(p for p in phases if p != "side by side")
    seed = args.seed if args.seed is not None else int(time.time())
    say(f"seed {seed}")
    with _workdir(args.workdir, args.keep) as work:
        run = FaultRun(work, kills=args.kills, seed=seed, asv_project=None, phases=phases,
                       side_by_side=not args.no_side_by_side, max_minutes=args.max_minutes)
        try:
            report = run.run()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(report.table())
    if args.json:
        doc = asdict(report)
        doc.update(seed=seed, per_phase=report.per_phase(), passed=report.passed)
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"report: {args.json}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
