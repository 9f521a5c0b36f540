"""Scenario 5, soak: steady open-loop load for a long time; RSS and fd growth with a verdict.

The growth rates are least-squares fits over the server's samples after the warm-up (the
first ``skip_fraction`` of the window is left out too: caches, pools and the allocator
grow there for legitimate reasons), with a 95 % interval (benchmarks/load/leak.py). They
are expressed per message served — KiB per 1000 messages, fds per 100 000 — because a
leak is paid per request: a per-minute slope would change with the offered rate.

The verdict says "leak" when the interval lies above half the profile's leak size,
"no leak" when it lies below, and "cannot tell" when the run was too short or too noisy
to resolve that size (smoke and quick soaks usually cannot; the full profile's hour can).
"""

from __future__ import annotations

from ..leak import CANNOT_TELL, SlopeFit, describe, fit_slope, verdict
from ..profiles import Soak
from ..protocol import default_call
from ..resources import slope_per_min
from ..result import ScenarioResult
from ..runner import Runner


def run(runner: Runner, p: Soak, res: ScenarioResult) -> None:
    """One long open-loop phase, then the growth fits and their verdicts."""
    ph = res.add_phase(runner.run(runner.spec(
        "soak", "open", p.connections, default_call(p.tool), p.duration_s,
        warmup_s=p.warmup_s, rate=p.rate, arrival="poisson")))
    res.check("soak: error fraction", ph["requests"]["error_fraction"], "<=", 0.0)
    achieved = (ph.get("achieved_rate_msg_s") or 0) / p.rate
    res.check("soak: achieved rate / target", achieved, ">=", 0.95, scope="full")
    rates = ph.get("slices", {}).get("msg_s") or []
    shortfall = round(max(0.0, 1 - min(rates) / p.rate), 5) if rates else None
    res.metrics["soak.throughput_shortfall"] = shortfall
    res.check("soak: sustained rate, worst slice / target", 1 - shortfall
              if shortfall is not None else None, ">=", 0.95, scope="full",
              note=f"{len(rates)} slices of the window")
    res.check("soak: server CPU % (plan: < 80 % under load)",
              ph.get("server", {}).get("cpu_percent_mean"), "<", 80.0, scope="full")
    sampler = runner.sampler
    if sampler is None:
        res.notes.append("no server PID: growth not measured")
        return
    samples = ph.get("server", {})
    window = sampler.window(*runner.last_window)
    msg_s = ph.get("throughput_msg_s") or 0.0
    rss_fit = fds_fit = None
    rss = fds = None
    if len(window) >= 3:
        t_start, t_end = window[0][0], window[-1][0]
        cut = t_start + (t_end - t_start) * p.skip_fraction
        tail = [s for s in window if s[0] >= cut]
        rss_pts = [(s[0], s[3] / 1024) for s in tail]
        fd_pts = [(s[0], float(s[4])) for s in tail]
        rss = slope_per_min(rss_pts)
        fds = slope_per_min(fd_pts)
        if msg_s > 0:
            rss_fit = _per_messages(fit_slope(rss_pts, blocks=p.blocks), msg_s, 1000)
            fds_fit = _per_messages(fit_slope(fd_pts, blocks=p.blocks), msg_s, 100_000)
    res.metrics["soak.rss_slope_kib_per_min"] = round(rss, 3) if rss is not None else None
    res.metrics["soak.fd_slope_per_min"] = round(fds, 4) if fds is not None else None
    for name, fit in (("rss_kib_per_1000_msg", rss_fit), ("fds_per_100k_msg", fds_fit)):
        res.metrics[f"soak.{name}"] = _r(fit.slope if fit else None)
        res.metrics[f"soak.{name}_hi"] = _r(fit.hi if fit else None)
    rss_text = describe(rss_fit, p.leak_kib_per_1000_msg, "KiB per 1000 messages")
    fds_text = describe(fds_fit, p.leak_fds_per_100k_msg, "fds per 100000 messages")
    res.analysis["slopes"] = {"rss_kib_per_min": res.metrics["soak.rss_slope_kib_per_min"],
                              "fds_per_min": res.metrics["soak.fd_slope_per_min"],
                              "rss_kib_start": samples.get("rss_kib_start"),
                              "rss_kib_end": samples.get("rss_kib_end"),
                              "fds_start": samples.get("fds_start"),
                              "fds_end": samples.get("fds_end")}
    res.analysis["leak"] = {
        "rss": _fit_json(rss_fit, p.leak_kib_per_1000_msg, "KiB/1000 msg"),
        "fds": _fit_json(fds_fit, p.leak_fds_per_100k_msg, "fds/100k msg"),
        "msg_s": msg_s}
    res.notes.append(f"memory: {rss_text}")
    res.notes.append(f"file descriptors: {fds_text}")
    fd_growth = (samples.get("fds_end") or 0) - (samples.get("fds_start") or 0)
    res.check("soak: file descriptors not growing (end - start)", fd_growth, "<=", 3)
    res.check("soak: RSS growth, upper 95 % bound (KiB per 1000 messages)",
              rss_fit.hi if rss_fit else None, "<", p.leak_kib_per_1000_msg / 2,
              scope="full", note=rss_text)
    res.check("soak: fd growth, upper 95 % bound (fds per 100000 messages)",
              fds_fit.hi if fds_fit else None, "<", p.leak_fds_per_100k_msg / 2,
              scope="full", note=fds_text)


def _per_messages(fit: SlopeFit | None, msg_s: float, per: int) -> SlopeFit | None:
    """A per-second fit as growth per ``per`` messages at ``msg_s`` messages per second."""
    return fit.scaled(per / msg_s) if fit is not None else None


def _r(x: float | None) -> float | None:
    return round(x, 5) if x is not None else None


def _fit_json(fit: SlopeFit | None, size: float, unit: str) -> dict[str, object]:
    if fit is None:
        return {"verdict": CANNOT_TELL, "unit": unit, "leak_size": size}
    return {"verdict": verdict(fit, size), "unit": unit, "leak_size": size,
            "boundary": size / 2, "estimate": _r(fit.slope), "lo": _r(fit.lo),
            "hi": _r(fit.hi), "se": _r(fit.se), "points": fit.points, "r1": fit.r1,
            "dof": fit.dof, "span_s": round(fit.span_s, 1)}
