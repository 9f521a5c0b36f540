"""Soak: steady open-loop load; memory and file-descriptor slopes (leaks)."""

from ._harness import cached, figure


class Soak:
    """The plan: one hour (full profile) without leaks or crashes."""

    version = "1"
    timeout = 60

    setup_cache = cached("soak", timeout=2 * 3600)

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
