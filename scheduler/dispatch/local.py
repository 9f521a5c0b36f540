"""The embedded default: every measurement is an ``asv run`` in this process."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..measure.asvrun import RunOutcome
    from ..pipeline import Pipeline
    from ..store.state import Run


class LocalDispatcher:
    """Measures on this host, one run at a time (``Pipeline.measure_queued`` keeps it single)."""

    remote = False

    def measure(self, svc: Pipeline, run: Run, *,
                progress: Callable[[str], None] | None = None,
                started: Callable[[int | None], None] | None = None) -> RunOutcome:
        return svc.asv.run(run.commit_hash, run.profile, progress=progress, started=started)

    def send_and_collect(self, svc: Pipeline, *, max_runs: int | None = None) -> int:
        raise NotImplementedError("the local dispatcher's runs are measured by "
                                  "Pipeline.measure_queued")

    def abandon(self) -> None:
        """``Pipeline.abandon`` stops the asv run itself."""

    def status(self, svc: Pipeline) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass
