"""Connection cap (1013), in-flight caps (-32001 server busy) and the bearer token (401)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

import pytest
from serverproc import ServerProcess, call, recv_all, request, rpc, text_of
from websockets.exceptions import ConnectionClosed, InvalidStatus

StartServer = Callable[..., ServerProcess]


def test_connection_cap_closes_with_1013(start_server: StartServer) -> None:
    server = start_server("--max-connections", "2")
    with server.connect() as second:
        with server.connect():
            with server.connect() as third, pytest.raises(ConnectionClosed) as info:
                third.recv(5)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1013
            assert info.value.rcvd.reason == "try again later"
            # The connections under the cap are unaffected.
            assert text_of(rpc(second, call("echo", 1, text="ok"))) == "ok"
        # A freed slot is reusable (the server notices the close asynchronously).
        deadline = time.monotonic() + 5
        while True:
            try:
                with server.connect() as ws:
                    assert text_of(rpc(ws, call("echo", 2, text="again"))) == "again"
                break
            except ConnectionClosed:
                assert time.monotonic() < deadline, "slot never freed"
                time.sleep(0.05)


def test_inflight_caps_reject_fast_with_server_busy(start_server: StartServer) -> None:
    server = start_server("--max-inflight-per-connection", "2", "--max-inflight", "3")
    with server.connect() as a, server.connect() as b:
        # Hold both of a's slots.
        a.send(call("echo", "a1", text="a1", delay_ms=1500))
        a.send(call("echo", "a2", text="a2", delay_ms=1500))
        started = time.monotonic()
        busy = rpc(a, call("echo", "a3", text="a3"))
        assert busy["id"] == "a3"
        assert busy["error"]["code"] == -32001
        assert busy["error"]["data"] == {"scope": "connection"}
        assert time.monotonic() - started < 0.5, "busy answer was not fast"
        # Cheap control methods still work on a full connection.
        assert rpc(a, request("ping", "p"))["result"] == {}
        # b takes the last global slot, then hits the global cap.
        b.send(call("echo", "b1", text="b1", delay_ms=1500))
        time.sleep(0.1)
        busy = rpc(b, call("chat", "b2", prompt="x"))
        assert busy["error"]["code"] == -32001
        assert busy["error"]["data"] == {"scope": "global"}
        # Held calls complete normally, then capacity is back.
        held = recv_all(a, 2)
        assert {text_of(r) for r in held.values()} == {"a1", "a2"}
        assert text_of(json.loads(b.recv(5))) == "b1"
        assert text_of(rpc(b, call("echo", "b3", text="free again"))) == "free again"
    time.sleep(0.2)
    statuses = sorted(row[4] for row in server.rows())
    assert statuses.count("busy") == 2
    assert statuses.count("ok") == 4


def test_bearer_token(start_server: StartServer) -> None:
    server = start_server("--token", "s3cret-token")
    with pytest.raises(InvalidStatus) as info:
        server.connect()
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as info:
        server.connect(additional_headers={"Authorization": "Bearer wrong"})
    assert info.value.response.status_code == 401
    with server.connect(additional_headers={"Authorization": "Bearer s3cret-token"}) as ws:
        assert text_of(rpc(ws, call("echo", 1, text="authorized"))) == "authorized"
    # The health check stays open, like any load balancer probe expects.
    with urllib.request.urlopen(server.http_url + "/health", timeout=5) as response:
        assert json.loads(response.read())["status"] == "ok"


def test_token_from_environment(start_server: StartServer) -> None:
    server = start_server(env={"TOOLSERVER_TOKEN": "from-env"})
    with pytest.raises(InvalidStatus) as info:
        server.connect()
    assert info.value.response.status_code == 401
    with server.connect(additional_headers={"Authorization": "Bearer from-env"}) as ws:
        assert rpc(ws, request("ping"))["result"] == {}


def test_client_without_subprotocol_is_accepted(start_server: StartServer) -> None:
    server = start_server()
    with server.connect(subprotocols=None) as ws:
        assert ws.subprotocol is None
        assert rpc(ws, request("ping"))["result"] == {}
    with server.connect() as ws:
        assert ws.subprotocol == "mcp"
