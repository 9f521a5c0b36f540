"""APScheduler job functions, importable by name (``scheduler.jobs:poll_job`` ...).

Why module-level functions taking a string key: the SQLAlchemy job store pickles a job's
function *reference* and arguments, so they must be importable and plain. The key names
the running daemon's Pipeline (registered by ``daemon.run_daemon``); the heavy object is
never pickled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .measure.asvrun import AsvError
from .measure.gitrepo import GitError
from .pipeline import Pipeline
from .results import ResultsError
from .store.baselines import BaselinesError

log = logging.getLogger("scheduler.jobs")

_services: dict[str, Pipeline] = {}
EXPECTED = (GitError, AsvError, ResultsError, BaselinesError, OSError)


def register(key: str, service: Pipeline) -> None:
    _services[key] = service


def unregister(key: str) -> None:
    _services.pop(key, None)


def _service(key: str) -> Pipeline:
    try:
        return _services[key]
    except KeyError:
        raise RuntimeError(f"no scheduler service registered as {key!r} in this process") \
            from None


def _guarded(what: str, fn: Callable[[], object]) -> None:
    """One clear log line for an expected failure (network down, asv broken) instead of
    APScheduler's traceback; the next trigger tries again."""
    try:
        fn()
    except EXPECTED as exc:
        log.error("%s failed: %s", what, exc)


def poll_job(key: str) -> None:
    """Fetch the watched repository and queue new commits."""
    svc = _service(key)
    if not svc.stop.is_set():
        _guarded("poll", svc.poll)


def work_job(key: str) -> None:
    """Measure queued commits one at a time (max_instances=1 keeps it single)."""
    svc = _service(key)
    _guarded("benchmark run", svc.measure_queued)


def nightly_job(key: str) -> None:
    """Queue the nightly profile on every branch head."""
    svc = _service(key)
    _guarded("nightly", lambda: svc.enqueue_heads("nightly"))


def soak_job(key: str) -> None:
    """Queue the weekly soak on every branch head."""
    svc = _service(key)
    if svc.cfg.schedule.weekly_soak:
        _guarded("soak", lambda: svc.enqueue_heads("soak"))


def outbox_job(key: str) -> None:
    """Retry undelivered alerts (their backoff decides which are due)."""
    svc = _service(key)
    if not svc.stop.is_set():
        svc.flush()
