"""``/health`` answers 503 while the server drains.

The real process closes its listening socket as soon as it starts draining, so the 503
window cannot be reached from outside; here the real ``ServerState`` (hooks, routes and
handler exactly as ``run_server`` wires them) is served in-process on a real socket and
switched to draining by hand.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from toolserver.config import RequestLogOptions, ServerConfig
from toolserver.server import ServerState


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def up_gauge(text: str) -> float:
    for fam in text_string_to_metric_families(text):
        if fam.name == "toolserver_up":
            return float(fam.samples[0].value)
    raise KeyError("toolserver_up")


async def scenario() -> None:
    state = ServerState(ServerConfig(requestlog=RequestLogOptions(url="none")))
    async with serve(
        state.handler, "127.0.0.1", 0, process_request=state.process_request
    ) as server:
        port = server.sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        status, body = await asyncio.to_thread(get, base + "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert up_gauge((await asyncio.to_thread(get, base + "/metrics"))[1].decode()) == 1

        async with connect(f"ws://127.0.0.1:{port}/monitoring/ws") as ws:
            assert json.loads(await ws.recv())["draining"] is False
            state.draining = True
            status, body = await asyncio.to_thread(get, base + "/health")
            assert status == 503
            doc = json.loads(body)
            assert doc["status"] == "draining" and doc["version"] == state.version
            assert json.loads((await asyncio.to_thread(get, base + "/api/metrics"))[1])["draining"]
            assert up_gauge((await asyncio.to_thread(get, base + "/metrics"))[1].decode()) == 0
            assert json.loads(await asyncio.wait_for(ws.recv(), 3))["draining"] is True
            # ...and then the stream ends, so an open dashboard never delays shutdown
            try:
                await asyncio.wait_for(ws.recv(), 3)
                raise AssertionError("stream should close once draining")
            except ConnectionClosed as exc:
                assert exc.rcvd is not None and exc.rcvd.code == 1001


def test_health_is_503_while_draining() -> None:
    asyncio.run(scenario())


async def separate_port() -> None:
    from toolserver.http import serve_monitoring

    state = ServerState(ServerConfig(requestlog=RequestLogOptions(url="none")))
    server = await serve_monitoring(state, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        status, body = await asyncio.to_thread(get, base + "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = await asyncio.to_thread(get, base + "/metrics")
        assert status == 200 and up_gauge(body.decode()) == 1
        async with connect(f"ws://127.0.0.1:{port}/monitoring/ws") as ws:
            assert "history" in json.loads(await ws.recv())
        # an MCP upgrade on the monitoring port is refused, never handled
        try:
            async with connect(f"ws://127.0.0.1:{port}/", subprotocols=["mcp"]):  # type: ignore[list-item]
                raise AssertionError("MCP handshake must fail on the monitoring port")
        except InvalidStatus as exc:
            assert exc.response.status_code == 404
    finally:
        server.close()
        await server.wait_closed()


def test_monitoring_on_a_separate_port() -> None:
    asyncio.run(separate_port())
