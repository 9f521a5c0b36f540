"""The coordinator's side of the broker: runs become jobs for runners, outcomes come back
to the machine that measured them.

What runs where:

* The daemon (this process) polls, queues, judges, bisects, confirms, publishes and
  alerts, as without a broker. Its own queue (``<state>/state.sqlite3``) holds the
  requests: new commits, nightly heads, backfills. Each request becomes one job per
  target of its profile (``[dispatch] targets``/``profile_targets``): ``any`` runner,
  the runners of ``machine:NAME``, or those of ``queue:NAME``.
* Each machine that measures has its own view here (``<state>/machines/NAME/``): a
  ``Pipeline`` whose asv machine is NAME, with its own runs, alerts and confirmation
  state, reading the one results directory ``<state>/results``. Judging, limits, noise
  thresholds and blessed baselines are per machine because they are keyed by machine
  already; each machine's history is its own series in the one published site; an alert
  names the machine. A machine's bisection and confirmation runs are queued in its view
  and sent to that machine only (a re-measurement on another machine proves nothing),
  and so is its side-by-side check (``RemoteSideBySideRunner``).

The coordinator decides the order: it sends a job to a queue only when no job waits
there already, so a runner that becomes free finds at most one job per queue it
consumes, and whatever is queued here keeps its priority until then (newest first,
bisection and confirmation ahead). A run whose commit and profile already have a job on
the same queue waits for it: one queue never measures a commit twice at once.

Faults: every job is in the ledger before it is sent, and its outcome is stored there
before it is judged, so a coordinator killed at any point finds its jobs in flight at
start-up and collects them. A runner killed mid-run leaves its job unacknowledged; Celery
delivers it again (``celery.py``), the runner that takes it over finds the lease expired,
and the partial result never left the killed runner. A job the broker lost (not waiting,
not delivered, not leased, not finished for ``lost_after_s``) is sent again as the next
attempt, and the old identity is cancelled so a late copy of it is dropped. A runner that
cannot measure at all (its asv broken, another instrument) reports a runner error: the
job is sent again after a pause and the error is alerted once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import queue
import re
import shutil
import tarfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, SideBySideConfig, _redact
from ..measure.asvrun import KEEP_DOCUMENTS, AsvProject, RunOutcome, _prune
from ..measure.side_by_side import PointVerdict, SideBySideError, SideBySideResult, SideBySideRunner
from ..publish import messages
from ..publish.notify import make_notifier
from ..store.outbox import Outbox
from .celery import Broker, make_app
from .ledger import OPEN, Dispatched, Ledger
from .protocol import (
    DONE,
    ERROR,
    MEASURE_TASK,
    SIDE_BY_SIDE_TASK,
    Job,
    Outcome,
    instrument_id,
    machine_of_queues,
    queue_of,
    result_name_ok,
    unpack_dir,
)

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..store.state import Run

TICK_S = 1.0  # how often send_and_collect collects outcomes and sends jobs
RUNNER_ERROR_PAUSE_S = 300.0  # after a runner error, wait before sending again
NO_RUNNER_WARN_S = 30.0  # a job waiting this long on a queue nobody consumes is reported
SEND_RETRY = {"max_retries": 2, "interval_start": 0.5, "interval_step": 1, "interval_max": 2}


class Coordinator:
    """The dispatcher of a service with ``[dispatch] broker`` set."""

    remote = True

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.results_dir = cfg.asv.results_dir or cfg.state_dir / "results"
        self._broker: Broker | None = None
        self._ledger: Ledger | None = None
        self._instrument = ""
        self.main: Pipeline | None = None
        self.lanes: dict[str, Lane] = {}
        self.paused_until = 0.0
        self._stopping = threading.Event()
        self._broker_down = ""  # the last broker error said (said once until it is back)
        self._said: set[str] = set()
        self._last_runner_check = 0.0
        self._lock = threading.RLock()
        self._page_lock = threading.Lock()
        self._last_machine = ""
        self._main_publish: Callable[[], None] = lambda: None

    # ---- parts, made when first needed (``status`` needs no runner) --------------------

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = Broker(make_app(self.cfg.dispatch))
        return self._broker

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.cfg.state_dir / "state.sqlite3")
        return self._ledger

    @property
    def instrument(self) -> str:
        if not self._instrument:
            probe = AsvProject(self.cfg, self.cfg.state_dir)
            self._instrument = instrument_id(self.cfg.asv.config, probe.benchmark_dir())
        return self._instrument

    def _say(self, msg: str) -> None:
        if self.main is not None:
            self.main._say(msg)

    # ---- the Dispatcher interface -------------------------------------------------------

    def measure(self, svc: Pipeline, run: Run, *,
                progress: Callable[[str], None] | None = None,
                started: Callable[[int | None], None] | None = None) -> RunOutcome | None:
        """The coordinator's own runs (requests): one job per target of the profile."""
        self._add(svc, "", run, self.cfg.dispatch.targets_for(run.profile))
        return None

    def _add(self, svc: Pipeline, origin: str, run: Run, targets: tuple[str, ...]) -> None:
        jobs = self.ledger.add(origin, run, targets)
        where = ", ".join(j.target for j in jobs)
        svc._say(f"{run.short} ({run.profile}, {run.kind}) queued for the runners: {where}")

    def send_and_collect(self, svc: Pipeline, *, max_runs: int | None = None) -> int:
        """Send queued runs (the coordinator's and every machine's) to the runners and
        collect outcomes until nothing is queued or in flight, or the service stops."""
        with self._lock:
            self._bind(svc)
            sent = 0
            last_flush = time.monotonic()
            while not svc.stop.is_set():
                self._collect()
                paused = time.time() < self.paused_until
                if not paused:
                    sent += self._claim(None if max_runs is None else max_runs - sent)
                    self._send()
                if time.monotonic() - last_flush > 15:
                    self._flush_lanes()
                    last_flush = time.monotonic()
                if self._idle(max_runs is not None and sent >= max_runs):
                    break
                if paused and not self.ledger.open_jobs():
                    self._say("paused after a runner error; the queue is sent again at "
                              + time.strftime("%H:%M:%S", time.gmtime(self.paused_until)))
                    break
                svc.stop.wait(TICK_S)
            for lane in self.lanes.values():
                lane.wait_idle(svc.stop)
            self._flush_lanes()
            self._add_stats(svc)
            return sent

    def abandon(self) -> None:
        """Stop: outcomes in progress are left for the next start; jobs stay in flight."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for lane in list(self.lanes.values()):
            lane.svc.abandon()

    def close(self) -> None:
        self._stopping.set()
        for lane in list(self.lanes.values()):
            lane.close()
        self.lanes.clear()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # ---- start-up ---------------------------------------------------------------------

    def _bind(self, svc: Pipeline) -> None:
        """First send_and_collect: know every machine, keep the jobs in flight in flight."""
        if self.main is svc:
            return
        self.main = svc
        self._main_publish = svc.publish
        svc.publish = self.publish  # type: ignore[method-assign]
        svc.write_alerts_page = self.write_alerts_page  # type: ignore[method-assign]
        machines = {p.name for p in (self.cfg.state_dir / "machines").glob("*")
                    if (p / "state.sqlite3").is_file()}
        machines |= {j.origin for j in self.ledger.open_jobs() if j.origin}
        machines |= {j.machine for j in self.ledger.with_status("finished") if j.machine}
        for m in sorted(machines):
            self.lane(m).svc.recover()
        for j in self.ledger.open_jobs():
            owner = svc if not j.origin else self.lane(j.origin).svc
            run = owner.state.run_for(j.commit_hash, j.profile)
            if run is not None and run.id == j.run_id and run.status == "queued":
                owner.state.claim(run.id)  # recover() re-queued it: its job is in flight
            if j.status != "pending":
                owner._say(f"{j.short} ({j.profile}, {j.kind}): job {j.task_id} is "
                           f"{j.status}{' on ' + j.machine if j.machine else ''}; collecting "
                           "it")

    def publish(self) -> None:
        """The coordinator's publish: the site as the machine last measured publishes it
        (every machine's results, the alerts of all, that machine's instrument pages)."""
        lane = self.lanes.get(self._last_machine)
        if lane is not None:
            lane.svc.publish()
        else:
            self._main_publish()

    def write_alerts_page(self) -> None:
        """One ``alerts.html`` for every machine: the coordinator's queue of requests, and
        each machine's alerts and runs (marked with the machine)."""
        from ..publish import alerts_page

        assert self.main is not None
        with self._page_lock:
            try:
                page = alerts_page.collect(self.main.state, self.main.plots_dir)
                for name, lane in sorted(self.lanes.items()):
                    page = _merge_pages(page, name, alerts_page.collect(
                        lane.svc.state, self.main.plots_dir))
                alerts_page.write(self.cfg.site.html_dir, page, self.main.plots_dir)
            except Exception as exc:  # a page is a nicety: never lose a run over it
                self._say(f"alerts page not written: {exc}")

    def lane(self, machine: str) -> Lane:
        """The view of one machine (made the first time the machine is seen)."""
        if machine not in self.lanes:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", machine):
                raise ValueError(f"not a machine name: {machine!r}")
            assert self.main is not None
            self.lanes[machine] = Lane(self, machine, self.main)
        return self.lanes[machine]

    # ---- sending ------------------------------------------------------------------------

    def _candidates(self) -> list[tuple[Pipeline, str, Run]]:
        assert self.main is not None
        out = [(self.main, "", r) for r in self.main.state.runs(status="queued")]
        for name, lane in self.lanes.items():
            with lane.lock:  # not while it records a run measured for the coordinator
                out += [(lane.svc, name, r) for r in lane.svc.state.runs(status="queued")]
        out.sort(key=lambda x: (-x[2].priority, -x[2].commit_date, x[2].id))
        return out

    def _claim(self, budget: int | None) -> int:
        """Claim queued runs whose target queue has room (nothing waiting there)."""
        if budget is not None and budget <= 0:
            return 0
        claimed = 0
        jobs = self.ledger.open_jobs()
        taken = {j.queue for j in jobs if j.status in ("pending", "sent")}
        busy: dict[tuple[str, str], set[str]] = {}
        for j in jobs:
            busy.setdefault((j.commit_hash, j.profile), set()).add(j.queue)
        for svc, origin, run in self._candidates():
            targets = (self.cfg.dispatch.targets_for(run.profile) if not origin
                       else (f"machine:{origin}",))
            queues = {queue_of(t) for t in targets}
            flying = busy.get((run.commit_hash, run.profile), set())
            if any(_may_meet(q, f) for q in queues for f in flying):
                continue  # a job that may reach the same machine is in flight: wait
            if not queues - taken:
                continue
            lock = self.lanes[origin].lock if origin else contextlib.nullcontext()
            with lock:
                if not svc.state.claim(run.id):
                    continue
            svc.process(run)  # -> measure(): one job per target, sent by _send()
            taken |= queues
            busy.setdefault((run.commit_hash, run.profile), set()).update(queues)
            claimed += 1
            if budget is not None and claimed >= budget:
                break
        return claimed

    def _send(self) -> None:
        """Send pending jobs, at most one waiting per queue."""
        jobs = self.ledger.open_jobs()
        waiting = {j.queue for j in jobs if j.status == "sent"}
        for j in jobs:
            if j.status != "pending" or j.queue in waiting:
                continue
            job = Job(j.task_id, j.commit_hash, j.profile, j.kind, j.target, j.attempt,
                      self.instrument, tuple(self.cfg.asv.extra_args),
                      self.cfg.asv.run_timeout_s)
            try:
                self.broker.app.send_task(MEASURE_TASK, args=[job.to_wire()],
                                          task_id=j.task_id, queue=j.queue, retry=True,
                                          retry_policy=SEND_RETRY)
            except Exception as exc:  # broker down: the job stays pending
                self._broker_error(exc)
                return
            self.ledger.mark_sent(j.task_id)
            waiting.add(j.queue)

    # ---- collecting ---------------------------------------------------------------------

    def _collect(self) -> None:
        """Outcomes of finished jobs to their machines; starts, losses and waits said."""
        flying = self.ledger.with_status("sent", "started")
        try:
            leases = self.broker.leases([j.task_id for j in flying])
            states = {j.task_id: self.broker.app.AsyncResult(j.task_id) for j in flying}
            ready = {tid: r for tid, r in states.items() if r.state in ("SUCCESS", "FAILURE")}
            missing = [j for j in flying if j.task_id not in ready and j.task_id not in leases]
            present = self.broker.in_broker({j.queue for j in missing}) if missing else set()
            done_marks = {j.task_id for j in missing if self.broker.is_done(j.task_id)}
        except Exception as exc:
            self._broker_error(exc)
            return
        if self._broker_down:
            self._say("broker reachable again")
            self._broker_down = ""
        now = time.time()
        for j in flying:
            if j.task_id in ready:
                self._accept(j, ready[j.task_id])
            elif j.task_id in leases:
                holder = leases[j.task_id]
                if self.ledger.mark_started(j.task_id, str(holder.get("machine", "")),
                                            str(holder.get("worker", ""))):
                    again = f" (again; was {j.worker})" if j.worker else ""
                    self._say(f"{j.short} ({j.profile}, {j.kind}) measuring on machine "
                              f"{holder.get('machine')} ({holder.get('worker')}){again}")
            elif j.task_id in present or j.task_id in done_marks:
                if j.missing_since is not None:
                    self.ledger.mark_missing(j.task_id, None)
            elif j.missing_since is None:
                self.ledger.mark_missing(j.task_id, now)
            elif now - j.missing_since > self.cfg.dispatch.lost_after_s:
                self._lost(j)
        self._warn_unconsumed(flying)
        for j in self.ledger.with_status("finished"):
            self.lane(j.machine).submit(j)

    def _accept(self, j: Dispatched, res: Any) -> None:
        """A job's outcome: stored once, then handed to the machine that measured it."""
        try:
            if res.state != "SUCCESS":
                raise ValueError(f"the runner's task raised: {res.result!r}")
            out = Outcome.from_wire(res.result)
            if out.status != ERROR and not re.fullmatch(r"[A-Za-z0-9_.-]+", out.machine):
                raise ValueError(f"bad machine name {out.machine!r}")
        except (ValueError, TypeError) as exc:
            out = Outcome(ERROR, machine=j.machine, worker=j.worker, error=str(exc)[:2000])
        if out.status == ERROR:
            self._runner_error(j, out)
        else:
            self._store(j, out)
            wire = out.to_wire()
            for big in ("result", "machine_json", "benchmarks_json", "documents"):
                wire.pop(big, None)  # they are in the results directory now
            self._last_machine = out.machine
            if self.ledger.store_outcome(j.task_id, wire):
                load = out.extra.get("load_1m") or []
                busy = (f"; load average {load[0]:g} → {load[1]:g} on {out.extra.get('cpus')}"
                        " cores" if len(load) == 2 else "")
                self._say(f"{j.short} ({j.profile}, {j.kind}) {out.status} on machine "
                          f"{out.machine} in {out.seconds:.0f}s{busy}")
        try:
            res.forget()
        except Exception as exc:
            self._broker_error(exc)

    def _store(self, j: Dispatched, out: Outcome) -> None:
        """The runner's result file into ``results/<machine>-<profile>/``; an older result
        of the same commit there goes (asv keeps one per commit and machine)."""
        mdir = self.results_dir / f"{out.machine}-{j.profile}"
        mdir.mkdir(parents=True, exist_ok=True)
        for old in mdir.glob(f"{j.commit_hash[:8]}-*.json"):
            old.unlink()
        if out.result and result_name_ok(out.result_name, j.commit_hash):
            _write(mdir / out.result_name, out.result)
        if out.machine_json:
            _write(mdir / "machine.json", out.machine_json)
        if out.benchmarks_json:
            _write(self.results_dir / "benchmarks.json", out.benchmarks_json)
        # the instrument's documents, where the machine's view reads them (its nightly
        # summary's soak verdict, its capacity page)
        root = self.cfg.state_dir / "machines" / out.machine / "instrument"
        docs = root / f"{j.commit_hash[:8]}-{j.profile}"
        shutil.rmtree(docs, ignore_errors=True)
        if out.documents:
            try:
                unpack_dir(out.documents, docs)
            except (OSError, ValueError, tarfile.TarError) as exc:
                self._say(f"{j.short}: the instrument's documents from {out.machine} are "
                          f"unreadable ({exc}); its figures are in the result file")
            _prune(root, keep=KEEP_DOCUMENTS)

    def _runner_error(self, j: Dispatched, out: Outcome) -> None:
        """The runner could not measure (not the commit's fault): send the job again
        after a pause, alert the error once."""
        assert self.main is not None
        text = f"runner {out.worker or '?'} (machine {out.machine or '?'}): {out.error}"
        self._say(f"{j.short} ({j.profile}): {text}; sent again after "
                  f"{RUNNER_ERROR_PAUSE_S:.0f}s")
        digest = hashlib.sha1(out.error.encode()).hexdigest()[:12]
        self.main.outbox.put(f"runner-error|{digest}", "failure", messages.setup_error(text))
        self.main.flush()
        self.paused_until = time.time() + RUNNER_ERROR_PAUSE_S
        try:
            self.broker.cancel(j.task_id)  # a late copy of it is dropped, not measured
        except Exception as exc:
            self._broker_error(exc)
        self.ledger.supersede(j, f"runner error: {out.error}")

    def _lost(self, j: Dispatched) -> None:
        self._say(f"{j.short} ({j.profile}, {j.kind}): job {j.task_id} is neither waiting "
                  f"in the broker, nor measured, nor finished for "
                  f"{self.cfg.dispatch.lost_after_s:.0f}s; sending it again")
        try:
            self.broker.cancel(j.task_id)  # a late copy of it is dropped by the runner
        except Exception as exc:
            self._broker_error(exc)
            return
        self.ledger.supersede(j, "lost by the broker")

    def _warn_unconsumed(self, flying: list[Dispatched]) -> None:
        """Say once when a job waits on a queue no live runner consumes."""
        now = time.time()
        old = [j for j in flying if j.status == "sent" and j.sent_at
               and now - j.sent_at > NO_RUNNER_WARN_S and j.task_id not in self._said]
        if not old or now - self._last_runner_check < NO_RUNNER_WARN_S:
            return
        self._last_runner_check = now
        try:
            workers, _ = self.broker.inspect(timeout=1.0)
        except Exception:
            return
        consumed = {q for qs in workers.values() for q in qs}
        for j in old:
            if j.queue not in consumed:
                self._said.add(j.task_id)
                self._say(f"{j.short} ({j.profile}) waits on queue {j.queue}: no live "
                          f"runner consumes it (python -m scheduler worker {_hint(j.target)})")

    def _broker_error(self, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text != self._broker_down:
            self._say(f"broker {_redact(self.cfg.dispatch.broker)} unreachable ({text}); "
                      "jobs stay where they are, retrying")
            self._broker_down = text

    # ---- the end of a job -------------------------------------------------------------

    def finished(self, j: Dispatched) -> None:
        """(lane thread) The machine has judged the job: it is processed; a request of the
        coordinator whose last job it was is finished with it."""
        request = None
        if not j.origin:
            jobs = self.ledger.of_run("", j.run_id)
            others = [x for x in jobs if x.task_id != j.task_id and x.status in OPEN]
            if not others:
                done = [x for x in jobs if x.status in ("finished", "processed")]
                outs = [(x.machine, x.outcome_dict()) for x in done]
                ok = any(o.get("status") == DONE for _, o in outs)
                error = "; ".join(f"{m}: {o['error']}" for m, o in outs if o.get("error"))
                log = "\n".join(f"measured on machine {m}: {o.get('status')} "
                                f"({o.get('seconds', 0):.0f}s)" for m, o in outs)
                request = (j.run_id, DONE if ok else "failed", error, log)
        self.ledger.processed(j.task_id, request=request)

    # ---- bookkeeping ----------------------------------------------------------------------

    def _idle(self, budget_spent: bool) -> bool:
        if self.ledger.open_jobs():
            return False
        if any(not lane.idle() for lane in self.lanes.values()):
            return False
        if budget_spent:
            return True
        return not [c for c in self._candidates()]

    def _flush_lanes(self) -> None:
        for lane in self.lanes.values():
            lane.svc.flush()

    def _add_stats(self, svc: Pipeline) -> None:
        for lane in self.lanes.values():
            for f in dataclasses.fields(lane.svc.stats):
                setattr(svc.stats, f.name, getattr(svc.stats, f.name)
                        + getattr(lane.svc.stats, f.name))
                setattr(lane.svc.stats, f.name, 0)

    def status(self, svc: Pipeline) -> dict[str, Any]:
        """Runners, what each measures, the jobs and queue of each machine."""
        d = self.cfg.dispatch
        out: dict[str, Any] = {
            "broker": _redact(d.broker), "targets": list(d.targets),
            "profile_targets": {p: list(t) for p, t in d.profile_targets},
            "runners": [], "jobs": [], "machines": {}}
        jobs = self.ledger.open_jobs()
        out["jobs"] = [_job_view(j) for j in jobs]
        out["recent_jobs"] = [_job_view(j) for j in self.ledger.recent(10)]
        try:
            self.broker.redis.ping()  # fails at once; Celery's broadcast would retry
            workers, _active = self.broker.inspect(timeout=1.0)
            leases = self.broker.all_leases()
        except Exception as exc:
            out["broker_error"] = f"{type(exc).__name__}: {exc}"
            workers, leases = {}, {}
        by_worker: dict[str, list[dict[str, Any]]] = {}
        for tid, holder in leases.items():
            j = self.ledger.get(tid)
            by_worker.setdefault(str(holder.get("worker")), []).append({
                "task_id": tid, "since": holder.get("since"),
                **({"commit": j.commit_hash, "profile": j.profile, "kind": j.kind}
                   if j else {})})
        for name, queues in sorted(workers.items()):
            out["runners"].append({"name": name, "machine": machine_of_queues(queues),
                                   "queues": queues, "measuring": by_worker.get(name, [])})
        root = self.cfg.state_dir / "machines"
        for path in sorted(root.glob("*/state.sqlite3")) if root.is_dir() else []:
            from ..store.state import State

            st = State(path)
            try:
                out["machines"][path.parent.name] = {
                    "queued": [r.__dict__ for r in st.runs(status="queued")],
                    "running": [r.__dict__ for r in st.runs(status="running")],
                    "recent": st.recent_finished(5),
                    "open_regressions": st.open_alerts(),
                }
            finally:
                st.close()
        return out


def _may_meet(qa: str, qb: str) -> bool:
    """Can jobs on these two queues reach the same machine? Two machines' queues never;
    ``any`` and a kind of machine (``queue.*``) may reach any machine."""
    return qa == qb or not (qa.startswith("machine.") and qb.startswith("machine."))


def _merge_pages(page: Any, machine: str, other: Any) -> Any:
    """Two alerts pages as one; the runs of ``other`` marked with its machine."""
    def mark(runs: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(dataclasses.replace(r, kind=f"{r.kind} on {machine}") for r in runs)

    summaries = tuple(dataclasses.replace(s, text=f"[{machine}] {s.text}")
                      for s in other.summaries)
    return dataclasses.replace(
        page, alerts=tuple(sorted(page.alerts + other.alerts,
                                  key=lambda a: (a.status != "open", -a.opened_at))),
        running=page.running + mark(other.running), queued=page.queued + mark(other.queued),
        queued_total=page.queued_total + other.queued_total,
        finished=tuple(sorted(page.finished + mark(other.finished),
                              key=lambda r: -(r.finished_at or 0))),
        summaries=page.summaries + summaries)


def _hint(target: str) -> str:
    """The worker options that consume a target's queue."""
    kind, _, name = target.partition(":")
    return {"machine": f"--machine {name}", "queue": f"--machine NAME --queue {name}"}.get(
        kind, "--machine NAME")


def _job_view(j: Dispatched) -> dict[str, Any]:
    return {"task_id": j.task_id, "commit": j.commit_hash, "profile": j.profile,
            "kind": j.kind, "target": j.target, "queue": j.queue, "status": j.status,
            "machine": j.machine, "worker": j.worker, "attempt": j.attempt,
            "sent_at": j.sent_at, "started_at": j.started_at, "finished_at": j.finished_at,
            "error": j.outcome_dict().get("error", "") if j.outcome else ""}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class _LaneDispatcher:
    """A machine's view sends its own runs (bisection, confirmation) to its machine;
    the coordinator's send_and_collect claims them, so this is only the ``Pipeline`` side."""

    remote = True

    def __init__(self, coordinator: Coordinator, machine: str) -> None:
        self.coordinator, self.machine = coordinator, machine

    def measure(self, svc: Pipeline, run: Run, *,
                progress: Callable[[str], None] | None = None,
                started: Callable[[int | None], None] | None = None) -> RunOutcome | None:
        self.coordinator._add(svc, self.machine, run, (f"machine:{self.machine}",))
        return None

    def send_and_collect(self, svc: Pipeline, *, max_runs: int | None = None) -> int:
        return 0  # the coordinator's send_and_collect sends every machine's runs

    def abandon(self) -> None:
        pass

    def status(self, svc: Pipeline) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class Lane:
    """One machine's view: a ``Pipeline`` on ``<state>/machines/NAME`` that judges what
    that machine measured, and the thread that hands it the outcomes in order (its
    side-by-side check waits for a runner; other machines' outcomes do not wait)."""

    def __init__(self, coordinator: Coordinator, machine: str, main: Pipeline) -> None:
        from ..pipeline import Pipeline

        self.coordinator, self.machine, self.main = coordinator, machine, main
        cfg = coordinator.cfg
        lcfg = dataclasses.replace(
            cfg, state_dir=cfg.state_dir / "machines" / machine,
            asv=dataclasses.replace(cfg.asv, machine=machine,
                                    results_dir=coordinator.results_dir),
            dispatch=dataclasses.replace(cfg.dispatch, broker=""))
        svc = Pipeline(lcfg, verbose=main.verbose)
        # one repository, one site, one alert file: the machine's view shares the
        # coordinator's; only its runs, alerts and meta (its state) are its own
        svc.repo = main.repo
        svc.asv = AsvProject(lcfg, main.repo.path)
        svc.side_by_side = RemoteSideBySideRunner(coordinator, machine, lcfg.side_by_side,
                                                  repo=main.repo.path)
        svc.outbox = Outbox(svc.state, make_notifier(cfg.slack, cfg.state_dir),
                            max_attempts=cfg.slack.max_attempts)
        svc.plots_dir = main.plots_dir
        svc.site_url = main.site_url
        svc.write_alerts_page = coordinator.write_alerts_page  # type: ignore[method-assign]
        svc.dispatcher = _LaneDispatcher(coordinator, machine)
        svc._say = lambda msg: main._say(f"[{machine}] {msg}")  # type: ignore[method-assign]
        self.svc = svc
        self._queue: queue.Queue[Dispatched | None] = queue.Queue()
        self._pending: set[str] = set()
        self._failed: set[str] = set()
        self._guard = threading.Lock()
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"machine {machine}")
        self._thread.start()

    def submit(self, j: Dispatched) -> None:
        with self._guard:
            if j.task_id in self._pending or j.task_id in self._failed:
                return
            self._pending.add(j.task_id)
        self._queue.put(j)

    def idle(self) -> bool:
        with self._guard:
            return not self._pending

    def wait_idle(self, stop: threading.Event) -> None:
        while not self.idle() and not stop.is_set():
            stop.wait(0.2)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)
        self.svc.close()

    def _loop(self) -> None:
        while True:
            j = self._queue.get()
            if j is None:
                return
            try:
                if not self.svc.stop.is_set():
                    self._process(j)
            except Exception:
                self.svc._say(f"cannot process job {j.task_id}: "
                              f"{traceback.format_exc(limit=3)}; left for the next start")
                with self._guard:
                    self._failed.add(j.task_id)
            finally:
                with self._guard:
                    self._pending.discard(j.task_id)

    def _process(self, j: Dispatched) -> None:
        """Record the measured run in this machine's view and act on it there."""
        svc = self.svc
        mark = f"processed:{j.task_id}"
        if not svc.state.get_meta(mark):
            out = j.outcome_dict()
            error = str(out.get("error", ""))
            outcome = RunOutcome(out.get("status", "failed"), out.get("returncode"),
                                 out.get("log", ""),
                                 f"on machine {self.machine}: {error}" if error else "", None,
                                 float(out.get("seconds", 0.0)))
            with self.lock:  # send_and_collect must not claim what is recorded here
                run = svc.state.run_for(j.commit_hash, j.profile)
                if j.origin != self.machine or run is None or run.status not in (
                        "queued", "running"):
                    self._record(j)
                    run = svc.state.run_for(j.commit_hash, j.profile)
                assert run is not None
                if run.status == "queued":
                    svc.state.claim(run.id)
                    run = svc.state.run_for(j.commit_hash, j.profile)
                    assert run is not None
            svc.site_url = self.main.site_url
            svc.complete(run, outcome)
            if svc.stop.is_set():
                return  # complete() put it back: the next start judges it
            svc.state.set_meta(mark, "1")
        self.coordinator.finished(j)

    def _record(self, j: Dispatched) -> None:
        """A request of the coordinator measured here becomes a run of this machine."""
        svc, main = self.svc, self.main
        info = main.state.commit_info(j.commit_hash) or {}
        svc.state.record_commit(j.commit_hash, j.branch, str(info.get("author", "")),
                                int(info.get("date", j.commit_date)),
                                str(info.get("subject", "")))
        batch, _heads = main.state.batch(j.kind)
        if batch:
            svc.state.set_batch(j.kind, batch)
        svc.state.enqueue(j.commit_hash, j.branch, j.profile, j.kind, j.commit_date,
                          requeue_done=True)


class RemoteSideBySideRunner(SideBySideRunner):
    """The side-by-side check of a machine's view, run by a runner of that machine."""

    def __init__(self, coordinator: Coordinator, machine: str, cfg: SideBySideConfig, *,
                 repo: Path) -> None:
        super().__init__(cfg, repo=repo)
        self.coordinator, self.machine = coordinator, machine

    def run(self, a: str, b: str, *, project_dir: Path,
            progress: Callable[[str], None] | None = None) -> SideBySideResult:
        c = self.coordinator
        tid = f"{self.machine}/side_by_side.{a[:12]}.{b[:12]}.{uuid.uuid4().hex[:8]}"
        wire = {"a": a, "b": b, "side_by_side": dataclasses.asdict(self.cfg),
                "instrument": c.instrument}
        try:
            c.broker.app.send_task(SIDE_BY_SIDE_TASK, args=[wire], task_id=tid,
                                   queue=queue_of(f"machine:{self.machine}"), retry=True,
                                   retry_policy=SEND_RETRY)
        except Exception as exc:
            raise SideBySideError(f"cannot send it to machine {self.machine}: {exc}") from None
        res = c.broker.app.AsyncResult(tid)
        t0, started = time.monotonic(), None
        limit = c.cfg.asv.run_timeout_s + self.cfg.timeout_s  # a runner busy, then the run
        while True:
            if self._stopping:
                raise SideBySideError("abandoned (shutdown)")
            try:
                if res.ready():
                    break
                if started is None and c.broker.leases([tid]):
                    started = time.monotonic()
            except Exception as exc:
                c._broker_error(exc)
            now = time.monotonic()
            if now - t0 > limit or (started is not None
                                    and now - started > self.cfg.timeout_s + 60):
                with contextlib.suppress(Exception):
                    c.broker.cancel(tid)
                raise SideBySideError(f"no answer from machine {self.machine} in "
                                  f"{now - t0:.0f}s")
            time.sleep(1.0)
        value = res.result if res.state == "SUCCESS" else {"status": ERROR,
                                                           "error": repr(res.result)}
        with contextlib.suppress(Exception):
            res.forget()
        if not isinstance(value, dict) or value.get("status") != DONE:
            err = value.get("error") if isinstance(value, dict) else value
            raise SideBySideError(f"on machine {self.machine}: {err}")
        try:
            points = tuple(PointVerdict(**p) for p in value["points"])
            return SideBySideResult(value["a"], value["b"], points, float(value["seconds"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SideBySideError(f"unreadable side-by-side result from {self.machine}: "
                              f"{exc!r}") from None

    def abandon(self) -> None:
        self._stopping = True

