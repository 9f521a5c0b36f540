"""The embedded default: every measurement is an ``asv run`` in this process."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..measure.asvrun import RunOutcome
    from ..pipeline import Service
    from ..store.state import Run


class LocalDispatcher:
    """Measures on this host, one run at a time (``Service.drain`` keeps it single)."""

    remote = False

    def measure(self, svc: Service, run: Run, *,
                progress: Callable[[str], None] | None = None,
                started: Callable[[int | None], None] | None = None) -> RunOutcome:
        return svc.asv.run(run.commit_hash, run.profile, progress=progress, started=started)

    def drain(self, svc: Service, *, max_runs: int | None = None) -> int:
        raise NotImplementedError("the local dispatcher is drained by Service.drain")

    def abandon(self) -> None:
        """``Service.abandon`` stops the asv run itself."""

    def status(self, svc: Service) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass
