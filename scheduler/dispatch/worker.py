"""The runner: ``python -m scheduler worker --machine NAME [--queue Q]``, a Celery worker
that measures one job at a time on this host and sends the result back.

Each runner is its own asv machine: it builds the asv environments locally (its own
``env`` directory), runs ``asv run --machine NAME-<profile>`` with this checkout's
benchmarks as the pinned instrument, and returns the result file, the log, its
``machine.json`` and ``benchmarks.json``; the coordinator stores them in its results
directory. Nothing stays here: the result files of a job are removed once sent, and a
partial one left by a killed run is removed at start-up, so a half-measured commit can
never pass for a measurement.

A job is measured at most once (see ``celery.py``): before measuring, the runner takes
the job's lease in Redis (set-if-absent, with a time to live, renewed while it runs);
a delivery of a job that is done, given up by the coordinator, or leased by a live
runner is dropped without a measurement. A lease left by a runner process of this host
that is gone is taken over.

A runner refuses a job measured with another instrument than the coordinator's (a
digest of ``asv.conf.json`` and ``benchmarks/``): figures of two instruments are not
comparable, so the job goes back to the coordinator as a runner error, not as a result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from celery.exceptions import Ignore
from celery.signals import worker_ready

from ..config import Config, ConfigError, SideBySideConfig
from ..lock import StateLock
from ..measure.asvrun import NOT_IDLE, PROGRESS_MARK, AsvError, AsvProject, kill_orphan
from ..measure.gitrepo import GitError, GitRepo
from ..measure.side_by_side import SideBySideError, SideBySideRunner
from .celery import Broker, make_app
from .protocol import (
    DONE,
    ERROR,
    FAILED,
    MEASURE_TASK,
    SIDE_BY_SIDE_TASK,
    Job,
    Outcome,
    instrument_id,
    pack_dir,
    worker_queues,
)

log = logging.getLogger("scheduler.worker")

GUARD = Path(__file__).with_name("guard.py")
PGID_FILE = "asv.pgid"


def say(name: str, msg: str) -> None:
    stamp = time.strftime("%H:%M:%S", time.gmtime())
    print(f"[runner {name} {stamp}] {msg}", file=sys.stderr, flush=True)


def default_name(machine: str) -> str:
    return f"{machine}@{socket.gethostname().split('.')[0]}"


class Runner:
    """What one runner process measures with (created before the pool forks)."""

    def __init__(self, cfg: Config, *, machine: str, name: str, queues: tuple[str, ...],
                 runner_dir: Path) -> None:
        self.cfg = cfg
        self.machine = machine
        self.name = name
        self.queues = worker_queues(machine, queues)
        self.dir = runner_dir
        self.host = socket.gethostname()
        self.broker = Broker(make_app(cfg.dispatch))
        local = cfg.repo_path() if cfg.repo_is_local() else None
        self.repo = GitRepo(cfg.repository.url, local_path=local,
                            mirror_dir=runner_dir / "repo.git")
        env_dir = (cfg.asv.env_dir / _safe(name)) if cfg.asv.env_dir else runner_dir / "env"
        exe = list(cfg.asv.executable) or [sys.executable, "-m", "asv"]
        self.base = dataclasses.replace(
            cfg, state_dir=runner_dir,
            asv=dataclasses.replace(cfg.asv, machine=machine, env_dir=env_dir,
                                    executable=(sys.executable, str(GUARD), "--", *exe),
                                    results_dir=None),
            site=dataclasses.replace(cfg.site, html_dir=runner_dir / "html"))
        self._projects: dict[tuple[tuple[str, ...], float], AsvProject] = {}
        probe = AsvProject(self.base, self.repo.path)
        self.checkout = probe.benchmark_dir().parent  # where `benchmarks` is importable
        self.instrument = instrument_id(cfg.asv.config, probe.benchmark_dir())

    # ---- start-up ---------------------------------------------------------------------

    def clean(self) -> None:
        """Stop an ``asv run`` a killed runner left behind, drop partial results."""
        pgid_file = self.dir / PGID_FILE
        pgid = 0
        with contextlib.suppress(OSError, ValueError):
            pgid = int(pgid_file.read_text())
        if kill_orphan(pgid, self.dir / "asv.conf.json"):  # by group, or by its config
            say(self.name, "stopped an asv run left behind by a killed runner")
        pgid_file.unlink(missing_ok=True)
        results = self.dir / "results"
        for f in results.glob("*/*.json") if results.is_dir() else []:
            if f.name != "machine.json":
                f.unlink()
                say(self.name, f"removed a partial result left by a killed run: {f.name}")

    # ---- jobs -------------------------------------------------------------------------

    def project(self, job: Job) -> AsvProject:
        key = (job.asv_args, job.run_timeout_s)
        if key not in self._projects:
            cfg = dataclasses.replace(self.base, asv=dataclasses.replace(
                self.base.asv, extra_args=job.asv_args, run_timeout_s=job.run_timeout_s))
            self._projects[key] = AsvProject(cfg, self.repo.path)
        return self._projects[key]

    def measure(self, job: Job) -> Outcome:
        """Run one job; every way it can end is an ``Outcome`` (never an exception)."""
        if job.instrument != self.instrument:
            return Outcome(ERROR, self.machine, self.name, error=(
                f"runner {self.name} has another instrument ({self.instrument}) than the "
                f"coordinator ({job.instrument}): update its checkout of benchmarks/ and "
                "asv.conf.json"))
        try:
            if not self.repo.local:
                self.repo.fetch()
            asv = self.project(job)
            self._check_machine_file()
            say(self.name, f"measuring {job.commit[:8]} (profile {job.profile}, {job.kind}, "
                           f"job {job.task_id})")
            load_before = os.getloadavg()[0]
            run = asv.run(job.commit, job.profile, progress=self._progress,
                          started=self._started)
        except (AsvError, GitError) as exc:
            return Outcome(ERROR, self.machine, self.name, error=f"runner {self.name}: {exc}")
        mdir = asv.results_dir / asv.machine_for(job.profile)
        files = sorted(mdir.glob(f"{job.commit[:8]}-*.json"))
        out = Outcome(DONE if run.status == "done" else FAILED, self.machine, self.name,
                      error=run.error,
                      log=run.log, seconds=run.seconds, returncode=run.returncode,
                      extra={"load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                             "cpus": os.cpu_count()})
        if run.status == "abandoned":  # the runner is stopping: not the commit's fault
            out.status, out.error = ERROR, f"runner {self.name} stopped during the run"
        if files:
            out.result_name, out.result = files[0].name, files[0].read_text("utf-8")
        if (mdir / "machine.json").is_file():
            out.machine_json = (mdir / "machine.json").read_text("utf-8")
        bench = asv.results_dir / "benchmarks.json"
        if bench.is_file():
            out.benchmarks_json = bench.read_text("utf-8")
        documents = asv.documents_dir(job.commit, job.profile)
        if documents.is_dir():
            out.documents = pack_dir(documents)
        for f in files:  # sent to the coordinator, which keeps them
            f.unlink()
        shutil.rmtree(documents, ignore_errors=True)
        say(self.name, f"{out.status} {job.commit[:8]} in {run.seconds:.0f}s"
                       + (f": {out.error}" if out.error else ""))
        return out

    def _check_machine_file(self) -> None:
        """asv rewrites ``$HOME/.asv-machine.json`` in place at every run: a runner killed
        at that instant leaves it empty, and every later run would fail on it. It is this
        runner's own file (``_own_home``): an unreadable one is removed (``asv machine``,
        before each run, describes the machine again)."""
        path = Path.home() / ".asv-machine.json"
        try:
            ok = not path.exists() or isinstance(json.loads(path.read_text("utf-8")), dict)
        except (OSError, ValueError):
            ok = False
        if not ok:
            say(self.name, f"{path} is unreadable (a run killed while asv wrote it); "
                           "describing the machine again")
            path.unlink(missing_ok=True)

    def side_by_side(self, wire: dict[str, Any]) -> dict[str, Any]:
        """A side-by-side run on this host (``scheduler.measure.side_by_side``), as a plain dict."""
        a, b = str(wire["a"]), str(wire["b"])
        if wire.get("instrument") != self.instrument:
            return {"status": ERROR, "error": f"runner {self.name} has another instrument"}
        cfg = SideBySideConfig(**wire["side_by_side"])
        say(self.name, f"side by side: {a[:8]} (parent) vs {b[:8]}")
        try:
            if not self.repo.local:
                self.repo.fetch()
            res = SideBySideRunner(cfg, repo=self.repo.path, pass_env=self.cfg.asv.pass_env).run(
                a, b, project_dir=self.checkout)
        except (SideBySideError, GitError) as exc:
            return {"status": ERROR, "error": str(exc), "machine": self.machine}
        return {"status": DONE, "machine": self.machine, "worker": self.name,
                "a": res.a, "b": res.b, "seconds": res.seconds,
                "points": [dataclasses.asdict(p) for p in res.points]}

    def _progress(self, line: str) -> None:
        if (line.startswith((PROGRESS_MARK, NOT_IDLE)) or "%]" in line or "Building" in line
                or "Installing" in line or "rror" in line):
            print(f"    {line[:160]}", file=sys.stderr, flush=True)

    def _started(self, pgid: int | None) -> None:
        path = self.dir / PGID_FILE
        if pgid:
            path.write_text(str(pgid))
        else:
            path.unlink(missing_ok=True)

    # ---- leases -----------------------------------------------------------------------

    def holder(self) -> dict[str, Any]:
        return {"worker": self.name, "machine": self.machine, "host": self.host,
                "pid": os.getpid(), "since": time.time()}

    def lease(self, tid: str, what: str) -> _Lease | None:
        """The job's lease, or None when this delivery must be dropped."""
        if self.broker.is_done(tid):
            say(self.name, f"{what}: already measured; this delivery is dropped")
            return None
        if self.broker.is_cancelled(tid):
            say(self.name, f"{what}: given up by the coordinator; dropped")
            return None
        holder = self.holder()
        ttl = self.cfg.dispatch.lease_s
        if not self.broker.take_lease(tid, holder, ttl):
            other = self.broker.leases([tid]).get(tid, {})
            if not _gone(other, self.host):
                say(self.name, f"{what}: measured by {other.get('worker', '?')} now; this "
                               "delivery is dropped")
                return None
            say(self.name, f"{what}: taking over from {other.get('worker')} "
                           f"(pid {other.get('pid')} is gone)")
            self.broker.renew_lease(tid, holder, ttl)
        return _Lease(self.broker, tid, holder, ttl)


class _Lease:
    """Renews a job's lease every third of its time to live until released."""

    def __init__(self, broker: Broker, tid: str, holder: dict[str, Any], ttl: float) -> None:
        self.broker, self.tid, self.holder, self.ttl = broker, tid, holder, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True,
                                        name=f"lease {tid}")
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.broker.renew_lease(self.tid, self.holder, self.ttl)
            except Exception as exc:  # broker restarting: keep measuring, retry later
                log.warning("cannot renew the lease of %s: %s", self.tid, exc)

    def release(self, *, done: bool) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for _ in range(30):  # the mark must land even while the broker restarts
            try:
                if done:
                    self.broker.mark_done(self.tid)
                self.broker.drop_lease(self.tid)
                return
            except Exception as exc:
                log.warning("broker unreachable (%s); retrying", exc)
                time.sleep(1)


def _gone(holder: dict[str, Any], host: str) -> bool:
    """A lease holder known to be dead: a process of this host that no longer exists."""
    if holder.get("host") != host or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return holder["pid"] == os.getpid()  # a previous job of this very process


def _own_home(runner_dir: Path) -> None:
    """asv keeps machine descriptions in ``$HOME/.asv-machine.json``: each runner gets a
    HOME of its own, so its machine.json describes it alone and no other asv on the host
    (another runner, a developer's ``asv machine``) rewrites it under a running job. The
    package caches stay the user's."""
    real = Path.home()
    if "XDG_CACHE_HOME" not in os.environ:
        os.environ.setdefault("UV_CACHE_DIR", str(real / ".cache" / "uv"))
        os.environ.setdefault("PIP_CACHE_DIR", str(real / ".cache" / "pip"))
    home = runner_dir / "home"
    home.mkdir(exist_ok=True)
    os.environ["HOME"] = str(home)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


_runner: Runner | None = None


def _the_runner() -> Runner:
    if _runner is None:
        raise RuntimeError("no runner in this process (start it with `python -m scheduler "
                           "worker`)")
    return _runner


def measure_task(task: Any, wire: dict[str, Any]) -> dict[str, Any]:
    """Celery task ``scheduler.measure``: one asv measurement, its outcome as a dict."""
    runner = _the_runner()
    job = Job.from_wire(wire)
    lease = runner.lease(task.request.id, f"job {job.task_id}")
    if lease is None:
        raise Ignore()  # acknowledged, nothing stored: the first delivery's result stands
    done = False
    try:
        out = runner.measure(job)
        done = out.status != ERROR
        return out.to_wire()
    finally:
        lease.release(done=done)


def side_by_side_task(task: Any, wire: dict[str, Any]) -> dict[str, Any]:
    """Celery task ``scheduler.paired``: a side-by-side run of a commit and its parent."""
    runner = _the_runner()
    lease = runner.lease(task.request.id, f"side by side {str(wire.get('b'))[:8]}")
    if lease is None:
        raise Ignore()
    done = False
    try:
        out = runner.side_by_side(wire)
        done = out["status"] == DONE
        return out
    finally:
        lease.release(done=done)


def run_worker(cfg: Config, *, machine: str, queues: tuple[str, ...] = (),
               name: str = "", runner_dir: Path | None = None, loglevel: str = "INFO") -> int:
    """Run a runner until SIGTERM (Celery's warm shutdown: the job being measured is
    finished first; SIGQUIT, the cold one, stops at once and the job is delivered
    again)."""
    global _runner
    if not cfg.dispatch.broker:
        raise ConfigError("no broker: set [dispatch] broker = \"redis://HOST:6379/0\" (or env "
                       "SCHEDULER_BROKER) in the configuration the coordinator uses")
    name = name or default_name(machine)
    runner_dir = runner_dir or cfg.state_dir / "runners" / _safe(name)
    runner_dir.mkdir(parents=True, exist_ok=True)
    lock = StateLock(runner_dir)
    lock.acquire()  # one runner per directory (LockBusyError: clear message, exit 2)
    try:
        _own_home(runner_dir)
        _runner = Runner(cfg, machine=machine, name=name, queues=queues,
                         runner_dir=runner_dir)
        _runner.clean()
        app = _runner.broker.app
        app.task(name=MEASURE_TASK, bind=True, acks_late=True)(measure_task)
        app.task(name=SIDE_BY_SIDE_TASK, bind=True, acks_late=True)(side_by_side_task)
        say(name, f"machine {machine}, queues {', '.join(_runner.queues)}, instrument "
                  f"{_runner.instrument}, directory {runner_dir}")
        worker_ready.connect(lambda **_: say(name, "ready: waiting for jobs"), weak=False)
        worker = app.Worker(hostname=name, queues=_runner.queues, concurrency=1,
                            pool="prefork", prefetch_multiplier=1, loglevel=loglevel,
                            without_gossip=True, without_mingle=True, optimization="fair")
        worker.start()
        return int(worker.exitcode or 0)
    finally:
        lock.release()

