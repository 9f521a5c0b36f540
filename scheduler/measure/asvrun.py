"""Everything that knows about asv: the generated config, ``asv run``/``publish``, and the
on-disk result format. Switching suites or asv versions should touch only this module.

Why a generated config: the project's ``asv.conf.json`` describes how to build and measure
the project; the scheduler only changes *where* things go. ``repo`` points at the watched
repository (or our mirror of it), ``benchmark_dir`` at this checkout's benchmarks (the
instrument never moves with the commit under test), ``results_dir`` into the state directory
and ``html_dir`` to the served site. Each profile gets its own asv machine name
(``<machine>-<profile>``) so a quick and a full result of one commit never overwrite each
other and show as separate series in the site.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..children import child_env, groups_of, kill_group, kill_orphan_group
from ..config import Config
from ..publish.offline_site import OfflineSiteError, make_offline
from ..results import Measurement, ResultFile, ResultsError, StepRegression
from . import idle


class AsvError(Exception):
    """asv could not be configured or run (not a benchmark failure of one commit)."""


@dataclass
class RunOutcome:
    """What one ``asv run`` of one commit produced."""

    status: str  # "done" | "failed" | "abandoned"
    returncode: int | None
    log: str
    error: str = ""
    result: ResultFile | None = None
    seconds: float = 0.0


@dataclass
class _Proc:
    proc: subprocess.Popen[str] | None = None
    abandoned: bool = False
    lines: list[str] = field(default_factory=list)


#: Prefix of the instrument's progress lines in the progress callback and the run's log
#: (the phase running, elapsed and expected time; benchmarks/_harness.py writes them to
#: ``BENCH_PROGRESS_FILE`` because asv holds a benchmark's own output until it ends).
PROGRESS_MARK = "instrument: "
#: Seconds between the instrument's in-phase progress lines in the daemon's log.
PROGRESS_EVERY_S = 30
#: How a busy machine is reported in a run's log (the nightly summary quotes it).
NOT_IDLE = "warning: machine not idle: "
#: Runs whose instrument documents are kept (a full run's are about 10 MB).
KEEP_DOCUMENTS = 40

# Log lines meaning the environment/tooling is broken (raise AsvError, re-queue the run)
# rather than that the commit failed to build.
INFRA_FAILURES = ("No environments selected", "command not found",
                  "Unknown environment type", "No such file or directory: 'uv'")
#: Benchmark errors that are the measuring set-up's, not the commit's: every scenario fails
#: the same way whatever the commit (benchmarks/_harness.py's messages).
SETUP_FAILURES = ("no instrument interpreter",
                  # ~/.asv-machine.json rewritten by another asv user of this HOME (a test
                  # that restores its copy) after our `asv machine`: measured 2026-12-02,
                  # every run of the daemon failed this way until it was restarted
                  "No information stored about machine")


_PUBLISH_LOCK = threading.Lock()


def _asv_executable() -> list[str]:
    return [sys.executable, "-m", "asv"]


class AsvProject:
    """The asv project as the scheduler runs it (one per state directory)."""

    def __init__(self, cfg: Config, repo_path: Path) -> None:
        self.cfg = cfg
        self.repo_path = repo_path
        self.state_dir = cfg.state_dir
        self.results_dir = cfg.asv.results_dir or cfg.state_dir / "results"
        self.html_dir = cfg.site.html_dir
        self.env_dir = cfg.asv.env_dir or (cfg.state_dir / "env")
        self.config_path = cfg.state_dir / "asv.conf.json"
        self.exe = list(cfg.asv.executable) or _asv_executable()
        self._current = _Proc()
        self._stopping = False
        self._lock = threading.Lock()

    # ---- configuration -----------------------------------------------------------------

    def machine_for(self, profile: str) -> str:
        return f"{self.cfg.asv.machine}-{profile}"

    def load_project_config(self) -> dict[str, Any]:
        src = self.cfg.asv.config
        if not src.is_file():
            raise AsvError(f"asv configuration not found: {src} (set [asv] config)")
        try:
            import json5  # asv's own dependency; asv.conf.json may contain // comments

            data = json5.loads(src.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AsvError(f"{src}: cannot parse asv configuration: {exc}") from None
        if not isinstance(data, dict):
            raise AsvError(f"{src}: asv configuration must be a JSON object")
        return data

    def benchmark_dir(self, data: dict[str, Any] | None = None) -> Path:
        """The instrument's directory (asv imports it from here, never from a commit)."""
        data = self.load_project_config() if data is None else data
        src_dir = self.cfg.asv.config.parent
        bdir = self.cfg.asv.benchmark_dir or (src_dir / data.get("benchmark_dir", "benchmarks"))
        if not Path(bdir).is_dir():
            raise AsvError(f"benchmark directory not found: {bdir}")
        return Path(bdir).resolve()

    def write_config(self) -> Path:
        """Write the generated ``asv.conf.json`` into the state directory."""
        data = self.load_project_config()
        bdir = self.benchmark_dir(data)
        data.update({
            "repo": str(self.repo_path),
            "dvcs": "git",
            "branches": list(self.cfg.repository.branches),
            "benchmark_dir": str(bdir),
            "results_dir": str(self.results_dir),
            "html_dir": str(self.html_dir),
            "env_dir": str(self.env_dir),
        })
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.config_path)
        return self.config_path

    def _env(self, profile: str | None) -> dict[str, str]:
        """asv's environment: the allow-list of ``scheduler.children`` (asv builds and
        runs the commit under test), ``BENCH_PROFILE`` for a run."""
        # a run's processes carry the state directory: a restarted daemon finds what a
        # killed one left running, whatever became of asv itself (kill_orphan)
        extra = {"BENCH_PROFILE": profile, STATE_MARK: str(self.state_dir)} if profile else {}
        env = child_env(self.cfg.asv.pass_env, overrides=extra)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def ensure_machine(self, profile: str) -> None:
        """``asv machine --yes`` for a machine name ``~/.asv-machine.json`` does not know
        (asv refuses to ask without a tty). Checked before every run, not once per
        process: that file is per user, and anything else run by the same user (another
        asv project, a test session restoring its copy) may rewrite it under a running
        daemon."""
        name = self.machine_for(profile)
        if _machine_known(name):
            return
        cmd = [*self.exe, "machine", "--yes", "--machine", name, "--config",
               str(self.config_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self._env(None),
                              cwd=self.state_dir, timeout=300, check=False)
        if proc.returncode != 0:
            raise AsvError(f"asv machine failed: {proc.stdout}{proc.stderr}")

    # ---- running -----------------------------------------------------------------------

    def run(self, commit: str, profile: str, *,
            progress: Callable[[str], None] | None = None,
            started: Callable[[int | None], None] | None = None) -> RunOutcome:
        """Build and benchmark one commit with one profile; never raises for a commit that
        fails to build or whose benchmarks error (that is a ``failed`` outcome with its log).
        """
        if self._stopping:
            return RunOutcome("abandoned", None, "", "run abandoned (shutdown)")
        self.write_config()
        self.ensure_machine(profile)
        machine = self.machine_for(profile)
        # An old result of this commit (nightly re-measures heads) must not pass for this
        # run's; it is set aside and restored only if this run is abandoned.
        aside = self.state_dir / "results-aside"
        stale = self._result_files(commit, machine)
        if stale:
            aside.mkdir(parents=True, exist_ok=True)
        for f in stale:
            f.replace(aside / f.name)
        cmd = [*self.exe, "run", "--config", str(self.config_path), "--machine", machine,
               "--record-samples", "--show-stderr", *self.cfg.asv.extra_args,
               f"{commit}^!"]
        env = self._env(profile)
        progress_file = self.state_dir / "progress.log"
        progress_file.write_text("", encoding="utf-8")
        env["BENCH_PROGRESS_FILE"] = str(progress_file)
        env.setdefault("BENCH_PROGRESS_S", str(PROGRESS_EVERY_S))
        documents = self.documents_dir(commit, profile)
        shutil.rmtree(documents, ignore_errors=True)  # an earlier run's are not this run's
        env["BENCH_RESULTS_DIR"] = str(documents)
        _prune(self.documents_root, keep=KEEP_DOCUMENTS)
        t0 = time.monotonic()
        holder = _Proc()
        with self._lock:
            self._current = holder
            holder.abandoned = self._stopping
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, env=env, cwd=self.state_dir,
                                    start_new_session=True, bufsize=1, errors="replace")
        except OSError as exc:
            raise AsvError(f"cannot start asv ({cmd[0]}): {exc}") from None
        holder.proc = proc
        if started:
            started(proc.pid)  # its process group id: lets a restarted daemon clean up
        if holder.abandoned:  # abandon() raced with the start
            kill_group(proc)
        timer = threading.Timer(self.cfg.asv.run_timeout_s, self._timeout, args=(holder,))
        timer.daemon = True
        timer.start()
        lock = threading.Lock()  # asv's output and the progress lines interleave

        def emit(line: str) -> None:
            with lock:
                holder.lines.append(line if line.endswith("\n") else line + "\n")
                if progress and line.strip():
                    progress(line.rstrip())

        # figures taken on a busy machine are slower for reasons that are not the commit:
        # say so in the log (and the nightly summary), do not refuse to measure
        for warning in idle.check(0.5).warnings:
            emit(f"{NOT_IDLE}{warning}")

        done = threading.Event()
        tail = threading.Thread(target=_follow, args=(progress_file, done, emit),
                                name="asv-progress", daemon=True)
        tail.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                emit(line)
            rc = proc.wait()
        finally:
            done.set()
            tail.join(timeout=5)
            timer.cancel()
            if started:
                started(None)
            with self._lock:
                self._current = _Proc()
        log = "".join(holder.lines)
        seconds = time.monotonic() - t0
        setup = [ln.strip() for ln in log.splitlines()
                 if any(s in ln for s in SETUP_FAILURES)]
        if holder.abandoned or setup:  # drop a partial new result, put the old one back
            for f in self._result_files(commit, machine):
                f.unlink()
        for f in stale:
            kept = aside / f.name
            if (holder.abandoned or setup) and kept.exists():
                kept.replace(f)
            else:
                kept.unlink(missing_ok=True)
        if holder.abandoned:
            return RunOutcome("abandoned", rc, log, "run abandoned (shutdown)", seconds=seconds)
        if setup:  # not this commit's fault: it is re-queued; say what to fix
            raise AsvError(f"the benchmarks cannot run here: {setup[-1].lstrip('· ')}")
        if rc is not None and rc < 0:
            return RunOutcome("failed", rc, log, f"asv killed by signal {-rc}", seconds=seconds)
        files = self._result_files(commit, machine)
        infra = [m for m in INFRA_FAILURES if m in log]
        if not files and infra:
            # not this commit's fault: the measuring set-up itself is broken
            raise AsvError(f"asv could not create its environment ({infra[0]}):\n"
                           + "".join(holder.lines[-20:]))
        if not files:
            return RunOutcome("failed", rc, log, _summarize_failure(log, rc), seconds=seconds)
        try:
            result = self.read_result(files[0])
        except ResultsError as exc:
            return RunOutcome("failed", rc, log, str(exc), seconds=seconds)
        measured = [m for m in result.measurements if m.ok]
        if not measured:
            return RunOutcome("failed", rc, log, _summarize_failure(log, rc), result,
                              seconds=seconds)
        errored = [m.id for m in result.measurements if m.value is None]
        error = ("benchmarks failed: " + ", ".join(errored)) if errored else ""
        return RunOutcome("done", rc, log, error, result, seconds=seconds)

    @property
    def documents_root(self) -> Path:
        """The instrument's documents of every run (the knee plot, the soak's verdict,
        every figure asv does not track): ``<state>/instrument/<hash8>-<profile>/``."""
        return self.state_dir / "instrument"

    def documents_dir(self, commit: str, profile: str) -> Path:
        return self.documents_root / f"{commit[:8]}-{profile}"

    def _timeout(self, holder: _Proc) -> None:
        if holder.proc is not None and holder.proc.poll() is None:
            holder.lines.append(f"\n[scheduler] asv run exceeded {self.cfg.asv.run_timeout_s}s;"
                                " killed\n")
            kill_group(holder.proc)

    def abandon(self) -> bool:
        """Stop the current ``asv run`` (SIGTERM to its process group, then SIGKILL).
        Returns True when a run was in progress."""
        with self._lock:
            self._stopping = True  # also refuses runs that have not started yet
            holder = self._current
            holder.abandoned = True
        if holder.proc is not None and holder.proc.poll() is None:
            kill_group(holder.proc)
            return True
        return holder.proc is not None

    def publish(self) -> str:
        """Regenerate the static site (and regressions.json) from all stored results."""
        self.write_config()
        if not (self.results_dir / "benchmarks.json").is_file():
            return ""  # nothing measured yet
        cmd = [*self.exe, "publish", "--config", str(self.config_path)]
        with _PUBLISH_LOCK:  # machines' views of one results directory publish one site
            proc = subprocess.run(cmd, capture_output=True, text=True, env=self._env(None),
                                  cwd=self.state_dir, timeout=1800, check=False)
        if proc.returncode != 0:
            raise AsvError(f"asv publish failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
        try:  # asv's page loads its scripts from CDNs: serve local copies instead
            make_offline(self.html_dir)
        except OfflineSiteError as exc:
            raise AsvError(f"asv published {self.html_dir}, but the site would need the "
                           f"internet: {exc}") from None
        return proc.stdout

    # ---- results on disk ---------------------------------------------------------------

    def _result_files(self, commit: str, machine: str) -> list[Path]:
        mdir = self.results_dir / machine
        if not mdir.is_dir():
            return []
        return sorted(mdir.glob(f"{commit[:8]}-*.json"))

    def benchmarks_meta(self) -> dict[str, Any]:
        path = self.results_dir / "benchmarks.json"
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ResultsError(f"corrupt asv benchmark list {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ResultsError(f"corrupt asv benchmark list {path}: not a JSON object")
        return data

    def read_result(self, path: Path) -> ResultFile:
        return parse_result_file(path, self.benchmarks_meta())

    def result_for(self, commit: str, profile: str) -> ResultFile | None:
        """Stored result of a commit for a profile, or None. Corrupt files raise
        ResultsError naming the file."""
        files = [f for f in self._result_files(commit, self.machine_for(profile))]
        for f in files:
            res = self.read_result(f)
            if res.commit == commit:
                return res
        return None

    def step_regressions(self) -> list[StepRegression]:
        """asv's own step detection, from the last ``asv publish``'s regressions.json."""
        reg_path = self.html_dir / "regressions.json"
        idx_path = self.html_dir / "index.json"
        if not reg_path.is_file() or not idx_path.is_file():
            return []
        try:
            regs = json.loads(reg_path.read_text(encoding="utf-8"))["regressions"]
            index = json.loads(idx_path.read_text(encoding="utf-8"))
            rev_to_hash: dict[str, str] = index["revision_to_hash"]
            benches: dict[str, Any] = index["benchmarks"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ResultsError(f"cannot read asv regressions in {self.html_dir}: {exc}") from None
        out = []
        for entry in regs:
            try:
                name, graph_path, _gparams, idx, _last, _best, jumps = entry
            except (TypeError, ValueError):
                continue
            machine = ""
            for part in str(graph_path).split("/"):
                if part.startswith("machine-"):
                    machine = part[len("machine-"):]
            meta = benches.get(name, {})
            params = _param_combos(meta.get("param_names", []), meta.get("params", []))
            combo = params[idx] if (idx is not None and idx < len(params)) else ()
            for jump in jumps or []:
                rev_a, rev_b, before, after = jump
                out.append(StepRegression(
                    benchmark=name, params=combo, machine=machine,
                    good=rev_to_hash.get(str(rev_a), "") if rev_a is not None else "",
                    bad=rev_to_hash.get(str(rev_b), ""), before=float(before),
                    after=float(after)))
        return out


def _prune(folder: Path, *, keep: int) -> None:
    """Remove all but the ``keep`` most recently written run folders."""
    if not folder.is_dir():
        return
    runs = sorted((d for d in folder.iterdir() if d.is_dir()),
                  key=lambda d: d.stat().st_mtime, reverse=True)
    for old in runs[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _follow(path: Path, done: threading.Event, emit: Callable[[str], None]) -> None:
    """Pass each new line of ``path`` to ``emit`` (marked) until ``done``, then the rest."""
    try:
        fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
    except OSError:
        return
    with fh:
        partial = ""
        while True:
            finished = done.is_set()
            chunk = fh.read()
            if chunk:
                partial += chunk
                *lines, partial = partial.split("\n")
                for line in lines:
                    if line.strip():
                        emit(PROGRESS_MARK + line)
            elif finished:
                break
            else:
                done.wait(0.5)
        if partial.strip():
            emit(PROGRESS_MARK + partial)


def _machine_known(name: str) -> bool:
    try:
        data = json.loads((Path.home() / ".asv-machine.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and name in data


#: In the environment of every process of an ``asv run``: the state directory.
STATE_MARK = "SCHEDULER_STATE_DIR"


def kill_orphan(pgid: int, config_path: Path | None = None) -> bool:
    """Terminate an ``asv run`` left behind by a daemon killed with SIGKILL (its own
    session survives the parent): group ``pgid``, and any ``asv run --config
    <config_path>`` (the daemon may have died before it stored the group)."""
    groups = {pgid} if pgid > 0 else set()
    # with the config known, only a run of this state directory counts: a stored group id
    # may by now be another scheduler's asv run (another state directory, the self-test's)
    markers = [b"asv run"]
    if config_path is not None:
        mark = f"{STATE_MARK}={config_path.parent} ".encode()  # /proc: NULs read as spaces
        config = f"--config {config_path}".encode()
        groups |= groups_of(config) | groups_of(mark)
        markers = [config, mark]
    killed = False
    for group in groups:
        killed = kill_orphan_group(group, tuple(markers), grace_s=10.0) or killed
    return killed


def _summarize_failure(log: str, rc: int | None) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        low = ln.lower()
        if "failed to build" in low or "error" in low or "traceback" in low:
            return f"asv exit {rc}: {ln.lstrip('· ')[:300]}"
    return f"asv exit {rc}: no results were produced"


def _param_combos(names: list[str], params: list[list[str]]) -> list[tuple[tuple[str, str], ...]]:
    if not params:
        return [()]
    names = list(names) + [f"param{i + 1}" for i in range(len(names), len(params))]
    return [tuple(zip(names, combo, strict=False)) for combo in itertools.product(*params)]


def parse_result_file(path: Path, meta: dict[str, Any]) -> ResultFile:
    """Parse an asv v2 result file (``results/<machine>/<hash8>-<env>.json``).

    Raises ResultsError with the path and what is wrong, never KeyError/ValueError: a
    corrupt or truncated file must be a clear message, not a crashed job.
    """
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"cannot read asv result file {path}: {exc}") from None
    except ValueError as exc:
        raise ResultsError(f"corrupt asv result file {path}: invalid JSON: {exc}") from None
    try:
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        if data.get("version", 2) != 2:
            raise ValueError(f"unsupported result format version {data.get('version')!r}")
        commit = str(data["commit_hash"])
        columns: list[str] = list(data["result_columns"])
        machine = str(data.get("params", {}).get("machine", path.parent.name))
        measurements: list[Measurement] = []
        for name, row in data["results"].items():
            rec = dict(zip(columns, row, strict=False))
            bmeta = meta.get(name, {}) if isinstance(meta, dict) else {}
            combos = _param_combos(bmeta.get("param_names", []), rec.get("params") or [])
            values = rec.get("result")
            if values is None:
                values = [None] * len(combos)
            if not isinstance(values, list):
                raise TypeError(f"{name}: 'result' is not a list")
            samples = rec.get("samples") or [None] * len(values)
            ci_a = rec.get("stats_ci_99_a") or [None] * len(values)
            ci_b = rec.get("stats_ci_99_b") or [None] * len(values)
            for i, value in enumerate(values):
                if value is not None and not isinstance(value, int | float):
                    raise TypeError(f"{name}: result {value!r} is not a number")
                s = samples[i] if i < len(samples) else None
                measurements.append(Measurement(
                    benchmark=name,
                    params=combos[i] if i < len(combos) else (),
                    value=None if value is None else float(value),
                    samples=tuple(float(x) for x in s if x is not None and math.isfinite(x))
                    if isinstance(s, list) else (),
                    ci=(_f(ci_a[i] if i < len(ci_a) else None),
                        _f(ci_b[i] if i < len(ci_b) else None)),
                    unit=str(bmeta.get("unit", "")),
                    version=str(rec.get("version", "")),
                ))
        return ResultFile(path=path, commit=commit, machine=machine,
                          date=int(data.get("date") or 0), measurements=tuple(measurements))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ResultsError(f"corrupt asv result file {path}: {type(exc).__name__}: {exc}") \
            from None


def _f(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) else None
