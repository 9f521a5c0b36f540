"""The settings of one load phase: a picklable value shipped to every worker process."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .protocol import Call

LoopKind = Literal["closed", "open", "churn"]
Arrival = Literal["constant", "poisson"]


@dataclass(frozen=True)
class PhaseSpec:
    """One phase of load against one URL.

    Every phase is bounded twice, by time (``warmup_s + duration_s``, then at most
    ``timeout_s`` of drain) and by count (``max_requests`` sent), so it always stops by
    itself even when the server or the clock misbehaves.

    * ``closed``: ``connections`` sessions, each keeping ``inflight`` requests outstanding;
      latency is from the actual send (closed-loop latency hides server stalls: the
      client waits, so the result JSON marks these phases ``"loop": "closed"``).
    * ``open``: requests are issued at ``rate`` per second in total (``constant`` or
      ``poisson`` inter-arrival), round-robin over the sessions, whatever the server does;
      latency is from each request's *intended* send time (no coordinated omission).
      ``rate`` 0 just holds the connections open for the duration.
    * ``churn``: ``connections`` concurrent loops, each connect + initialize + one call +
      close, repeated.
    """

    name: str
    url: str
    loop: LoopKind
    connections: int
    call: Call
    duration_s: float
    warmup_s: float = 0.0
    inflight: int = 1
    rate: float = 0.0
    arrival: Arrival = "constant"
    max_requests: int = 0          # 0: derived from duration (see bounded_max_requests)
    timeout_s: float = 5.0
    connect_timeout_s: float = 10.0
    connect_concurrency: int = 100
    reconnect: bool = False
    token: str | None = None
    timeline_bucket_s: float = 0.0
    workers: int = 1
    seed: int = 1
    progress_s: float = 0.0        # 0: no progress line
    slices: int = 10               # equal sub-windows with their own figures (asv samples)
    extra: dict[str, Any] = field(default_factory=dict)

    def bounded_max_requests(self) -> int:
        """The count bound: explicit, or generous for the time bound (200K msg/s)."""
        if self.max_requests > 0:
            return self.max_requests
        return int((self.warmup_s + self.duration_s) * 200_000) + 10_000

    def share(self, index: int, workers: int) -> PhaseSpec:
        """This worker's slice: connections, rate and count split as evenly as possible."""
        conns = self.connections // workers + (1 if index < self.connections % workers else 0)
        return replace(self, connections=conns, rate=self.rate / workers,
                       max_requests=max(1, self.bounded_max_requests() // workers),
                       seed=self.seed * 1000 + index, workers=1,
                       # workers report counters every second; the parent prints
                       progress_s=min(self.progress_s, 1.0))

    def settings(self) -> dict[str, Any]:
        """The JSON ``settings`` of a phase (what was asked, not what happened)."""
        out = asdict(self)
        call = out.pop("call")
        out["method"] = call["method"]
        out["params"] = call["params"]
        out["max_requests"] = self.bounded_max_requests()
        out.pop("token", None)
        out["token_set"] = self.token is not None
        return out
