"""Scenario name -> (run function, extra server arguments when the instrument starts it).

The extra arguments only apply to a server the instrument starts (``--server-python``):
the overload scenario needs ``--allow-admin`` for failure injection and a small global
in-flight cap so that "capacity" is set by the cap (echo with a delay), not by how fast
this particular machine's CPU is; bad_input a short ``--send-timeout`` and the frame
limit its oversized frames are sized against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..result import ScenarioResult
from ..runner import Runner
from . import (
    adhoc,
    bad_input,
    capacity,
    concurrent_connections,
    end_to_end_latency,
    load_performance,
    overload_recovery,
    soak,
)

RunFn = Callable[[Runner, Any, ScenarioResult], None]

#: Server options as (flag, *values) groups; a flag the user passes wins over ours.
ServerOptions = tuple[tuple[str, ...], ...]

SCENARIOS: dict[str, tuple[RunFn, ServerOptions]] = {
    "load_performance": (load_performance.run, ()),
    "concurrent_connections": (concurrent_connections.run, ()),
    "end_to_end_latency": (end_to_end_latency.run, ()),
    "overload_recovery": (overload_recovery.run,
                          (("--allow-admin",), ("--max-inflight", "32"))),
    "soak": (soak.run, ()),
    "capacity": (capacity.run, ()),
    "adhoc": (adhoc.run, ()),
    # not in ALL (nor in asv): it needs a server that knows --send-timeout
    "bad_input": (bad_input.run, bad_input.SERVER_ARGS),
}

#: What ``--scenario all`` runs, in order.
ALL = ("load_performance", "concurrent_connections", "end_to_end_latency",
       "overload_recovery", "soak", "capacity")
