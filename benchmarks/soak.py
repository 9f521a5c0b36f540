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

    track_rss_slope.unit = "KiB/min"
    track_fd_slope.unit = "fds/min"
    track_latency_p99.unit = "ms"
    track_server_cpu_per_message.unit = "µs"
