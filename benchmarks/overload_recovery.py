"""Overload and recovery: load shedding, circuit breaker, server restart."""

from ._harness import figure, run_scenario


class OverloadRecovery:
    """Past capacity the server must reject fast and keep accepted calls bounded."""

    version = "1"
    timeout = 60

    def setup_cache(self):
        # Once per asv run and environment; every track_ method reads its result.
        return run_scenario("overload_recovery")

    setup_cache.timeout = 1800

    def track_overload_accepted_p99(self, result):
        """p99 of the calls accepted while offered twice the capacity (open loop)."""
        return figure(result, "overload.p99_ms")

    def track_overload_reject_p99(self, result):
        """How fast a "server busy" rejection comes back (p99 per slice of the phase)."""
        return figure(result, "overload.reject_p99_ms")

    def track_recovered_p99(self, result):
        """p99 once the offered load is back under capacity."""
        return figure(result, "recover.p99_ms")

    def track_breaker_close_after_heal(self, result):
        """Seconds from the provider healing to the circuit closing."""
        return figure(result, "breaker.close_after_heal_s")

    def track_restart_resume_after_ready(self, result):
        """Seconds from the restarted server being ready to traffic flowing again (one
        sample per restart, 50 ms resolution)."""
        return figure(result, "restart.resume_after_ready_s")

    track_overload_accepted_p99.unit = "ms"
    track_overload_reject_p99.unit = "ms"
    track_recovered_p99.unit = "ms"
    track_breaker_close_after_heal.unit = "s"
    track_restart_resume_after_ready.unit = "s"
    # version 2: repeated samples within a run (slices, restarts), was one value per run
    track_overload_reject_p99.version = "2"
    track_restart_resume_after_ready.version = "2"
