"""In-flight caps: reject fast instead of queueing without bound.

A server that queues every request it cannot serve yet turns overload into
unbounded latency and memory. Here a request that would exceed the
per-connection or the global in-flight cap is answered at once with the
``server busy`` error (-32001) and the client decides whether to retry.

Only the event loop touches these counters, so plain ints suffice.
"""

from __future__ import annotations

__all__ = ["InflightLimiter"]


class InflightLimiter:
    def __init__(self, *, per_connection: int, total: int) -> None:
        self.per_connection = max(1, per_connection)
        self.total = max(1, total)
        #: Requests currently running in the whole server.
        self.inflight = 0

    def reject_scope(self, connection_inflight: int) -> str | None:
        """``"connection"``/``"global"`` when one more request would exceed a cap, else None."""
        if connection_inflight >= self.per_connection:
            return "connection"
        if self.inflight >= self.total:
            return "global"
        return None
