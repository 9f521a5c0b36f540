"""Capacity: the breaking point of each tool, as time per message at capacity."""

from ._harness import figure, run_scenario

TOOLS = ["echo", "chat", "analyze"]
CLIENTS = [100, 1000]


class Capacity:
    """The highest offered rate (open loop) with p99 < 200 ms and errors < 0.1 %, per tool
    and client count (benchmarks/load/scenarios/capacity.py). Tracked as 1e6 / capacity:
    asv reads lower as better, a rate would read the wrong way. Quick: a coarse search
    (9 % resolution); full: a fine one (2 %). The smoke profile measures echo at 100
    clients only (the rest is NaN, "skipped")."""

    params = [TOOLS, CLIENTS]
    param_names = ["tool", "clients"]
    version = "1"
    timeout = 60

    def setup_cache(self):
        # Once per asv run and environment; every track_ method reads its result.
        return run_scenario("capacity")

    setup_cache.timeout = 3600

    def track_time_per_message_at_capacity(self, result, tool, clients):
        return figure(result, f"capacity.{tool}.{clients}.us_per_msg")

    track_time_per_message_at_capacity.unit = "µs"
