"""Concurrent connections: rapid establishment, 1000 held, churn, resources."""

from ._harness import figure, run_scenario


class ConcurrentConnections:
    """The plan: 100 connections in <1 s, 1000 held, fds back to baseline after churn."""

    version = "1"
    timeout = 60

    def setup_cache(self):
        # Once per asv run and environment; every track_ method reads its result.
        return run_scenario("concurrent_connections")

    setup_cache.timeout = 3600

    def track_establish_100_connections(self, result):
        """Wall time until all of the rapid phase's connections were open (one sample per
        round)."""
        return figure(result, "rapid.connect_wall_ms")

    def track_connect_p99(self, result):
        """TCP + WebSocket handshake, p99 of each rapid round."""
        return figure(result, "rapid.connect_p99_ms")

    def track_server_cpu_per_session(self, result):
        """Server CPU per session of the rapid rounds: handshake, initialize, close.

        The steady figure of connection establishment: the wall time above depends as
        much on the load generator's own handshakes as on the server."""
        return figure(result, "rapid.server_cpu_us_per_session")

    def track_memory_per_connection(self, result):
        """Server RSS growth per held connection."""
        return figure(result, "hold.rss_kib_per_connection")

    def track_held_latency_p99(self, result):
        """Latency of the light traffic while all connections are held."""
        return figure(result, "hold.p99_ms")

    def track_churn_fd_delta(self, result):
        """Open file descriptors after churn minus before (a leak grows this)."""
        return figure(result, "churn.fd_delta")

    def track_churn_rss_per_cycle(self, result):
        """Server RSS growth over the churn per connect-close cycle (a per-connection leak
        is this many KiB; the total over the churn would move with its cycle count)."""
        return figure(result, "churn.rss_kib_per_cycle")

    def track_churn_server_cpu_per_cycle(self, result):
        """Server CPU per connect-initialize-call-close cycle."""
        return figure(result, "churn.server_cpu_us_per_msg")

    track_establish_100_connections.unit = "ms"
    track_connect_p99.unit = "ms"
    track_server_cpu_per_session.unit = "µs"
    # version 2: measured over several rounds (samples), was one value per run
    track_establish_100_connections.version = "2"
    track_connect_p99.version = "2"
    track_memory_per_connection.unit = "KiB"
    track_held_latency_p99.unit = "ms"
    def track_churn_server_cpu_relative(self, result):
        """Server CPU per churn cycle / load-generator CPU per cycle (host slowdowns
        cancel; see load_performance.track_server_cpu_relative)."""
        return figure(result, "churn.server_cpu_relative")

    def track_held_connections_lost(self, result):
        """Held sessions that failed to open or were closed during the hold (the plan:
        1000 clients held for 10 minutes in the full profile)."""
        return figure(result, "hold.connections_lost")

    def track_held_server_cpu_percent(self, result):
        """Server CPU (% of one core) while the connections are held with light traffic
        (the plan: < 80 %)."""
        return figure(result, "hold.server_cpu_percent")

    track_held_connections_lost.unit = "connections"
    track_held_server_cpu_percent.unit = "%"
    track_churn_fd_delta.unit = "fds"
    track_churn_rss_per_cycle.unit = "KiB"
    track_churn_server_cpu_per_cycle.unit = "µs"
    track_churn_server_cpu_relative.unit = "server/generator"
