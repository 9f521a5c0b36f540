"""Scenario 4, overload and recovery.

1. *Shedding.* An open-loop probe at ``probe_rate``, far above what the server admits
   (echo with ``delay_ms``, so capacity is set by the in-flight caps, not by the CPU of
   this machine), measures the accepted rate = capacity. (Not a closed loop: there every
   fast rejection would immediately trigger the next request, a reject storm that eats
   the server's CPU and understates capacity.) Then an open loop at ``overload_factor`` x
   capacity: the server must answer the excess with fast "busy" errors (JSON-RPC -32001)
   while the latency of accepted requests stays bounded; then a lower rate must be served
   cleanly again.
2. *Circuit breaker* (needs ``--allow-admin``): ``chat`` traffic while ``admin/provider``
   sets ``failure_rate`` 1.0 and later back to 0.0; the timeline must show
   ``tool:circuit_open`` errors and then successes again. A probe thread measures how long
   the breaker takes to close after the provider is healthy.
3. *Restart* (needs the server started by the instrument): closed-loop traffic with
   reconnecting clients while the server is stopped (SIGTERM) and started again on the
   same port, ``restarts`` times; traffic must resume and every client reconnect after
   each. Each restart is one sample of the resume time (timeline buckets of
   ``RESUME_BUCKET_S``).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from .. import protocol as P
from ..profiles import OverloadRecovery
from ..protocol import default_call, tool_call
from ..result import ScenarioResult
from ..runner import Action, Runner

#: Resolution of the resume time after a restart (the phase's timeline bucket).
RESUME_BUCKET_S = 0.05


def _timeline_ok_after(phase: dict[str, Any], t_s: float,
                       until_s: float = float("inf")) -> tuple[int, float | None]:
    """Successes in timeline buckets starting in [t_s, until_s), and the first such
    bucket's start."""
    rows = phase.get("timeline", {}).get("rows", [])
    ok = 0
    first = None
    for t, counts in rows:
        if t_s <= t < until_s and counts.get("ok"):
            ok += counts["ok"]
            if first is None:
                first = t
    return ok, first


def shedding(runner: Runner, p: OverloadRecovery, res: ScenarioResult) -> None:
    """probe -> overload -> recover."""
    call = tool_call("echo", {"delay_ms": p.delay_ms})
    probe = res.add_phase(runner.run(runner.spec(
        "probe", "open", p.connections, call, p.probe_s, warmup_s=0.5,
        rate=p.probe_rate)))
    capacity = probe["throughput_msg_s"]
    res.analysis["capacity_msg_s"] = capacity
    res.metrics["probe.capacity_msg_s"] = capacity
    busy_in_probe = probe["errors"].get(P.KIND_BUSY, 0)
    res.analysis["probe_busy_rejections"] = busy_in_probe
    if busy_in_probe == 0:
        res.notes.append(f"the probe at {p.probe_rate:g} msg/s was not rejected: capacity is "
                         "at least that (raise probe_rate or lower --max-inflight)")
    if capacity <= 0:
        res.check("probe: server accepted requests", capacity, ">", 0.0)
        return
    over = res.add_phase(runner.run(runner.spec(
        "overload", "open", p.connections, call, p.overload_s, warmup_s=0.5,
        rate=capacity * p.overload_factor, arrival="poisson", timeline_bucket_s=0.5)))
    busy = over["errors"].get(P.KIND_BUSY, 0)
    answered = over["requests"]["ok"] + over["requests"]["failed"]
    other = over["requests"]["failed"] - busy
    res.metrics["overload.busy_fraction"] = round(busy / answered, 4) if answered else None
    res.metrics["overload.reject_p99_ms"] = over["error_latency_ms"]["p99"]
    # overload's error replies are the busy rejections (checked just below)
    if len(over["slices"].get("error_p99_ms") or []) >= 2:
        res.metric_samples["overload.reject_p99_ms"] = over["slices"]["error_p99_ms"]
    res.check("overload: server sheds load with busy errors (-32001)", busy, ">", 0)
    res.check("overload: no other errors than busy (timeouts, closes)", other, "==", 0)
    res.check("overload: busy rejections are fast (p99 ms)", over["error_latency_ms"]["p99"],
              "<", 250.0, note="generous CI bound (shared 2-core machine)")
    res.check("overload: accepted latency bounded (p99 ms)", over["latency_ms"]["p99"], "<",
              p.delay_ms + 500.0, note=f"echo delay is {p.delay_ms:g} ms")
    res.check("overload: accepted latency p99 within 2x the delay (ms)",
              over["latency_ms"]["p99"], "<", 2 * p.delay_ms + 20, scope="full")
    res.check("overload: accepted rate near capacity (ratio)",
              over["throughput_msg_s"] / capacity, ">=", 0.5)
    rec = res.add_phase(runner.run(runner.spec(
        "recover", "open", p.connections, call, p.recover_s, warmup_s=0.5,
        rate=capacity * p.recover_factor, arrival="poisson")))
    res.check("recover: error fraction after overload", rec["requests"]["error_fraction"],
              "<=", 0.01)
    res.check("recover: latency back to normal (p99 ms)", rec["latency_ms"]["p99"], "<",
              p.delay_ms + 250.0)


def breaker(runner: Runner, p: OverloadRecovery, res: ScenarioResult) -> None:
    """Inject provider failures with admin/provider and watch the breaker open and close."""
    try:
        reply = runner.call("admin/provider", {"provider": "glm"})
    except Exception as exc:
        res.notes.append(f"breaker skipped: admin call failed ({type(exc).__name__}: {exc})")
        return
    if "error" in reply:
        res.notes.append(f"breaker skipped: admin/provider not available ({reply['error']}); "
                         "start the server with --allow-admin")
        return
    original = reply.get("result", {})
    chat = default_call("chat")
    state: dict[str, Any] = {}

    def inject(_stop: threading.Event) -> dict[str, Any]:
        r = runner.call("admin/provider", {"provider": "glm", "failure_rate": 1.0})
        return {"failure_rate": 1.0, "reply": r.get("result", r.get("error"))}

    def heal(stop: threading.Event) -> dict[str, Any]:
        r = runner.call("admin/provider", {"provider": "glm", "failure_rate": 0.0})
        healed = time.perf_counter()
        # probe until a chat call succeeds again (the breaker closed), then 1 s more load
        recovered = None
        deadline = healed + p.breaker_max_s
        while time.perf_counter() < deadline and not stop.is_set():
            try:
                probe = runner.call("tools/call", chat.params)
                if P.classify(probe, chat) is None:
                    recovered = time.perf_counter()
                    break
            except Exception:  # server busy or a hiccup: probe again
                pass
            time.sleep(0.1)
        state["recovery_s"] = round(recovered - healed, 3) if recovered else None
        if recovered is not None:
            stop.wait(1.0)
        stop.set()
        return {"failure_rate": 0.0, "reply": r.get("result", r.get("error")),
                "breaker_closed_after_s": state["recovery_s"]}

    heal_at = p.breaker_fail_after_s + p.breaker_fail_for_s
    ph = res.add_phase(runner.run(
        runner.spec("breaker", "open", 4, chat, p.breaker_max_s + heal_at + 2,
                    rate=p.breaker_rate, arrival="poisson", timeline_bucket_s=0.5,
                    timeout_s=5.0),
        actions=[Action(p.breaker_fail_after_s, "inject_failure", inject),
                 Action(heal_at, "heal", heal)]))
    try:  # leave the provider as it was
        runner.call("admin/provider", {"provider": "glm", **{
            k: v for k, v in original.items() if k in ("failure_rate", "latency_ms",
                                                        "spread_ms")}})
    except Exception as exc:
        res.notes.append(f"could not restore provider settings: {exc}")
    opened = ph["errors"].get(P.KIND_CIRCUIT_OPEN, 0)
    heal_t = next((e["t_s"] for e in ph["events"] if e["name"] == "heal"), None)
    ok_after, _ = _timeline_ok_after(ph, heal_t if heal_t is not None else 1e9)
    res.metrics["breaker.close_after_heal_s"] = state.get("recovery_s")
    res.analysis["breaker"] = {"circuit_open_errors": opened,
                               "provider_errors": ph["errors"].get(P.KIND_TOOL_ERROR, 0),
                               "closed_after_heal_s": state.get("recovery_s"),
                               "ok_after_heal": ok_after}
    res.check("breaker: circuit opened under provider failures (circuit_open errors)",
              opened, ">", 0)
    res.check("breaker: closed again after the provider healed (s)", state.get("recovery_s"),
              "<", p.breaker_max_s)
    res.check("breaker: traffic succeeds after healing (ok replies)", ok_after, ">", 0)


def restart(runner: Runner, p: OverloadRecovery, res: ScenarioResult) -> None:
    """Restart the managed server mid-run, ``restarts`` times; clients reconnect and
    traffic resumes after each. Every restart is one sample of the resume time."""
    if not runner.target.managed:
        res.notes.append("restart skipped: needs --server-python (the instrument must own "
                         "the server process)")
        return
    one_at_a_time = threading.Lock()  # actions run on their own threads

    def do_restart(_stop: threading.Event) -> dict[str, Any]:
        with one_at_a_time:
            info = runner.restart_server()
        info["ready_at_rel"] = info.pop("ready_at")
        info.pop("stopped_at", None)
        return info

    n = p.restart_connections
    ph = res.add_phase(runner.run(
        runner.spec("restart", "closed", n, default_call("echo"), p.restart_s, inflight=2,
                    reconnect=True, timeline_bucket_s=RESUME_BUCKET_S, timeout_s=3.0,
                    connect_timeout_s=3.0),
        actions=[Action(p.restart_at_s + k * p.restart_every_s, "restart", do_restart)
                 for k in range(p.restarts)]))
    events = sorted((e for e in ph["events"] if e["name"] == "restart"),
                    key=lambda e: e.get("t_s", 0.0))
    failed = [e for e in events if "error" in e]
    if failed or not events:
        res.check("restart: server restarted", 0, ">", 0,
                  note=str(failed[0]["error"]) if failed else "no restart happened")
        return
    resumes: list[float | None] = []
    ok_after = 0
    for i, ev in enumerate(events):
        # t of the restart event is when SIGTERM was sent; ready = + stop_s + start_s
        ready_t = ev.get("t_s", 0.0) + ev.get("stop_s", 0.0) + ev.get("start_s", 0.0)
        until = events[i + 1]["t_s"] if i + 1 < len(events) else float("inf")
        ok_after, first_ok = _timeline_ok_after(ph, ready_t, until)
        # the bucket's start may precede ready_t by up to one bucket: clamp at 0
        resumes.append(max(0.0, round(first_ok - ready_t, 3)) if first_ok is not None
                       else None)
    measured = [r for r in resumes if r is not None]
    downtimes = [round(e.get("stop_s", 0) + e.get("start_s", 0), 3) for e in events]
    res.metrics["restart.resume_after_ready_s"] = (
        statistics.median(measured) if len(measured) == len(resumes) else None)
    res.metrics["restart.downtime_s"] = statistics.median(downtimes)
    if len(measured) >= 2:
        res.metric_samples["restart.resume_after_ready_s"] = measured
        res.metric_samples["restart.downtime_s"] = downtimes
    reconnects = ph["connections"]["opened"] - n
    res.analysis["restart"] = {"events": events, "resume_after_ready_s": resumes,
                               "downtime_s": downtimes, "reconnects": reconnects,
                               "resolution_s": RESUME_BUCKET_S}
    res.check("restart: server exited cleanly on SIGTERM (exit codes)",
              max(abs(e.get("exit_code") or 0) for e in events), "==", 0)
    res.check(f"restart: restarted {p.restarts} times", len(events), "==", p.restarts)
    res.check("restart: traffic resumed after the last restart (ok replies)", ok_after,
              ">", 0)
    res.check("restart: every client reconnected after every restart", reconnects, ">=",
              n * len(events))
    res.check("restart: traffic resumed within 5 s of the server being ready (s, worst)",
              max(measured) if len(measured) == len(resumes) else None, "<", 5.0)


def run(runner: Runner, p: OverloadRecovery, res: ScenarioResult) -> None:
    """Shedding, breaker, restart (each skipped with a note when the target can't)."""
    shedding(runner, p, res)
    breaker(runner, p, res)
    restart(runner, p, res)
