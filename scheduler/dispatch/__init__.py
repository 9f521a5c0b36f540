"""Where measurements run: in this process (``local``), or on runners behind a Celery
broker (``coordinator`` + ``worker``), one module per backend.

The service hands every claimed run to its dispatcher (``Pipeline.process``). The local
dispatcher runs asv right there and returns the outcome, exactly as the service always
did; without ``[dispatch] broker`` nothing else changes. With a broker the service is the
*coordinator*: it still polls, queues, judges, bisects, confirms, publishes and alerts,
but each measurement becomes a job on a Celery queue, measured by a runner
(``python -m scheduler worker --machine NAME``), and the coordinator's ``send_and_collect`` collects
the outcomes and hands each to the view of the machine that measured it.

    local.py        LocalDispatcher: ``asv run`` in this process (the default)
    coordinator.py  Coordinator: jobs to runners, outcomes to per-machine views
    worker.py       the runner side (a Celery worker)
    celery.py       the Celery application and the Redis keys around it
    ledger.py       the coordinator's table of dispatched jobs
    protocol.py     targets, queues, the job and outcome messages (no I/O)
    guard.py        runs asv so that it dies with the runner
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config import Config
    from ..measure.asvrun import RunOutcome
    from ..pipeline import Pipeline
    from ..store.state import Run


class Dispatcher(Protocol):
    """What the service needs from a backend."""

    #: True when measurements happen elsewhere: ``Pipeline.measure_queued`` then leaves its loop to
    #: the dispatcher, which sends runs and collects their outcomes.
    remote: bool

    def measure(self, svc: Pipeline, run: Run, *,
                progress: Callable[[str], None] | None = None,
                started: Callable[[int | None], None] | None = None) -> RunOutcome | None:
        """Measure a claimed run: its outcome, or None when it was sent to a runner (the
        outcome is handed to ``Pipeline.complete`` when it is back)."""

    def send_and_collect(self, svc: Pipeline, *, max_runs: int | None = None) -> int:
        """(remote) Send queued runs and collect outcomes until there is nothing left."""

    def abandon(self) -> None:
        """Stop: a local run is abandoned; sent jobs stay with their runners."""

    def status(self, svc: Pipeline) -> dict[str, Any]:
        """What ``python -m scheduler status`` shows about runners and jobs."""

    def close(self) -> None: ...


def make_dispatcher(cfg: Config) -> Dispatcher:
    """The local dispatcher, or the coordinator when ``[dispatch] broker`` is set."""
    if not cfg.dispatch.broker:
        from .local import LocalDispatcher

        return LocalDispatcher()
    from .coordinator import Coordinator

    return Coordinator(cfg)
