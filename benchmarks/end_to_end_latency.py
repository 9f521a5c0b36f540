"""End-to-end latency by tool type, open loop (Poisson arrivals).

Latency is measured from each request's intended send time, so a stalled
server shows up as latency instead of as fewer requests (no coordinated
omission). ``load`` is the lightest and the heaviest rate of the profile.

Server CPU per call is not tracked here: at these rates a phase uses a few
10 ms clock ticks of CPU, so the figure would be quantisation noise. The
load-performance and soak scenarios track CPU per message under real load.
"""

from ._harness import corrected_figure, figure, profile, run_scenario

TOOLS = ["echo", "status", "chat", "analyze"]
LOADS = ["light", "heavy"]
# The open-loop rates (requests/s over all connections) of each profile,
# as in benchmarks/load/profiles.py: light = the first, heavy = the last.
RATES = {"smoke": (20, 20), "quick": (20, 200), "full": (20, 1000)}


def _phase(tool, load):
    light, heavy = RATES[profile()]
    return f"{tool}_{light if load == 'light' else heavy}rps"


class EndToEndLatency:
    """The plan's targets: p50 <50 ms, p95 <100 ms, p99 <200 ms, nothing over 1 s."""

    params = [TOOLS, LOADS]
    param_names = ["tool", "load"]
    version = "1"
    timeout = 60

    def setup_cache(self):
        # Once per asv run and environment; every track_ method reads its result.
        return run_scenario("end_to_end_latency")

    setup_cache.timeout = 1800

    def track_latency_p50(self, result, tool, load):
        return figure(result, f"{_phase(tool, load)}.p50_ms")

    def track_latency_p95(self, result, tool, load):
        return figure(result, f"{_phase(tool, load)}.p95_ms")

    def track_latency_p99(self, result, tool, load):
        return figure(result, f"{_phase(tool, load)}.p99_ms")

    # Host-corrected, as in LoadPerformance: commit/reference per round pair x nominal.
    def track_corrected_latency_p50(self, result, tool, load):
        return corrected_figure(result, f"{_phase(tool, load)}.p50_ms")

    def track_corrected_latency_p95(self, result, tool, load):
        return corrected_figure(result, f"{_phase(tool, load)}.p95_ms")

    def track_corrected_latency_p99(self, result, tool, load):
        return corrected_figure(result, f"{_phase(tool, load)}.p99_ms")

    track_latency_p50.unit = "ms"
    track_latency_p95.unit = "ms"
    track_latency_p99.unit = "ms"
    track_corrected_latency_p50.unit = "ms"
    track_corrected_latency_p95.unit = "ms"
    track_corrected_latency_p99.unit = "ms"
