"""``/monitoring/ws`` has its own cap (issue 19): it used to bypass ``--max-connections``.

Each stream costs a snapshot per second; without a cap, dashboards (or anyone) could
open them without bound. Past ``--max-monitoring-streams`` a stream closes with 1013,
MCP connections are unaffected (streams are not counted in ``--max-connections``), and
a freed stream slot is reusable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from monitoring_server import Server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def test_monitoring_streams_have_their_own_cap(server_factory: Callable[..., Server]) -> None:
    server = server_factory("--max-monitoring-streams", "2", "--max-connections", "1")
    stream_url = server.ws_url + "/monitoring/ws"
    with connect(stream_url) as a, connect(stream_url) as b:
        for ws in (a, b):
            assert json.loads(ws.recv(5))["schema"] == 1
        with connect(stream_url) as third, pytest.raises(ConnectionClosed) as info:
            third.recv(5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        # The one MCP slot is still free: streams do not take MCP slots, nor the reverse.
        with connect(server.ws_url, subprotocols=["mcp"]) as mcp:  # type: ignore[list-item]
            mcp.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            assert json.loads(mcp.recv(5))["result"] == {}
            assert json.loads(a.recv(5))["connections"]["current"] == 1
    # Both closed: a new stream gets a slot (the server notices closes asynchronously).
    deadline = time.monotonic() + 10
    while True:
        try:
            with connect(stream_url) as again:
                assert "history" in json.loads(again.recv(5))
            break
        except ConnectionClosed:
            assert time.monotonic() < deadline, "stream slots never freed"
            time.sleep(0.1)
    doc = server.api()
    assert doc["connections"]["rejected_by_reason"].get("stream_capacity", 0) >= 1
