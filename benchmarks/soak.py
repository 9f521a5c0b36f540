"""Soak: steady open-loop load; memory and file-descriptor slopes (leaks)."""

from ._harness import figure, run_scenario


class Soak:
    """The plan: one hour (full profile) without leaks or crashes."""

    version = "1"
    timeout = 60

    def setup_cache(self):
        # Once per asv run and environment; every track_ method reads its result.
        return run_scenario("soak")

    setup_cache.timeout = 7200

    def track_rss_slope(self, result):
        return figure(result, "soak.rss_slope_kib_per_min")

    def track_fd_slope(self, result):
        return figure(result, "soak.fd_slope_per_min")

    def track_latency_p99(self, result):
        return figure(result, "soak.p99_ms")

    def track_server_cpu_per_message(self, result):
        return figure(result, "soak.server_cpu_us_per_msg")

    def track_rss_growth_per_1000_messages(self, result):
        """Server RSS growth per 1000 messages served (least squares after the first fifth
        of the run; the plan's leak size is 1 KiB)."""
        return figure(result, "soak.rss_kib_per_1000_msg")

    def track_rss_growth_upper_bound(self, result):
        """The upper end of that growth's 95 % interval: under 0.5 KiB (half the leak
        size) is the verdict "no leak" (benchmarks/load/leak.py)."""
        return figure(result, "soak.rss_kib_per_1000_msg_hi")

    def track_fd_growth_upper_bound(self, result):
        """Open file descriptors per 100 000 messages, upper end of the 95 % interval."""
        return figure(result, "soak.fds_per_100k_msg_hi")

    def track_server_cpu_percent(self, result):
        """Server CPU (% of one core) under the soak's steady load (the plan: < 80 %)."""
        return figure(result, "soak.server_cpu_percent")

    def track_throughput_shortfall(self, result):
        """1 - worst slice's throughput / offered rate: sustained over the whole soak."""
        return figure(result, "soak.throughput_shortfall")

    track_rss_slope.unit = "KiB/min"
    track_rss_growth_per_1000_messages.unit = "KiB"
    track_rss_growth_upper_bound.unit = "KiB"
    track_fd_growth_upper_bound.unit = "fds"
    track_server_cpu_percent.unit = "%"
    track_throughput_shortfall.unit = "fraction"
    track_fd_slope.unit = "fds/min"
    track_latency_p99.unit = "ms"
    track_server_cpu_per_message.unit = "µs"
