"""The daemon: APScheduler ``BlockingScheduler`` with a SQLite job store, the site server,
and clean shutdown.

Why this shape (see docs/ notes on APScheduler 3.x): a BlockingScheduler because the
process only schedules; jobs persisted in ``<state>/jobs.sqlite3`` with explicit ids and
``replace_existing`` so restarts neither lose nor duplicate them; every trigger in UTC;
``coalesce``, ``max_instances=1`` and a generous ``misfire_grace_time``. SIGTERM raises
SystemExit in the signal handler (calling ``shutdown()`` there misbehaves); the ``finally``
abandons the current asv run (it is re-queued), waits for the job threads and exits 0.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import signal
from types import FrameType

from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from . import jobs
from .config import Config, SiteConfig
from .estimate import readiness
from .lock import StateLock
from .pipeline import Pipeline, say
from .publish.site import SiteError, SiteServer, ensure_placeholder


def build_scheduler(cfg: Config, key: str) -> BlockingScheduler:
    """The scheduler with its persistent jobs (ids are fixed: restarts replace them)."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    sched = BlockingScheduler(
        jobstores={"default": SQLAlchemyJobStore(
            url=f"sqlite:///{cfg.state_dir / 'jobs.sqlite3'}")},
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": cfg.schedule.misfire_grace_time_s},
        timezone="UTC",
    )
    now = _dt.datetime.now(_dt.UTC)
    s = cfg.schedule
    sched.add_job("scheduler.jobs:poll_job", IntervalTrigger(
        seconds=s.poll_interval_s, timezone="UTC"), args=[key], id="poll",
        name="poll repository", replace_existing=True, next_run_time=now)
    sched.add_job("scheduler.jobs:work_job", IntervalTrigger(
        seconds=s.work_interval_s, timezone="UTC"), args=[key], id="work",
        name="measure queued commits", replace_existing=True,
        next_run_time=now + _dt.timedelta(seconds=1))
    # at once after a start too: what a killed daemon left undelivered goes out now
    sched.add_job("scheduler.jobs:outbox_job", IntervalTrigger(seconds=15, timezone="UTC"),
                  args=[key], id="outbox", name="deliver alerts", replace_existing=True,
                  next_run_time=now)
    sched.add_job("scheduler.jobs:nightly_job", CronTrigger.from_crontab(
        s.nightly, timezone="UTC"), args=[key], id="nightly", name="nightly full profile",
        replace_existing=True)
    if s.weekly_soak:
        sched.add_job("scheduler.jobs:soak_job", CronTrigger.from_crontab(
            s.weekly_soak, timezone="UTC"), args=[key], id="soak", name="weekly soak",
            replace_existing=True)
    else:
        # a soak stored by an earlier configuration: stored jobs can only be removed once
        # the scheduler has started (before, remove_job only sees pending jobs)
        def drop_soak(_event: object) -> None:
            with contextlib.suppress(JobLookupError):
                sched.remove_job("soak")

        sched.add_listener(drop_soak, EVENT_SCHEDULER_STARTED)
    return sched


def run_daemon(cfg: Config, *, verbose: bool = True) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0 on a clean stop)."""
    lock = StateLock(cfg.state_dir)
    lock.acquire()  # LockBusyError propagates to the CLI (clear message, exit 2)
    svc = Pipeline(cfg, verbose=verbose)
    site: SiteServer | None = None
    key = str(cfg.path or cfg.state_dir)
    try:
        svc.recover()
        try:
            site = SiteServer(cfg.site.html_dir, cfg.site.host, cfg.site.port,
                              plots_dir=svc.plots_dir).start()
        except OSError as exc:
            raise SiteError(f"cannot serve {cfg.site.html_dir} on {cfg.site.host}:"
                            f"{cfg.site.port}: {exc.strerror or exc} (set [site] port, or "
                            "--port 0 for any free port)") from None
        svc.site_url = cfg.site.base_url(site.port)
        local = SiteConfig(host=cfg.site.host).base_url(site.port)
        svc.publish()
        ensure_placeholder(cfg.site.html_dir)
        print(f"history page: {local}index.html", flush=True)
        print(readiness(svc.state, svc.repo, cfg.repository.branches[0],
                        cfg.profiles.premerge), flush=True)
        if svc.site_url != local:
            print(f"public URL (used in alerts): {svc.site_url}index.html", flush=True)
        jobs.register(key, svc)
        sched = build_scheduler(cfg, key)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            say(f"received {signal.Signals(signum).name}; stopping")
            svc.abandon()
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        say(f"daemon started (state {cfg.state_dir}, watching {svc.repo.shown_url} "
            f"{', '.join(cfg.repository.branches)})")
        try:
            sched.start()
        except (SystemExit, KeyboardInterrupt):
            pass
        finally:
            svc.abandon()
            if sched.running:
                sched.shutdown(wait=True)
        say("stopped cleanly")
        return 0
    finally:
        jobs.unregister(key)
        if site is not None:
            site.stop()
        svc.close()
        lock.release()
