"""Is the machine idle enough to measure? A check before calibration and evaluation runs.

Measurements taken while something else burns CPU are slower for reasons that have
nothing to do with the commit. The check does not refuse to run (a shared CI machine is
never fully idle); it returns warnings that go into the report, so a reader knows which
figures were taken on a busy machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

#: 1-minute load average per core above which the machine counts as busy.
LOAD_PER_CORE = 0.5
#: A process using more than this share of one core (over the sampling interval) is busy.
BUSY_PROCESS_PERCENT = 20.0


@dataclass(frozen=True)
class Idleness:
    """What the check saw."""

    load_1m: float
    cores: int
    busy: tuple[str, ...]  # "name(pid) 85%" of other busy processes

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.load_1m > LOAD_PER_CORE * self.cores:
            out.append(f"load average {self.load_1m:.2f} on {self.cores} cores")
        if self.busy:
            out.append("busy processes: " + ", ".join(self.busy))
        return out

    @property
    def idle(self) -> bool:
        return not self.warnings


def check(interval_s: float = 1.0) -> Idleness:
    """Sample other processes' CPU for ``interval_s`` and read the load average."""
    me = os.getpid()
    mine = {me} | {p.pid for p in psutil.Process(me).children(recursive=True)}
    procs = []
    for proc in psutil.process_iter(["name"]):
        if proc.pid in mine:
            continue
        try:
            proc.cpu_percent(None)
            procs.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    psutil.cpu_percent(interval_s)  # also serves as the sampling sleep
    busy = []
    for proc in procs:
        try:
            pct = proc.cpu_percent(None)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if pct > BUSY_PROCESS_PERCENT:
            busy.append((pct, f"{proc.info['name']}({proc.pid}) {pct:.0f}%"))
    busy.sort(reverse=True)
    return Idleness(
        load_1m=os.getloadavg()[0],
        cores=psutil.cpu_count() or 1,
        busy=tuple(text for _, text in busy[:5]),
    )
