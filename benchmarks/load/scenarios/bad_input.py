"""Bad input under load (issue 19): do well-behaved clients notice an attacker?

Phases, all the same open-loop (Poisson) load of well-behaved clients: ``unloaded_1``,
``attacked_1``, ``unloaded_2`` (``rounds`` attacked phases, each followed by an unloaded
one). During each attacked phase a separate attacker process (benchmarks/load/attack.py)
sends the bad-input corpus: malformed and over-deep JSON, huge ids, wrong types in every
field, binary frames, floods of unknown methods, oversized frames, invalid UTF-8,
clients that never read, half-open connections. Interleaving measures the attacked p99
against unloaded phases of the *same* run, on either side of it, so a host slowdown
minutes apart cannot pass for (or hide) an effect of the attack.

Figures: the good clients' p99 unloaded and attacked (HDR histograms of the phases
merged) and their ratio (the plan: within 2x); the server's RSS before, at the peak and
after; what the attacker saw (every corpus frame's answer checked against the wire
contract, closes by code, how long the server took to cut non-readers and half-open
connections) and what the server counted (``connections.rejected_by_reason`` deltas).

On a shared host a latency ratio can be the neighbours' doing: the attack raises the
server's CPU demand, and a core shared with other busy processes may not grant it. So
every phase also records, from the kernel's scheduler statistics of the server process
(``/proc/PID/schedstat``), the share of the phase it spent running and the share it
spent runnable but waiting for a CPU: a high wait share in the attacked phases says the
ratio measured the host, not the server.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from .. import histogram as H
from ..attack import Attack, AttackSpec
from ..profiles import BadInput
from ..protocol import default_call
from ..result import ScenarioResult
from ..runner import Action, Runner
from ..server_process import http_base

#: What the instrument starts the server with: a short send timeout so non-readers are
#: cut within a phase, and the frame limit the oversized frames are sized against.
SEND_TIMEOUT_S = 2.0
SERVER_ARGS: tuple[tuple[str, ...], ...] = (
    ("--send-timeout", f"{SEND_TIMEOUT_S:g}"),
    ("--max-frame-bytes", str(BadInput().max_frame_bytes)),
)


def _server_metrics(runner: Runner) -> dict[str, Any] | None:
    """``/api/metrics`` of the target (None when it has none)."""
    try:
        with urllib.request.urlopen(http_base(runner.target.url) + "/api/metrics",
                                    timeout=5) as r:
            doc: dict[str, Any] = json.loads(r.read())
            return doc
    except Exception:
        return None


def _closed_by_server(before: dict[str, Any] | None,
                      after: dict[str, Any] | None) -> dict[str, int] | None:
    """Connections the server refused or cut between two readings, by reason."""
    if before is None or after is None:
        return None
    old = before["connections"]["rejected_by_reason"]
    new = after["connections"]["rejected_by_reason"]
    return {k: new[k] - old.get(k, 0) for k in sorted(new) if new[k] - old.get(k, 0)}


def _schedstat(pid: int | None) -> tuple[float, float, float] | None:
    """(wall, CPU run, run-queue wait) seconds of ``pid`` now; None off Linux."""
    try:
        run_ns, wait_ns, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return time.monotonic(), int(run_ns) / 1e9, int(wait_ns) / 1e9


def _cpu_shares(before: tuple[float, float, float] | None,
                after: tuple[float, float, float] | None) -> dict[str, float] | None:
    """Shares of a phase's wall time the server ran, and waited for a CPU."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    wall = after[0] - before[0]
    return {"running": round((after[1] - before[1]) / wall, 3),
            "waiting_for_cpu": round((after[2] - before[2]) / wall, 3)}


def _merged_p99(phases: list[dict[str, Any]]) -> float | None:
    hist = H.new_histogram()
    for ph in phases:
        H.merge_into(hist, ph["histograms"]["latency_us"])
    return H.summary_ms(hist)["p99"]  # type: ignore[no-any-return]


def _attack_spec(runner: Runner, p: BadInput, index: int) -> AttackSpec:
    return AttackSpec(
        url=runner.target.url, token=runner.target.token,
        duration_s=p.warmup_s + p.phase_s, seed=p.seed * 10 + index, rate=p.attack_rate,
        connections=p.attack_connections, flood_rate=p.flood_rate,
        oversized_per_s=p.oversized_per_s, max_frame_bytes=p.max_frame_bytes,
        invalid_utf8=p.invalid_utf8, non_readers=p.non_readers, half_open=p.half_open,
        grace_s=p.grace_s, watch_half_open=p.watch_half_open)


def run(runner: Runner, p: BadInput, res: ScenarioResult) -> None:
    """unloaded, (attacked, unloaded) x rounds; then the figures and the checks."""
    call = default_call(p.tool)
    unloaded: list[dict[str, Any]] = []
    attacked: list[dict[str, Any]] = []
    attacks: list[dict[str, Any]] = []
    shares: dict[str, dict[str, float] | None] = {}
    for i in range(2 * p.rounds + 1):
        n = i // 2 + 1
        kind = "unloaded" if i % 2 == 0 else "attacked"
        spec = runner.spec(f"{kind}_{n}", "open", p.connections, call, p.phase_s,
                           warmup_s=p.warmup_s, rate=p.rate, arrival="poisson")
        attack = Attack(_attack_spec(runner, p, n)) if kind == "attacked" else None
        before = None
        if attack is not None:
            attack.start()
            before = _server_metrics(runner)

        def act(stop: Any, attack: Attack | None = attack) -> dict[str, Any]:
            """From the first send to the end of the phase: the attack, the CPU shares."""
            if attack is not None:
                attack.go()
            sched = _schedstat(runner.target.pid)
            stop.wait(p.warmup_s + p.phase_s + 60)  # set when the phase is over
            out: dict[str, Any] = {"cpu": _cpu_shares(sched, _schedstat(runner.target.pid))}
            if attack is not None:
                out["attack"] = attack.finish()
            return out

        ph = res.add_phase(runner.run(spec, actions=[Action(0.0, kind, act)]))
        event: dict[str, Any] = next((e for e in ph["events"] if e["name"] == kind), {})
        shares[ph["name"]] = event.get("cpu")
        if attack is None:
            unloaded.append(ph)
            continue
        attacked.append(ph)
        seen = event.get("attack")
        attacks.append({"phase": ph["name"], "attacker": seen or {"error": "no result"},
                        "server_closed": _closed_by_server(before, _server_metrics(runner))})
    res.analysis["server_cpu_shares"] = shares
    _figures(runner, p, res, unloaded, attacked, attacks)
    waits = [v["waiting_for_cpu"] for k, v in shares.items() if v and k.startswith("attacked")]
    if waits and max(waits) > 0.2:
        res.notes.append(f"the server waited for a CPU {max(waits):.0%} of an attacked phase "
                         "(other processes on its core): its p99 ratio measures the host too")


def _figures(runner: Runner, p: BadInput, res: ScenarioResult, unloaded: list[dict[str, Any]],
             attacked: list[dict[str, Any]], attacks: list[dict[str, Any]]) -> None:
    p99_u = _merged_p99(unloaded)
    p99_a = _merged_p99(attacked)
    ratio = round(p99_a / p99_u, 3) if p99_u and p99_a else None
    res.metrics["bad_input.unloaded_p99_ms"] = p99_u
    res.metrics["bad_input.attacked_p99_ms"] = p99_a
    res.metrics["bad_input.p99_ratio"] = ratio
    # one ratio per round, against the unloaded phases on either side of it
    per_round = []
    for k, ph in enumerate(attacked):
        around = [unloaded[k]["latency_ms"]["p99"], unloaded[k + 1]["latency_ms"]["p99"]]
        if ph["latency_ms"]["p99"] and all(around):
            per_round.append(round(ph["latency_ms"]["p99"] / (sum(around) / 2), 3))
    if len(per_round) >= 2:
        res.metric_samples["bad_input.p99_ratio"] = per_round
    rss = _rss_mib(runner, unloaded[0], unloaded[-1])
    res.metrics["bad_input.rss_peak_growth_mib"] = rss.get("peak_growth")
    res.analysis["p99_ms"] = {"unloaded": p99_u, "attacked": p99_a, "ratio": ratio,
                              "ratio_per_round": per_round,
                              "by_phase": {ph["name"]: ph["latency_ms"]["p99"]
                                           for ph in sorted(unloaded + attacked,
                                                            key=lambda x: x["name"])}}
    res.analysis["rss_mib"] = rss
    res.analysis["attacks"] = attacks
    res.analysis["good_client_errors"] = {ph["name"]: ph["errors"] for ph in unloaded + attacked}

    for ph in unloaded + attacked:
        res.check(f"{ph['name']}: good clients' error fraction", ph["requests"]["error_fraction"],
                  "==", 0.0, note="the server keeps serving them")
        res.check(f"{ph['name']}: good clients answered", ph["latency_ms"]["count"], ">", 0)
    res.check("attacked p99 within 2x unloaded (ratio)", ratio, "<=", 2.0, scope="full",
              note="same run, interleaved phases")
    res.check("attacked p99 ms (sanity)", p99_a, "<", 1000.0,
              note="generous CI bound (shared 2-core machine)")
    res.check("server RSS peak growth MiB (bounded)", rss.get("peak_growth"), "<", 512.0,
              note="generous CI bound")
    for a in attacks:
        _attack_checks(res, p, a)


def _attack_checks(res: ScenarioResult, p: BadInput, a: dict[str, Any]) -> None:
    name = a["phase"]
    seen = a["attacker"]
    if "error" in seen:
        res.check(f"{name}: attacker ran", 0, ">", 0, note=str(seen["error"])[:300])
        return
    for part in ("corpus", "flood"):
        tally = seen[part]
        res.check(f"{name}: {part} frames sent", tally.get("sent", 0), ">", 0)
        res.check(f"{name}: {part} answers not per the contract", tally.get("wrong", 0), "==", 0,
                  note="; ".join(tally.get("wrong_examples", []))[:300])
        res.check(f"{name}: {part} frames left unanswered", tally.get("unanswered", 0), "==", 0)
    over = seen["oversized"]
    res.check(f"{name}: oversized frames closed with 1009 (all)", over.get("closed:1009", 0),
              "==", over.get("sent", 0) or -1)
    utf8 = seen["invalid_utf8"]
    res.check(f"{name}: invalid UTF-8 closed with 1007 (all)", utf8.get("closed:1007", 0), "==",
              utf8.get("sent", 0) or -1)
    nr = seen["non_readers"]
    res.check(f"{name}: non-reading clients cut by the server (all that blocked it)",
              nr.get("closed_by_server", 0), "==", nr.get("blocked", 0) or -1,
              note=f"within {p.grace_s:g} s after the phase (server --send-timeout)")
    ho = seen["half_open"]
    res.check(f"{name}: half-open connections closed by the server",
              ho.get("closed_by_server", 0), "==", ho.get("opened", 0), scope="info",
              note="websockets' opening-handshake timeout: 10 s")


def _rss_mib(runner: Runner, first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """Server RSS (MiB) at the start of the first phase, its peak over the whole run
    (grace periods included), and at the end of the last phase."""
    sampler = runner.sampler
    start = first.get("server", {}).get("rss_kib_start")
    end = last.get("server", {}).get("rss_kib_end")
    if sampler is None or start is None:
        return {}
    peak = max(s[3] for s in sampler.samples) / 2**20
    out = {"before": round(start / 1024, 1), "peak": round(peak, 1),
           "after": round(end / 1024, 1) if end is not None else None}
    out["peak_growth"] = round(peak - start / 1024, 1)
    return out
