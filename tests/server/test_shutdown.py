"""SIGTERM drains in-flight calls, flushes the request log and exits 0."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest
from serverproc import ServerProcess, call, recv_all, rpc, text_of
from websockets.exceptions import ConnectionClosed

StartServer = Callable[..., ServerProcess]


def test_sigterm_finishes_inflight_calls_and_logs_every_call(start_server: StartServer) -> None:
    # A long flush interval: rows must still all be there, flushed at shutdown.
    server = start_server("--provider-latency-ms", "600", "--provider-spread-ms", "0",
                          "--request-log-flush", "5")  # fmt: skip
    burst_connections, burst_calls = 5, 400
    for c in range(burst_connections):
        with server.connect() as ws:
            for i in range(burst_calls):
                ws.send(call("echo", i, text=f"{c}-{i}"))
            answers = recv_all(ws, burst_calls)
            assert all(text_of(answers[i]) == f"{c}-{i}" for i in range(burst_calls))

    with server.connect() as ws:
        for i in range(10):
            ws.send(call("echo", f"slow{i}", text=f"slow{i}", delay_ms=700))
        for i in range(5):
            ws.send(call("chat", f"chat{i}", prompt=f"p{i}"))
        time.sleep(0.2)  # all 15 are now in flight
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        # While draining, new calls are refused fast instead of extending the drain.
        refused = rpc(ws, call("echo", "late", text="late"))
        assert refused["error"]["code"] == -32001
        assert refused["error"]["data"] == {"scope": "draining"}
        answers = recv_all(ws, 15)
        assert all(text_of(answers[f"slow{i}"]) == f"slow{i}" for i in range(10))
        assert all(answers[f"chat{i}"]["result"]["isError"] is False for i in range(5))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001

    assert server.proc.wait(15) == 0
    rows = server.rows()
    total = burst_connections * burst_calls + 15 + 1
    assert len(rows) == total
    statuses = Counter(row[4] for row in rows)
    assert statuses == {"ok": total - 1, "busy": 1}
    tools = Counter(row[2] for row in rows)
    assert tools == {"echo": total - 5, "chat": 5}
    assert {row[3] for row in rows if row[2] == "chat"} == {"glm"}
    assert all(row[5] >= 0 for row in rows)
    assert len({row[1] for row in rows}) == burst_connections + 1  # one session per connection


def test_drain_timeout_bounds_the_wait(start_server: StartServer) -> None:
    server = start_server("--drain-timeout", "0.5")
    with server.connect() as ws:
        ws.send(call("echo", 1, text="forever", delay_ms=10000))
        time.sleep(0.2)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            ws.recv(10)
        assert server.proc.wait(10) == 0
        assert time.monotonic() - started < 3
    # The abandoned call is still accounted for.
    assert [row[4] for row in server.rows()] == ["cancelled"]


def test_health_and_metrics_routes_answer(start_server: StartServer) -> None:
    import urllib.request

    server = start_server()
    with server.connect() as ws:
        assert text_of(rpc(ws, call("echo", 1, text="x"))) == "x"
        with urllib.request.urlopen(server.http_url + "/health", timeout=5) as response:
            health = json.loads(response.read())
        assert health["status"] == "ok" and health["connections"] == 1
    assert server.terminate() == 0


def test_second_sigterm_stops_without_waiting_out_the_drain(start_server: StartServer) -> None:
    server = start_server("--drain-timeout", "30")
    with server.connect() as ws:
        ws.send(call("echo", 1, text="slow", delay_ms=10000))
        time.sleep(0.2)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert server.proc.poll() is None, "first SIGTERM must wait for the in-flight call"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
        assert time.monotonic() - started < 5
    assert [row[4] for row in server.rows()] == ["cancelled"]


def test_monitoring_port_reports_draining_during_the_drain(start_server: StartServer) -> None:
    import re
    import urllib.error
    import urllib.request

    server = start_server("--monitoring-port", "0")
    deadline = time.monotonic() + 5
    while not (match := re.search(r"monitoring on (http://\S+)/monitoring", server.stderr())):
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.05)
    health_url = match.group(1) + "/health"
    with urllib.request.urlopen(health_url, timeout=5) as response:
        assert json.loads(response.read())["status"] == "ok"
    with server.connect() as ws:
        ws.send(call("echo", 1, text="slow", delay_ms=1500))
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(health_url, timeout=5)
        assert info.value.code == 503
        assert json.loads(info.value.read())["status"] == "draining"
        assert text_of(json.loads(ws.recv(5))) == "slow"
    assert server.proc.wait(10) == 0
