"""The official MCP Python SDK's WebSocket client against a real server subprocess."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable

from serverproc import ServerProcess

StartServer = Callable[..., ServerProcess]


async def _session_roundtrip(url: str) -> dict[str, object]:
    from mcp import ClientSession

    with warnings.catch_warnings():
        # The SDK marks its WebSocket transport deprecated (removed in mcp 2.0).
        warnings.simplefilter("ignore", DeprecationWarning)
        from mcp.client.websocket import websocket_client

        transport = websocket_client(url)
    out: dict[str, object] = {}
    async with transport as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        out["server"] = init.serverInfo.name
        out["protocol"] = init.protocolVersion
        out["has_tools_capability"] = init.capabilities.tools is not None
        tools = await session.list_tools()
        out["tools"] = sorted(tool.name for tool in tools.tools)
        arguments: dict[str, dict[str, object]] = {
            "echo": {"text": "hello sdk", "delay_ms": 5},
            "status": {},
            "chat": {"prompt": "hi", "provider": "kimi", "max_tokens": 8},
            "analyze": {"text": "numbers", "steps": 2},
            "listmodels": {},
        }
        results = {}
        for name in out["tools"]:  # type: ignore[attr-defined]
            result = await session.call_tool(name, arguments[name])
            results[name] = (result.isError, result.content[0].text)  # type: ignore[union-attr]
        out["results"] = results
        # Concurrent calls over the one session: answers are matched by id.
        texts = await asyncio.gather(
            *(session.call_tool("echo", {"text": f"c{i}", "delay_ms": 20 - i}) for i in range(20))
        )
        out["concurrent"] = [r.content[0].text for r in texts]  # type: ignore[union-attr]
        await session.send_ping()
        # A tool error is a result, a bad argument a JSON-RPC error (McpError in the SDK).
        from mcp.shared.exceptions import McpError

        try:
            await session.call_tool("echo", {})
        except McpError as exc:
            out["bad_args_code"] = exc.error.code
    return out


def test_official_sdk_client_initializes_lists_and_calls_every_tool(
    start_server: StartServer,
) -> None:
    server = start_server("--provider-latency-ms", "5", "--provider-spread-ms", "1")
    out = asyncio.run(asyncio.wait_for(_session_roundtrip(server.url), 30))
    assert out["server"] == "toolserver"
    assert out["protocol"] in ("2025-06-18", "2025-11-25")
    assert out["has_tools_capability"] is True
    assert out["tools"] == ["analyze", "chat", "echo", "listmodels", "status"]
    results = out["results"]
    assert isinstance(results, dict)
    assert results["echo"] == (False, "hello sdk")
    assert all(is_error is False for is_error, _ in results.values()), results
    assert "hi" in results["chat"][1] and "8 tokens" in results["chat"][1]
    assert "step 2/2" in results["analyze"][1]
    assert set(json.loads(results["listmodels"][1])) == {"glm", "kimi"}
    assert json.loads(results["status"][1])["connections"] == 1
    assert out["concurrent"] == [f"c{i}" for i in range(20)]
    assert out["bad_args_code"] == -32602
    assert server.terminate() == 0
    assert len(server.rows()) == 5 + 20 + 1
