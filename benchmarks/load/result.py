"""The result document of one instrument run (JSON) and its human table.

Schema ``benchmarks.load/1``: the contract with the asv wrappers (``benchmarks/*.py``),
which run ``python -m benchmarks.load ... --json PATH`` and read this document. Fields are
only ever *added* under the same schema string; a rename or a change of meaning bumps it.

Top level::

    schema        "benchmarks.load/1"
    scenario      load_performance | concurrent_connections | end_to_end_latency |
                  overload_recovery | soak | bad_input | adhoc
    profile       smoke | quick | full
    started_at    ISO-8601 UTC;  elapsed_s: wall seconds of the whole run
    passed        true when every criterion with scope "ci" (or "full" when the run was
                  asked to enforce full criteria) passed
    settings      the command line / programmatic settings (url, workers, server_python,
                  server_args, profile parameters); the token itself is never written
    machine       hostname, platform, cpu_model, cpu_count, cpu_affinity, mem_total_mib,
                  load_avg_1m
    versions      instrument, python, websockets, uvloop, hdrhistogram, psutil, server
    server        url, pid, managed (started by the instrument), starts, health (/health),
                  cpu_clock
    metrics       FLAT map "<name>" -> number or null: the figures asv tracks, all in
                  lower-is-better units (see below)
    metric_samples  map "<phase>.<figure>" -> [numbers]: the same figure measured in each
                  of the phase's equal sub-windows ("slices", 10 by default), i.e.
                  repeated samples for asv's statistics; figures: msg_s, us_per_msg,
                  p50_ms, p95_ms, p99_ms, server_cpu_us_per_msg (the latter only when a
                  slice lasts >= 0.4 s, the server being sampled every 0.1 s),
                  error_p99_ms (error replies)
    phases        list of PHASE (below), in run order
    analysis      scenario-specific derived findings (e.g. degradation per client step)
    criteria      list of {name, value, op, limit, passed, scope, note}; scope "ci"
                  (asserted in CI), "full" (the plan's target, asserted with E2E_FULL=1)
                  or "info"
    samples       server resource samples of the whole run: {"columns": ["t_s",
                  "cpu_user_s", "cpu_sys_s", "rss_kib", "fds", "threads", "cpu_s"],
                  "rows": [...]} (t relative to the run start, CPU cumulative; user/sys
                  in 10 ms ticks, cpu_s from the process CPU clock in ns, which every
                  CPU figure uses), every 0.1 s
    server.cpu_clock  "process-clock" (ns) or "ticks" (psutil fallback, 10 ms)
    notes         free-text remarks (e.g. "closed loop: latency from actual send")
    reference     null, or when the phases ran as duets against the reference server
                  (benchmarks/load/duet.py, reference.py): url, command, python, source
                  ("tree": the calibrated git tree, or "checkout"), tree, path, stale
                  (true: not the calibrated tree), warning, table (reference.toml),
                  table_error, calibrated (the table's [calibration] metadata), missing
                  ({"<phase>.<figure>": why}: figures with no nominal value, hence no
                  host-corrected figure)

PHASE::

    name, loop ("closed" | "open" | "churn"), settings (the PhaseSpec)
    window_s            measured span (warm-up excluded)
    requests            {sent, ok, failed, error_fraction, late_replies}; only requests
                        whose intended send time is in the window are counted; ``ok``
                        means matching id, no ``error``, ``isError`` false (and the echo
                        text unchanged for echo)
    errors              {kind: count} of failed requests: "rpc:<code>" (JSON-RPC error,
                        "rpc:-32001" = busy), "tool:error", "tool:circuit_open",
                        "timeout", "close:<code>" (lost when the connection closed),
                        "no_connection", "bad_response", "bad_result:..."
    connection_errors   {kind: count}: "connect:refused", "connect:timeout",
                        "connect:http_<status>", "init:...", "close:<code>" (unexpected
                        close of an open session), "unmatched_id"
    connections         {attempts, opened, failed, connect_wall_s (all initial sessions
                        open), failed_fraction}
    throughput_msg_s    ok / window_s;  us_per_msg = 1e6 / throughput_msg_s
    target_rate_msg_s   open loop only: asked rate;  achieved_rate_msg_s = issued / window_s
    latency_ms          successful requests {count, p50, p90, p95, p99, p99_9, min, mean,
                        max, outliers_over_1s}; open loop: from the intended send time
    error_latency_ms    same, for error replies (how fast "busy" rejections are)
    connect_ms          TCP + WebSocket handshake;  ready_ms: handshake + initialize
    send_lag_ms         open loop: actual minus intended send (generator saturation)
    histograms          HDR base64 (hdrhistogram ``encode``), µs: latency_us,
                        error_latency_us, connect_us, ready_us, send_lag_us ("" if empty)
    server              resources.summarize(): samples_n, wall_s, cpu_s,
                        cpu_percent_mean, cpu_percent_max, cpu_us_per_msg, rss_kib_start,
                        rss_kib_end, rss_kib_max, fds_start, fds_end, fds_max,
                        threads_max, rss_slope_kib_per_min, fd_slope_per_min
    generator           {cpu_s, cpu_percent (of one core, summed over workers),
                        cpu_us_per_msg (generator CPU per request sent, warm-up included;
                        1e6 / it = msg/s one generator core can drive), workers}
    timeline            when enabled: {bucket_s, rows: [[t_s, {kind: n}]]} (t relative to
                        the phase's first send; "ok" counts successes)
    events              actions run during the phase (restart, admin/provider) with "t_s"
    slices              {n, slice_s, msg_s: [...], us_per_msg: [...], p50_ms: [...],
                        p95_ms: [...], p99_ms: [...], server_cpu_us_per_msg: [...],
                        error_p99_ms: [...]}: one value per sub-window that had
                        successes (error_p99_ms: that had error replies); in a duet one
                        value per block of the target (server CPU over the rounds' spans)
    blocks              duet only (benchmarks/load/duet.py): per block of consecutive
                        round pairs, the target's rounds pooled: {ok, errors, window_s,
                        msg_s, us_per_msg, p50_ms, p95_ms, p99_ms, server_cpu_us_per_msg,
                        generator_cpu_us_per_msg, error_p99_ms}
    rounds              duet only: per round of the target {pair, t_s, wall_s, window_s, ok}
    duet                duet only: {pairs, blocks, round_s, settle_s, order "ABBA",
                        reference: {url, requests, errors, connection_errors, connections,
                        throughput_msg_s, us_per_msg, latency_ms, server, generator,
                        blocks, rounds}} (the reference's side, same shapes)
    corrected           duet only: per figure {nominal, ratios (target/reference per
                        block), samples (nominal x ratio), value (their median)} or
                        {missing: why}

metrics names: "<phase>.<figure>" with figure in msg_s (higher is better: the only one),
us_per_msg, p50_ms, p90_ms, p95_ms, p99_ms, p99_9_ms, max_ms, error_fraction,
outliers_over_1s, connect_p50_ms, connect_p99_ms, server_cpu_us_per_msg,
server_cpu_percent, server_cpu_relative (server CPU per message / generator CPU per
message: see relative_cpu(); also in metric_samples, per slice over the phase's
generator figure); plus scenario figures named in each scenario module (e.g.
"rapid.connect_wall_ms", "hold.rss_kib_per_connection", "churn.fd_delta",
"soak.rss_slope_kib_per_min"); in a duet "<phase>.corrected_<figure>" (the host-corrected
p50_ms, p95_ms, p99_ms and, closed loop, us_per_msg: median of the round samples, which
are in metric_samples).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import histogram as H
from . import resources as R
from .recorder import Recorder
from .spec import PhaseSpec

SCHEMA = "benchmarks.load/1"
#: host-corrected figures are named "<phase>.corrected_<figure>"
CORRECTED_PREFIX = "corrected_"
PHASE_FIGURES = ("msg_s", "us_per_msg", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms",
                 "max_ms", "error_fraction", "outliers_over_1s", "connect_p50_ms",
                 "connect_p99_ms", "server_cpu_us_per_msg", "server_cpu_percent",
                 "server_cpu_relative")


def _finite(x: float) -> float | None:
    return x if x not in (float("inf"), float("-inf")) and x == x else None


def build_phase(spec: PhaseSpec, wire: dict[str, Any],
                sampler: R.ResourceSampler | None,
                events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Turn a phase's merged wire form + server samples into its PHASE document."""
    rec = Recorder()
    rec.merge_wire(wire)
    ws = wire["window_start"]
    we = min(wire["window_end"], wire.get("send_stopped", wire["window_end"]))
    # 0 when the phase never reached its window (stopped during warm-up, nothing connected)
    window = we - ws if _finite(ws) is not None and _finite(we) is not None and we > ws \
        else 0.0
    failed = sum(rec.errors.values())
    answered = rec.ok + failed
    thr = rec.ok / window if window else 0.0
    go = wire.get("go", ws)
    conn_failed = rec.connect_attempts - rec.connects_ok
    out: dict[str, Any] = {
        "name": spec.name,
        "loop": spec.loop,
        "settings": spec.settings(),
        "window_s": round(window, 4),
        "requests": {
            "sent": rec.sent, "ok": rec.ok, "failed": failed,
            "error_fraction": round(failed / answered, 6) if answered else None,
            "late_replies": rec.late_replies,
        },
        "errors": dict(sorted(rec.errors.items())),
        "connection_errors": dict(sorted(rec.conn_errors.items())),
        "connections": {
            "attempts": rec.connect_attempts, "opened": rec.connects_ok,
            "failed": conn_failed,
            "failed_fraction": round(conn_failed / rec.connect_attempts, 6)
            if rec.connect_attempts else None,
            "connect_wall_s": round(wire.get("connect_wall_s", 0.0), 4),
        },
        "throughput_msg_s": round(thr, 2),
        "us_per_msg": round(1e6 / thr, 3) if thr > 0 else None,
        "latency_ms": H.summary_ms(rec.latency),
        "error_latency_ms": H.summary_ms(rec.error_latency),
        "connect_ms": H.summary_ms(rec.connect),
        "ready_ms": H.summary_ms(rec.ready),
        "send_lag_ms": H.summary_ms(rec.send_lag),
        "histograms": {
            "latency_us": H.encode(rec.latency),
            "error_latency_us": H.encode(rec.error_latency),
            "connect_us": H.encode(rec.connect),
            "ready_us": H.encode(rec.ready),
            "send_lag_us": H.encode(rec.send_lag),
        },
        "generator": {
            "cpu_s": round(rec.cpu_s, 3),
            "cpu_percent": round(100 * rec.cpu_s / max(1e-9, wire.get("phase_end", 0) - go), 1)
            if _finite(go) is not None else None,
            # generator CPU per request sent: 1e6 / this = what one generator core can drive
            "cpu_us_per_msg": round(rec.cpu_s * 1e6 / rec.sent, 2) if rec.sent else None,
            "workers": spec.workers,
        },
        "events": events or [],
    }
    if spec.loop == "closed":
        out["settings"]["note"] = "closed loop: latency from the actual send"
    if spec.loop == "open":
        out["target_rate_msg_s"] = spec.rate
        out["achieved_rate_msg_s"] = round(answered / window, 2) if window else 0.0
    if wire.get("worker_errors"):
        out["worker_errors"] = wire["worker_errors"]
    if sampler is not None and _finite(ws) is not None:
        samples = sampler.window(ws, max(we, ws))
        out["server"] = R.summarize(samples, rec.ok)
    else:
        samples = []
        out["server"] = {}
    out["slices"] = _slices(rec, ws, window, samples)
    if rec.timeline_bucket_s and _finite(go) is not None:
        b = rec.timeline_bucket_s
        rows = [[round(k * b - go, 3), dict(v)] for k, v in sorted(rec.timeline.items())]
        out["timeline"] = {"bucket_s": b, "rows": rows}
    return out


#: Figures that get one value per slice (``metric_samples``); error_p99_ms: latency of
#: error replies (busy rejections), for slices that had any.
SLICE_FIGURES = ("msg_s", "us_per_msg", "p50_ms", "p95_ms", "p99_ms", "server_cpu_us_per_msg",
                 "error_p99_ms")
#: Server CPU per slice needs slices spanning several 0.1 s samples, and enough 10 ms
#: clock ticks of CPU time (psutil's resolution) to be more than quantisation noise.
MIN_CPU_SLICE_S = 0.4


def _slices(rec: Recorder, ws: float, window: float,
            samples: list[R.Sample]) -> dict[str, Any]:
    """Per-slice figures: the repeated samples asv's statistics need (one phase, N values).

    Slices are equal sub-windows of the measured window by *intended* send time; a slice
    without successes contributes no latency value (never a misleading 0).
    """
    n = len(rec.slice_ok)
    if n == 0 or window <= 0 or not rec.ok:
        return {"n": 0}
    slice_s = window / n
    out: dict[str, Any] = {"n": n, "slice_s": round(slice_s, 4)}
    figs: dict[str, list[float]] = {k: [] for k in SLICE_FIGURES}
    series = R.cpu_series(samples) if slice_s >= MIN_CPU_SLICE_S else []
    for err in rec.slice_err_hists:
        if err.get_total_count():
            figs["error_p99_ms"].append(err.get_value_at_percentile(99) / 1000)
    for i in range(n):
        ok = rec.slice_ok[i]
        if ok == 0:
            continue
        hist = rec.slice_hists[i]
        figs["msg_s"].append(round(ok / slice_s, 2))
        figs["us_per_msg"].append(round(slice_s * 1e6 / ok, 3))
        figs["p50_ms"].append(hist.get_value_at_percentile(50) / 1000)
        figs["p95_ms"].append(hist.get_value_at_percentile(95) / 1000)
        figs["p99_ms"].append(hist.get_value_at_percentile(99) / 1000)
        if series:
            cpu = R.cpu_between(series, ws + i * slice_s, ws + (i + 1) * slice_s)
            if cpu is not None:
                figs["server_cpu_us_per_msg"].append(round(cpu * 1e6 / ok, 3))
    out.update(figs)
    return out


def relative_cpu(phase: dict[str, Any]) -> float | None:
    """Server CPU per message divided by the load generator's CPU per message.

    The generator is the one program that never changes between commits, and it runs at
    the same time as the server, on the other core of the same host. When the host
    slows both down (other tenants, the hyperthread sibling busy, frequency), both CPU
    times grow by about the same factor and the ratio stays: a reference workload
    measured for free. Dimensionless; lower is better.
    """
    gen = phase.get("generator", {}).get("cpu_us_per_msg")
    srv = phase.get("server", {}).get("cpu_us_per_msg")
    return round(srv / gen, 5) if gen and srv else None


def phase_metrics(phase: dict[str, Any]) -> dict[str, float | None]:
    """The flat asv figures of one phase (``<phase>.<figure>``)."""
    lat = phase["latency_ms"]
    server = phase.get("server", {})
    values: dict[str, float | None] = {
        "msg_s": phase["throughput_msg_s"],
        "us_per_msg": phase["us_per_msg"],
        "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p95_ms": lat["p95"],
        "p99_ms": lat["p99"], "p99_9_ms": lat["p99_9"], "max_ms": lat["max"],
        "error_fraction": phase["requests"]["error_fraction"],
        "outliers_over_1s": lat["outliers_over_1s"],
        "connect_p50_ms": phase["connect_ms"]["p50"],
        "connect_p99_ms": phase["connect_ms"]["p99"],
        "server_cpu_us_per_msg": server.get("cpu_us_per_msg"),
        "server_cpu_percent": server.get("cpu_percent_mean"),
        "server_cpu_relative": relative_cpu(phase),
    }
    return {f"{phase['name']}.{k}": v for k, v in values.items()}


@dataclass
class Criterion:
    """One check of the test plan: ``value op limit``; scope ci | full | info."""

    name: str
    value: float | None
    op: str
    limit: float
    scope: str = "ci"
    note: str = ""

    @property
    def passed(self) -> bool:
        """``None`` values (nothing measured) fail: a check that saw no data did not pass."""
        if self.value is None:
            return False
        return {"<": self.value < self.limit, "<=": self.value <= self.limit,
                ">": self.value > self.limit, ">=": self.value >= self.limit,
                "==": self.value == self.limit}[self.op]

    def to_json(self) -> dict[str, Any]:
        """JSON form with the verdict."""
        return {"name": self.name, "value": self.value, "op": self.op, "limit": self.limit,
                "passed": self.passed, "scope": self.scope, "note": self.note}


@dataclass
class ScenarioResult:
    """What a scenario returns; :func:`document` turns it into the JSON document."""

    scenario: str
    profile: str
    phases: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    analysis: dict[str, Any] = field(default_factory=dict)
    criteria: list[Criterion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    metric_samples: dict[str, list[float]] = field(default_factory=dict)
    #: "<phase>.<figure>" -> why it has no host-corrected figure (no nominal value)
    corrected_missing: dict[str, str] = field(default_factory=dict)

    def add_phase(self, phase: dict[str, Any]) -> dict[str, Any]:
        """Append a phase, its flat metrics, its per-slice samples and, for a duet, its
        host-corrected figures."""
        self.phases.append(phase)
        self.metrics.update(phase_metrics(phase))
        for fig, entry in phase.get("corrected", {}).items():
            if "missing" in entry:
                self.corrected_missing[f"{phase['name']}.{fig}"] = entry["missing"]
                continue
            key = f"{phase['name']}.{CORRECTED_PREFIX}{fig}"
            self.metrics[key] = entry["value"]
            if len(entry["samples"]) >= 2:
                self.metric_samples[key] = entry["samples"]
        sl = phase.get("slices", {})
        for fig in SLICE_FIGURES:
            values = sl.get(fig) or []
            if len(values) >= 2:
                self.metric_samples[f"{phase['name']}.{fig}"] = values
        gen = phase.get("generator", {}).get("cpu_us_per_msg")
        cpu = sl.get("server_cpu_us_per_msg") or []
        if gen and len(cpu) >= 2:
            self.metric_samples[f"{phase['name']}.server_cpu_relative"] = [
                round(v / gen, 5) for v in cpu]
        return phase

    def check(self, name: str, value: float | None, op: str, limit: float,
              scope: str = "ci", note: str = "") -> Criterion:
        """Record a criterion (evaluated, never raised: tests assert on the document)."""
        c = Criterion(name, value, op, limit, scope, note)
        self.criteria.append(c)
        return c


def check_reference(res: ScenarioResult, phase: dict[str, Any]) -> None:
    """In a duet, the reference must have answered everything: its rounds scale the
    host-corrected figures, and a failing reference would scale them by its failures."""
    other = phase.get("duet", {}).get("reference")
    if other is not None:
        res.check(f"{phase['name']}: reference error fraction",
                  other["requests"]["error_fraction"], "==", 0.0)


def document(res: ScenarioResult, *, started_at: float, elapsed_s: float,
             settings: dict[str, Any], machine: dict[str, Any], versions: dict[str, Any],
             server: dict[str, Any], samples: list[list[float]],
             enforce_full: bool = False,
             reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """The complete result document (schema ``benchmarks.load/1``)."""
    scopes = {"ci", "full"} if enforce_full else {"ci"}
    crit = [c.to_json() for c in res.criteria]
    return {
        "schema": SCHEMA,
        "scenario": res.scenario,
        "profile": res.profile,
        "started_at": _dt.datetime.fromtimestamp(started_at, _dt.UTC).isoformat(),
        "elapsed_s": round(elapsed_s, 3),
        "passed": all(c["passed"] for c in crit if c["scope"] in scopes),
        "settings": settings,
        "machine": machine,
        "versions": versions,
        "server": server,
        "metrics": res.metrics,
        "metric_samples": res.metric_samples,
        "phases": res.phases,
        "analysis": res.analysis,
        "criteria": crit,
        "samples": {"columns": ["t_s", "cpu_user_s", "cpu_sys_s", "rss_kib", "fds",
                                "threads", "cpu_s"], "rows": samples},
        "notes": res.notes,
        "reference": {**reference, "missing": dict(res.corrected_missing)}
        if reference is not None else None,
    }


def write_json(doc: dict[str, Any], path: str | Path) -> None:
    """Write the document (atomically: asv must never read half a file)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False))
    tmp.replace(p)


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(doc: dict[str, Any]) -> str:
    """The human table: one row per phase, then the criteria with PASS/FAIL."""
    head = (f"{'phase':<22} {'loop':<6} {'conn':>5} {'load':>8} {'msg/s':>9} {'p50':>7} "
            f"{'p95':>7} {'p99':>7} {'p99.9':>7} {'max':>8} {'err%':>6} {'srv cpu%':>8} "
            f"{'µs cpu/msg':>10} {'rss MiB':>7} {'gen cpu%':>8}  errors")
    lines = [f"scenario {doc['scenario']} / profile {doc['profile']} / "
             f"{doc['elapsed_s']:.1f}s / server {doc['server'].get('url', '?')} "
             f"/ latency in ms", head, "-" * len(head)]
    for ph in doc["phases"]:
        st = ph["settings"]
        if ph["loop"] == "closed":
            load = f"x{st['inflight']}"
        elif ph["loop"] == "open":
            load = f"{st['rate']:.0f}/s"
        else:
            load = "churn"
        lat = ph["latency_ms"]
        srv = ph.get("server", {})
        ef = ph["requests"]["error_fraction"]
        errs = dict(ph["errors"])
        for k, v in ph["connection_errors"].items():
            errs["conn " + k] = v
        top = ", ".join(f"{k}={v}" for k, v in sorted(errs.items(), key=lambda kv: -kv[1])[:3])
        rss = srv.get("rss_kib_max")
        lines.append(
            f"{ph['name'][:22]:<22} {ph['loop']:<6} {st['connections']:>5} {load:>8} "
            f"{_fmt(ph['throughput_msg_s'], 0):>9} {_fmt(lat['p50'], 2):>7} "
            f"{_fmt(lat['p95'], 2):>7} {_fmt(lat['p99'], 2):>7} {_fmt(lat['p99_9'], 2):>7} "
            f"{_fmt(lat['max'], 1):>8} {_fmt(100 * ef if ef is not None else None, 2):>6} "
            f"{_fmt(srv.get('cpu_percent_mean')):>8} {_fmt(srv.get('cpu_us_per_msg')):>10} "
            f"{_fmt(rss / 1024 if rss else None):>7} "
            f"{_fmt(ph['generator'].get('cpu_percent')):>8}  {top}")
    corrected = [ph for ph in doc["phases"] if ph.get("corrected")]
    if corrected:
        ref = doc.get("reference") or {}
        lines.append(f"host-corrected (nominal x commit/reference per block of round pairs; "
                     f"reference {ref.get('source', '?')} {str(ref.get('tree') or '')[:12]}"
                     f"{', STALE' if ref.get('stale') else ''}): median [min..max] of blocks")
        for ph in corrected:
            cells = []
            for fig, entry in ph["corrected"].items():
                if "missing" in entry:
                    cells.append(f"{fig} no nominal value")
                elif entry["samples"]:
                    cells.append(f"{fig} {entry['value']:.4g} [{min(entry['samples']):.4g}.."
                                 f"{max(entry['samples']):.4g}]")
            lines.append(f"  {ph['name'][:22]:<22} " + "  ".join(cells))
    if doc.get("analysis"):
        lines.append("analysis: " + json.dumps(doc["analysis"], default=str)[:2000])
    for c in doc["criteria"]:
        verdict = "PASS" if c["passed"] else "FAIL"
        val = _fmt(c["value"], 3) if isinstance(c["value"], float) else _fmt(c["value"])
        lines.append(f"  [{verdict}] ({c['scope']}) {c['name']}: {val} {c['op']} "
                     f"{c['limit']}" + (f"  - {c['note']}" if c["note"] else ""))
    for n in doc.get("notes", []):
        lines.append(f"  note: {n}")
    lines.append("PASSED" if doc["passed"] else "FAILED")
    return "\n".join(lines)
