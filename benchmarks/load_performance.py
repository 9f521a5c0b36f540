"""Load performance: closed loop at 1, 10, 100 and 1000 concurrent clients.

Each client keeps one ``echo`` call in flight (closed loop: latency is measured
from the actual send, so it is the service time seen by a waiting client).
Figures are per client count; lower is better for all of them, so time per
message stands in for throughput (a rate that drops would read as better).
"""

from ._harness import corrected_figure, figure, run_scenario

CLIENTS = [1, 10, 100, 1000]


class LoadPerformance:
    """The plan's targets: p95 <50/100/200/500 ms; >1K/10K/20K/10K msg/s."""

    params = [CLIENTS]
    param_names = ["clients"]
    # Bump only when what a figure means changes; a new version drops its history.
    version = "1"
    timeout = 60

    def setup_cache(self):
        # Once per asv run and environment; every track_ method reads its result.
        return run_scenario("load_performance")

    setup_cache.timeout = 1800

    def track_latency_p50(self, result, clients):
        return figure(result, f"clients_{clients}.p50_ms")

    def track_latency_p95(self, result, clients):
        return figure(result, f"clients_{clients}.p95_ms")

    def track_latency_p99(self, result, clients):
        return figure(result, f"clients_{clients}.p99_ms")

    def track_time_per_message(self, result, clients):
        return figure(result, f"clients_{clients}.us_per_msg")

    def track_server_cpu_per_message(self, result, clients):
        return figure(result, f"clients_{clients}.server_cpu_us_per_msg")

    def track_server_cpu_relative(self, result, clients):
        """Server CPU per message / load-generator CPU per message (dimensionless).

        The generator never changes between commits and runs at the same time on the
        other core, so a slowdown of the whole host cancels out of the ratio."""
        return figure(result, f"clients_{clients}.server_cpu_relative")

    # Host-corrected: per round pair against the reference server, commit/reference x
    # the reference's nominal value (benchmarks/load/reference.py, docs/BENCHMARKS.md):
    # what the commit would take on the calibration host. The raw figures above stay
    # (the plan's absolute limits judge them).
    def track_corrected_latency_p50(self, result, clients):
        return corrected_figure(result, f"clients_{clients}.p50_ms")

    def track_corrected_latency_p95(self, result, clients):
        return corrected_figure(result, f"clients_{clients}.p95_ms")

    def track_corrected_latency_p99(self, result, clients):
        return corrected_figure(result, f"clients_{clients}.p99_ms")

    def track_corrected_time_per_message(self, result, clients):
        return corrected_figure(result, f"clients_{clients}.us_per_msg")

    track_latency_p50.unit = "ms"
    track_latency_p95.unit = "ms"
    track_latency_p99.unit = "ms"
    track_time_per_message.unit = "µs"
    track_server_cpu_per_message.unit = "µs"
    track_server_cpu_relative.unit = "server/generator"
    track_corrected_latency_p50.unit = "ms"
    track_corrected_latency_p95.unit = "ms"
    track_corrected_latency_p99.unit = "ms"
    track_corrected_time_per_message.unit = "µs"
