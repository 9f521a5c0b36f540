"""A single phase from command-line settings (``--scenario adhoc``), for exploration and
for measuring the generator itself (e.g. against ``bare_echo``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import default_call
from ..result import ScenarioResult
from ..runner import Runner
from ..spec import Arrival, LoopKind


@dataclass(frozen=True)
class Adhoc:
    """One phase; ``tool`` is a protocol.default_call name (``raw_echo`` for bare_echo)."""

    loop: LoopKind = "closed"
    connections: int = 10
    inflight: int = 1
    rate: float = 0.0
    arrival: Arrival = "constant"
    tool: str = "echo"
    warmup_s: float = 1.0
    duration_s: float = 5.0
    timeout_s: float = 5.0


def run(runner: Runner, p: Adhoc, res: ScenarioResult) -> None:
    """Run the phase; the only checks are "some traffic" and "no errors"."""
    ph = res.add_phase(runner.run(runner.spec(
        "adhoc", p.loop, p.connections, default_call(p.tool), p.duration_s,
        warmup_s=p.warmup_s, inflight=p.inflight, rate=p.rate, arrival=p.arrival,
        timeout_s=p.timeout_s)))
    res.check("adhoc: successful traffic (msg/s)", ph["throughput_msg_s"], ">", 0.0)
    res.check("adhoc: error fraction", ph["requests"]["error_fraction"], "==", 0.0)
