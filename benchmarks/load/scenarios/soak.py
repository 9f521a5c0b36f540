"""Scenario 5, soak: steady open-loop load for a long time; RSS and fd slopes.

The slopes are least-squares fits over the server's samples after the warm-up (the
first fifth of the run is left out too: caches, pools and the allocator grow there for
legitimate reasons). A leak shows up as a steady positive slope.
"""

from __future__ import annotations

from ..profiles import Soak
from ..protocol import default_call
from ..resources import slope_per_min
from ..result import ScenarioResult
from ..runner import Runner


def run(runner: Runner, p: Soak, res: ScenarioResult) -> None:
    """One long open-loop phase, then the slopes."""
    ph = res.add_phase(runner.run(runner.spec(
        "soak", "open", p.connections, default_call(p.tool), p.duration_s,
        warmup_s=p.warmup_s, rate=p.rate, arrival="poisson")))
    res.check("soak: error fraction", ph["requests"]["error_fraction"], "<=", 0.0)
    res.check("soak: achieved rate / target", (ph.get("achieved_rate_msg_s") or 0) / p.rate,
              ">=", 0.95, scope="full")
    sampler = runner.sampler
    if sampler is None:
        res.notes.append("no server PID: slopes not measured")
        return
    samples = ph.get("server", {})
    window = sampler.window(*runner.last_window)
    if len(window) >= 3:
        t_start, t_end = window[0][0], window[-1][0]
        cut = t_start + (t_end - t_start) / 5
        tail = [s for s in window if s[0] >= cut]
        rss = slope_per_min([(s[0], s[3] / 1024) for s in tail])
        fds = slope_per_min([(s[0], float(s[4])) for s in tail])
    else:
        rss = fds = None
    res.metrics["soak.rss_slope_kib_per_min"] = round(rss, 3) if rss is not None else None
    res.metrics["soak.fd_slope_per_min"] = round(fds, 4) if fds is not None else None
    res.analysis["slopes"] = {"rss_kib_per_min": res.metrics["soak.rss_slope_kib_per_min"],
                              "fds_per_min": res.metrics["soak.fd_slope_per_min"],
                              "rss_kib_start": samples.get("rss_kib_start"),
                              "rss_kib_end": samples.get("rss_kib_end"),
                              "fds_start": samples.get("fds_start"),
                              "fds_end": samples.get("fds_end")}
    fd_growth = (samples.get("fds_end") or 0) - (samples.get("fds_start") or 0)
    res.check("soak: file descriptors not growing (end - start)", fd_growth, "<=", 3)
    res.check("soak: RSS slope KiB/min (no leak)", rss, "<", 256.0, scope="full",
              note="measured after the first fifth of the run")
