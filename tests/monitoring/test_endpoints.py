"""The monitoring endpoints against a real server process and real WebSocket traffic."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from monitoring_client import Tally, burst, tool_call
from monitoring_server import Server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

ECHO_CONNS = 4
ECHO_BATCHES = 10
ECHO_BATCH = 40


def samples(text: str) -> dict[str, list[Sample]]:
    """Parse Prometheus text with prometheus_client's own parser: family -> samples."""
    return {fam.name: fam.samples for fam in text_string_to_metric_families(text)}


def value(fams: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """The value of the one sample called ``name`` whose labels include ``labels``."""
    family = name.removesuffix("_total").removesuffix("_count").removesuffix("_bucket")
    for candidate in (name, family, family.removesuffix("_seconds")):
        for s in fams.get(candidate, []):
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise KeyError(f"{name}{labels} not in exposition")


def run_burst(server: Server) -> Tally:
    batches = [[tool_call("echo", text="x" * 16)] * ECHO_BATCH for _ in range(ECHO_BATCHES)]
    batches.append([tool_call("chat", prompt="hi"), tool_call("analyze", text="t", steps=2)])
    return asyncio.run(burst(server.ws_url, ECHO_CONNS, batches))


def settled(tally: Tally) -> Callable[[dict[str, Any]], bool]:
    """The API has seen every frame and a tick has run after the last one."""

    def pred(doc: dict[str, Any]) -> bool:
        return (
            doc["messages"]["in"] == tally.sent
            and doc["messages"]["out"] >= tally.received
            and doc["connections"]["closed"] == tally.connections
            and doc["latency"]["overall"]["count"] >= tally.ok + tally.tool_error
        )

    return pred


def test_health(server: Server) -> None:
    status, ctype, body = server.get("/health")
    assert status == 200
    assert ctype.startswith("application/json")
    doc = json.loads(body)
    assert doc["status"] == "ok"
    assert doc["connections"] == 0
    assert isinstance(doc["version"], str) and doc["version"]
    assert 0 <= doc["uptime_s"] < 60


def test_api_counts_match_a_burst(server: Server) -> None:
    tally = run_burst(server)
    expected_echo = ECHO_CONNS * ECHO_BATCHES * ECHO_BATCH
    assert tally.by_tool["echo"]["ok"] + tally.by_tool["echo"]["busy"] == expected_echo
    doc = server.wait_api(settled(tally))

    assert doc["schema"] == 1 and doc["enabled"] is True
    assert doc["messages"]["in"] == tally.sent
    assert doc["messages"]["out"] == tally.received
    assert doc["messages"]["bytes_in"] > 16 * tally.sent
    assert doc["connections"] == {
        "current": 0,
        "opened": ECHO_CONNS,
        "closed": ECHO_CONNS,
        "rejected": 0,
        "rejected_by_reason": {},
    }
    req = doc["requests"]
    assert req["total"] == tally.received
    assert req["by_method"] == {"tools/call": tally.sent}
    for tool, outcomes in tally.by_tool.items():
        assert req["by_tool"][tool] == outcomes, tool
    assert doc["rejections"]["overload"] == tally.busy
    # provider calls: one per chat, `steps` per analyze, on each connection
    glm = doc["providers"]["glm"]
    assert glm["calls"] == ECHO_CONNS * (1 + 2)
    assert glm["breaker"] == "closed"
    assert glm["latency"]["count"] == glm["calls"]
    # windows come from real traffic: the burst took well under 10 s
    assert doc["messages"]["rate_in"]["10s"] > 0
    lat = doc["latency"]["by_tool"]["echo"]
    assert lat["count"] == tally.by_tool["echo"]["ok"]
    assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]
    assert doc["inflight"]["current"] == 0
    assert doc["process"]["rss_bytes"] > 10_000_000
    assert doc["process"]["open_fds"] > 0


def test_prometheus_exposition_matches_the_burst(server: Server) -> None:
    tally = run_burst(server)
    server.wait_api(settled(tally))
    status, ctype, body = server.get("/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    fams = samples(body.decode())

    assert value(fams, "toolserver_messages_received_total") == tally.sent
    assert value(fams, "toolserver_messages_sent_total") == tally.received
    assert value(fams, "toolserver_connections_opened_total") == ECHO_CONNS
    assert value(fams, "toolserver_connections_closed_total") == ECHO_CONNS
    assert value(fams, "toolserver_connections") == 0
    ok_echo = tally.by_tool["echo"]["ok"]
    assert (
        value(fams, "toolserver_requests_total", method="tools/call", tool="echo", outcome="ok")
        == ok_echo
    )
    assert (
        value(fams, "toolserver_request_duration_seconds_count", tool="echo", method="tools/call")
        == ok_echo
    )
    assert (
        value(fams, "toolserver_request_duration_seconds_bucket", tool="echo", le="+Inf") == ok_echo
    )
    assert value(fams, "toolserver_overload_rejections_total") == tally.busy
    assert value(fams, "toolserver_inflight_requests") == 0
    assert value(fams, "toolserver_provider_calls_total", provider="glm") == ECHO_CONNS * 3
    assert value(fams, "toolserver_provider_failures_total", provider="glm") == 0
    assert value(fams, "toolserver_provider_call_duration_seconds_count", provider="glm") == 12
    assert value(fams, "toolserver_circuit_breaker_state", provider="glm", state="closed") == 1
    assert value(fams, "toolserver_circuit_breaker_state", provider="glm", state="open") == 0
    assert value(fams, "toolserver_requestlog_queue_depth") >= 0
    assert value(fams, "toolserver_requestlog_rows_written_total") >= 0
    assert value(fams, "process_cpu_seconds_total") > 0
    assert value(fams, "process_resident_memory_bytes") > 10_000_000
    assert value(fams, "process_open_fds") > 0


def test_overload_rejections_are_counted(server_factory: Callable[..., Server]) -> None:
    server = server_factory("--max-inflight-per-connection", "2")
    # 10 slow echoes at once on one connection: 2 run, 8 are rejected with -32001
    batch = [tool_call("echo", text="slow", delay_ms=200) for _ in range(10)]
    tally = asyncio.run(burst(server.ws_url, 1, [batch]))
    assert tally.busy == 8 and tally.ok == 2
    doc = server.wait_api(settled(tally))
    assert doc["rejections"]["overload"] == 8
    assert doc["requests"]["by_tool"]["echo"] == {"ok": 2, "tool_error": 0, "error": 0, "busy": 8}
    # busy rejections stay out of the latency figures; the 2 real calls took >= 200 ms
    echo = doc["latency"]["by_tool"]["echo"]
    assert echo["count"] == 2
    assert echo["p50_ms"] >= 150
    fams = samples(server.get("/metrics")[2].decode())
    assert value(fams, "toolserver_overload_rejections_total") == 8


def test_provider_failures_and_open_breaker(server_factory: Callable[..., Server]) -> None:
    server = server_factory(
        "--provider-latency-ms", "1", "--provider-failure-rate", "1.0", "--breaker-failures", "3"
    )
    batches = [[tool_call("chat", prompt="p", provider="kimi")] for _ in range(6)]
    tally = asyncio.run(burst(server.ws_url, 1, batches))
    assert tally.tool_error == 6
    doc = server.wait_api(settled(tally))
    kimi = doc["providers"]["kimi"]
    assert kimi["breaker"] == "open"
    assert kimi["calls"] == kimi["failures"] >= 3
    assert doc["requests"]["by_tool"]["chat"]["tool_error"] == 6
    fams = samples(server.get("/metrics")[2].decode())
    assert value(fams, "toolserver_circuit_breaker_state", provider="kimi", state="open") == 1
    assert value(fams, "toolserver_provider_failures_total", provider="kimi") == kimi["failures"]


def test_rates_and_percentiles_track_real_latency(server: Server) -> None:
    """echo with delay_ms=20: the sliding-window percentiles land near 20 ms."""
    batches = [[tool_call("echo", text="d", delay_ms=20) for _ in range(10)] for _ in range(5)]
    tally = asyncio.run(burst(server.ws_url, 2, batches))
    doc = server.wait_api(settled(tally))
    echo = doc["latency"]["by_tool"]["echo"]
    assert echo["count"] == 100
    for q in ("p50_ms", "p95_ms", "p99_ms"):
        assert 19 <= echo[q] <= 80, (q, echo)
    assert 19 <= echo["mean_ms"] <= 80
    # 200 frames over about 0.5 s: the 60 s rate is the frames over the ticks seen so far
    assert doc["messages"]["rate_in"]["60s"] > 0
    tick = doc["tick"]
    later = server.wait_api(lambda d: d["tick"] >= tick + 2, timeout=5)
    assert later["messages"]["in"] == tally.sent  # counters are stable without traffic
    assert later["messages"]["rate_in"]["1s"] == 0


def test_static_assets_and_unknown_paths(server: Server) -> None:
    status, ctype, body = server.get("/monitoring")
    assert status == 200 and ctype.startswith("text/html")
    assert b"/static/vendor/uPlot.iife.min.js" in body
    assert b"https://" not in body.split(b"<body", 1)[1].split(b"</html>")[0].replace(
        b'"https:"', b""
    )  # no CDN
    status, ctype, body = server.get("/static/vendor/uPlot.iife.min.js")
    assert status == 200 and "javascript" in ctype and len(body) > 20_000
    status, ctype, _ = server.get("/static/vendor/uPlot.min.css")
    assert status == 200 and ctype.startswith("text/css")
    assert server.get("/static/../metrics.py")[0] == 404
    assert server.get("/nope")[0] == 404


def test_monitoring_ws_pushes_a_snapshot_every_second(server: Server) -> None:
    from websockets.asyncio.client import connect

    async def read(n: int) -> list[dict[str, Any]]:
        out = []
        async with connect(server.ws_url + "/monitoring/ws") as ws:
            for _ in range(n):
                out.append(json.loads(await asyncio.wait_for(ws.recv(), 3)))
        return out

    t0 = time.monotonic()
    docs = asyncio.run(read(3))
    elapsed = time.monotonic() - t0
    assert "history" in docs[0] and isinstance(docs[0]["history"], list)
    assert "history" not in docs[1]
    ticks = [d["tick"] for d in docs]
    assert ticks == sorted(ticks) and ticks[-1] > ticks[0]
    assert 0.8 <= elapsed <= 4.5
    assert docs[-1]["version"]


def test_open_dashboard_stream_does_not_delay_shutdown(server: Server) -> None:
    """SIGTERM with a /monitoring/ws client attached: exit 0 well inside the drain bounds."""
    import signal

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def watch() -> tuple[float, list[dict[str, Any]]]:
        got: list[dict[str, Any]] = []
        async with connect(server.ws_url + "/monitoring/ws") as ws:
            got.append(json.loads(await ws.recv()))
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            try:
                while True:
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            except ConnectionClosed:
                pass
            return time.monotonic() - t0, got

    elapsed, docs = asyncio.run(watch())
    assert server.proc.wait(timeout=10) == 0
    assert elapsed < 3.0
    assert docs[-1]["draining"] is True


def test_refused_connections_are_counted_by_reason(
    server_factory: Callable[..., Server],
) -> None:
    """401 without the token and 1013 over --max-connections, as the client saw them."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    server = server_factory("--token", "s3cret", "--max-connections", "1")
    auth = {"Authorization": "Bearer s3cret"}

    async def scenario() -> None:
        try:
            async with connect(server.ws_url, subprotocols=["mcp"]):  # type: ignore[list-item]
                raise AssertionError("handshake without a token must fail")
        except InvalidStatus as exc:
            assert exc.response.status_code == 401
        async with connect(
            server.ws_url,
            subprotocols=["mcp"],  # type: ignore[list-item]
            additional_headers=auth,
        ) as first:
            await first.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            await first.recv()
            async with connect(
                server.ws_url,
                subprotocols=["mcp"],  # type: ignore[list-item]
                additional_headers=auth,
            ) as second:
                try:
                    await asyncio.wait_for(second.recv(), 5)
                    raise AssertionError("second connection must be closed with 1013")
                except ConnectionClosed as exc:
                    assert exc.rcvd is not None and exc.rcvd.code == 1013

    asyncio.run(scenario())
    # monitoring routes stay open without the token
    doc = server.wait_api(lambda d: d["connections"]["closed"] == 1)
    assert doc["connections"]["opened"] == 1
    assert doc["connections"]["rejected_by_reason"] == {"auth": 1, "capacity": 1}
    assert doc["connections"]["rejected"] == 2
    assert doc["requests"]["by_method"] == {"ping": 1}
    fams = samples(server.get("/metrics")[2].decode())
    assert value(fams, "toolserver_connections_rejected_total", reason="auth") == 1
    assert value(fams, "toolserver_connections_rejected_total", reason="capacity") == 1
