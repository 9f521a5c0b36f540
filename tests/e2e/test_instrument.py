"""The instrument itself: strict success counting, auth, workers merge, CLI and JSON.

Real sockets and real subprocesses (the toolserver and the bare echo server).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from e2e_support import REPO, SRC

from benchmarks.load import histogram as H
from benchmarks.load.api import start_server
from benchmarks.load.phase import run_in_process
from benchmarks.load.protocol import Call, default_call, tool_call
from benchmarks.load.recorder import Recorder
from benchmarks.load.server_process import ServerProcess
from benchmarks.load.spec import PhaseSpec
from benchmarks.load.workers import run_phase


def _rec(wire: dict[str, object]) -> Recorder:
    rec = Recorder()
    rec.merge_wire(wire)  # type: ignore[arg-type]
    return rec


def test_namespace_package_has_no_init() -> None:
    """asv must not discover the instrument (see ARCHITECTURE.md)."""
    assert not (REPO / "benchmarks" / "load" / "__init__.py").exists()
    assert not (REPO / "benchmarks" / "load" / "scenarios" / "__init__.py").exists()


def test_error_replies_are_not_successes(server: ServerProcess) -> None:
    """Unknown tool and bad arguments come back as JSON-RPC errors and count as such."""
    for call, kind in ((tool_call("no_such_tool", {}), "rpc:-32602"),
                       (Call("tools/call", {"name": "echo", "arguments": {}}), "rpc:-32602"),
                       (Call("no/such/method", {}), "rpc:-32601")):
        spec = PhaseSpec(name="bad", url=server.url, loop="closed", connections=2,
                         inflight=2, call=call, duration_s=0.5)
        rec = _rec(run_in_process(spec))
        assert rec.ok == 0, (call, rec.errors)
        assert rec.errors[kind] > 0, (call, rec.errors)


def test_bearer_token(tmp_path: Path) -> None:
    proc = start_server(sys.executable, ["--token", "s3cret"], pythonpath=[SRC],
                        request_log_dir=str(tmp_path))
    try:
        base = dict(name="auth", url=proc.url, loop="closed", connections=2,
                    call=default_call("echo"), duration_s=0.3)
        denied = _rec(run_in_process(PhaseSpec(**base)))  # type: ignore[arg-type]
        assert denied.connects_ok == 0
        assert denied.conn_errors["connect:http_401"] == 2
        allowed = _rec(run_in_process(PhaseSpec(**base, token="s3cret")))  # type: ignore[arg-type]
        assert allowed.connects_ok == 2 and allowed.ok > 0
        assert sum(allowed.errors.values()) == 0
    finally:
        proc.discard()


def test_workers_merge_exactly() -> None:
    """Two worker processes against the bare echo server: counts and histograms add up."""
    bare = ServerProcess(sys.executable, ["--port", "0"], module="benchmarks.load.bare_echo")
    bare.start()
    try:
        spec = PhaseSpec(name="w", url=bare.url, loop="open", connections=4, rate=400.0,
                         call=default_call("raw_echo"), duration_s=1.0, warmup_s=0.2,
                         workers=2)
        wire = run_phase(spec)
        assert not wire.get("worker_errors"), wire.get("worker_errors")
        rec = _rec(wire)
        assert wire["connections_opened"] == 4
        assert rec.latency.get_total_count() == rec.ok
        assert 300 <= rec.ok <= 500, rec.ok  # 400/s for 1 s, split over 2 workers
        assert sum(rec.errors.values()) == 0
        # exact merge: decode(encode(h)) + decode(encode(h)) doubles every count
        text = H.encode(rec.latency)
        again = H.decode(text)
        H.merge_into(again, text)
        assert again.get_total_count() == 2 * rec.ok
    finally:
        bare.discard()


def test_cli_json_document(tmp_path: Path) -> None:
    """``python -m benchmarks.load`` writes the documented JSON and prints the table."""
    bare = ServerProcess(sys.executable, ["--port", "0"], module="benchmarks.load.bare_echo")
    bare.start()
    out = tmp_path / "r.json"
    try:
        cp = subprocess.run(
            [sys.executable, "-m", "benchmarks.load", "--scenario", "adhoc", "--profile",
             "smoke", "--url", bare.url, "--server-pid", str(bare.pid), "--set",
             "tool=raw_echo", "--set", "duration_s=0.8", "--set", "warmup_s=0.2",
             "--json", str(out), "--check"],
            cwd=REPO, capture_output=True, text=True, timeout=60)
    finally:
        bare.discard()
    assert cp.returncode == 0, cp.stderr
    assert "adhoc" in cp.stdout and "PASSED" in cp.stdout
    doc = json.loads(out.read_text())
    for key in ("schema", "scenario", "profile", "started_at", "elapsed_s", "passed",
                "settings", "machine", "versions", "server", "metrics", "phases",
                "analysis", "criteria", "samples", "notes"):
        assert key in doc, key
    ph = doc["phases"][0]
    assert ph["loop"] == "closed" and ph["requests"]["ok"] > 0
    assert doc["metrics"]["adhoc.us_per_msg"] > 0
    assert doc["metrics"]["adhoc.server_cpu_us_per_msg"] is not None
    assert H.decode(ph["histograms"]["latency_us"]).get_total_count() == ph["requests"]["ok"]
    assert len(doc["metric_samples"]["adhoc.p99_ms"]) >= 2


def test_open_loop_measures_a_stalled_server() -> None:
    """No coordinated omission: freeze the server 0.5 s (SIGSTOP) during an open loop at
    200 msg/s; every request intended during the freeze must show the wait as latency,
    whereas a closed loop only ever has its few in-flight requests delayed."""
    import os
    import signal
    import threading
    import time

    bare = ServerProcess(sys.executable, ["--port", "0"], module="benchmarks.load.bare_echo")
    bare.start()
    assert bare.pid is not None
    pid = bare.pid

    def freeze() -> None:
        time.sleep(0.8)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(pid, signal.SIGCONT)

    try:
        results = {}
        for loop in ("open", "closed"):
            spec = PhaseSpec(name=loop, url=bare.url, loop=loop, connections=1, rate=200.0,
                             call=default_call("raw_echo"), duration_s=2.0, warmup_s=0.2)
            th = threading.Thread(target=freeze)
            th.start()
            results[loop] = _rec(run_in_process(spec))
            th.join()
    finally:
        bare.discard()
    open_rec, closed_rec = results["open"], results["closed"]
    assert sum(open_rec.errors.values()) == 0
    # ~100 requests were due during the 0.5 s freeze: well over 5 % of ~400 took >= 100 ms
    slow_open = H.count_above(open_rec.latency, 100_000)
    assert slow_open >= 0.1 * open_rec.ok, (slow_open, open_rec.ok)
    assert open_rec.latency.get_max_value() >= 400_000
    # the closed loop (1 in flight) saw the freeze as a single slow request
    assert H.count_above(closed_rec.latency, 100_000) <= 2


def test_profiles_and_overrides() -> None:
    """Every scenario has the three profiles; --set parses into the field's type."""
    from benchmarks.load import profiles

    for name in profiles.SCENARIOS:
        for prof in profiles.PROFILES:
            assert profiles.params(name, prof) is not None
    p = profiles.params("load_performance", "quick", {"clients": "1,10", "duration_s": "2"})
    assert p.clients == (1, 10) and p.duration_s == 2.0
    quick = profiles.TABLE["load_performance"]["quick"]
    full = profiles.TABLE["load_performance"]["full"]
    assert full.duration_s > quick.duration_s


def test_degradation_classification() -> None:
    from benchmarks.load.scenarios.load_performance import classify_exponent, degradation

    def step(n: int, p95: float, thr: float) -> dict[str, object]:
        return {"settings": {"connections": n}, "latency_ms": {"p95": p95},
                "throughput_msg_s": thr}

    d = degradation([step(1, 1.0, 1000.0), step(10, 5.0, 8000.0), step(100, 500.0, 4000.0)])
    assert d[0]["latency_growth"] == "sub-linear" and d[0]["throughput_trend"] == "grows"
    assert d[1]["latency_growth"] == "super-linear" and d[1]["throughput_trend"] == "drops"
    assert classify_exponent(1.0) == "linear"
