"""Bad input gets a JSON-RPC error and the connection stays usable.

Every case runs against one real server subprocess, on one connection, and
checks after each error that a ``ping`` on the same connection still works
and that a second connection is unaffected.
"""

from __future__ import annotations

import json
import time

import pytest
from serverproc import ServerProcess, call, recv_all, request, rpc, text_of
from websockets.exceptions import ConnectionClosed

BAD_FRAMES: list[tuple[str, str | bytes, int, object]] = [
    # (case, frame, expected code, expected id)
    ("invalid json", '{"jsonrpc": "2.0", "id": 1, "method": ', -32700, None),
    ("binary frame", b"\x00\x01binary", -32700, None),
    ("nested too deeply", "[" * 2000 + "]" * 2000, -32700, None),
    ("batch array", "[]", -32600, None),
    ("json scalar", "17", -32600, None),
    ("no jsonrpc member", json.dumps({"id": 2, "method": "ping"}), -32600, 2),
    ("no method", json.dumps({"jsonrpc": "2.0", "id": 3}), -32600, 3),
    ("object id", json.dumps({"jsonrpc": "2.0", "id": {}, "method": "ping"}), -32600, None),
    (
        "params not object",
        json.dumps({"jsonrpc": "2.0", "id": 4, "method": "ping", "params": 1}),
        -32600,
        4,
    ),
    ("unknown method", request("resources/list", 5), -32601, 5),
    ("admin disabled", request("admin/provider", 6, provider="glm"), -32601, 6),
    ("unknown tool", call("nope", 7), -32602, 7),
    ("tool name missing", request("tools/call", 8, arguments={}), -32602, 8),
    ("missing argument", call("echo", 9), -32602, 9),
    ("wrong argument type", call("echo", 10, text=5), -32602, 10),
    ("argument out of range", call("echo", 11, text="x", delay_ms=-1), -32602, 11),
    ("unknown argument", call("echo", 12, text="x", colour="red"), -32602, 12),
    ("arguments not object", request("tools/call", 13, name="echo", arguments=[1]), -32602, 13),
    ("unknown provider", call("chat", 14, prompt="hi", provider="openai"), -32602, 14),
    ("steps out of range", call("analyze", 15, text="x", steps=9), -32602, 15),
]


@pytest.mark.parametrize(
    ("frame", "code", "id_"),
    [case[1:] for case in BAD_FRAMES],
    ids=[case[0] for case in BAD_FRAMES],
)
def test_bad_input_gets_error_and_connection_stays_usable(
    shared_server: ServerProcess, frame: str | bytes, code: int, id_: object
) -> None:
    with shared_server.connect() as ws:
        answer = rpc(ws, frame)
        assert answer["jsonrpc"] == "2.0"
        assert answer["id"] == id_
        assert answer["error"]["code"] == code, answer
        assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
        if isinstance(frame, bytes):
            assert answer["error"]["message"] == "binary frames are not supported"
        # Same connection still answers correctly.
        assert rpc(ws, request("ping", "after"))["result"] == {}
        assert text_of(rpc(ws, call("echo", "echo-after", text="still here"))) == "still here"


def test_many_bad_frames_in_a_row_then_good_ones(shared_server: ServerProcess) -> None:
    with shared_server.connect() as ws:
        for _, frame, _, _ in BAD_FRAMES:
            ws.send(frame)
        codes = sorted(json.loads(ws.recv(5))["error"]["code"] for _ in BAD_FRAMES)
        assert codes == sorted(case[2] for case in BAD_FRAMES)
        assert text_of(rpc(ws, call("echo", 1, text="ok"))) == "ok"


def test_notifications_get_no_answer(shared_server: ServerProcess) -> None:
    with shared_server.connect() as ws:
        ws.send(request("notifications/initialized", None))
        ws.send(request("notifications/whatever", None))
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 99, "result": {}}))  # a client response
        ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "tools/call",  # no id: no answer
                    "params": {"name": "echo", "arguments": {"text": "x"}},
                }
            )
        )
        assert rpc(ws, request("ping", "p"))["id"] == "p"


def test_frame_over_the_limit_closes_only_that_connection(shared_server: ServerProcess) -> None:
    with shared_server.connect() as other, shared_server.connect() as ws:
        ws.send(call("echo", 1, text="x" * 5000))  # server runs with --max-frame-bytes 4096
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert text_of(rpc(other, call("echo", 2, text="unaffected"))) == "unaffected"
    with shared_server.connect() as ws:  # and new connections are fine
        assert text_of(rpc(ws, call("echo", 3, text="x" * 3000))) == "x" * 3000


def test_requests_on_one_connection_run_concurrently(shared_server: ServerProcess) -> None:
    with shared_server.connect() as ws:
        ws.send(call("echo", "slow", text="slow", delay_ms=800))
        started = time.monotonic()
        ws.send(request("ping", "fast"))
        first = json.loads(ws.recv(5))
        assert first["id"] == "fast"
        assert time.monotonic() - started < 0.5, "ping waited behind the slow echo"
        second = json.loads(ws.recv(5))
        assert second["id"] == "slow" and text_of(second) == "slow"


def test_pipelined_requests_each_get_their_own_answer(shared_server: ServerProcess) -> None:
    n = 300
    with shared_server.connect() as ws:
        # 30 delayed calls stay under the default 64 in-flight slots per connection.
        for i in range(n):
            if i % 10 == 0:
                ws.send(call("echo", i, text=f"t{i}", delay_ms=(i % 7)))
            else:
                ws.send(call("echo", f"s{i}", text=f"t{i}"))
        answers = recv_all(ws, n)
    for i in range(n):
        key = i if i % 10 == 0 else f"s{i}"
        assert text_of(answers[key]) == f"t{i}"


def test_every_tool_answers(shared_server: ServerProcess) -> None:
    with shared_server.connect() as ws:
        status = json.loads(text_of(rpc(ws, call("status", 1))))
        assert status["connections"] >= 1
        assert status["breakers"] == {"glm": "closed", "kimi": "closed"}
        assert status["requestlog"]["rows_dropped"] == 0
        models = json.loads(text_of(rpc(ws, call("listmodels", 2, provider="kimi"))))
        assert list(models) == ["kimi"] and models["kimi"]
        assert "hello" in text_of(rpc(ws, call("chat", 3, prompt="hello", provider="kimi")))
        analysis = text_of(rpc(ws, call("analyze", 4, text="data", steps=2)))
        assert analysis.count("\n") == 1 and "step 2/2" in analysis
        listing = rpc(ws, request("tools/list", 5))["result"]["tools"]
        assert {t["name"] for t in listing} == {"echo", "status", "chat", "analyze", "listmodels"}
        assert all(t["inputSchema"]["type"] == "object" for t in listing)


def test_lone_surrogates_and_unicode_round_trip(shared_server: ServerProcess) -> None:
    # "\ud800" is valid JSON but not encodable as UTF-8: answers must escape it.
    frame = (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        '"params":{"name":"echo","arguments":{"text":"a\\ud800b ☃ é"}}}'
    )
    with shared_server.connect() as ws:
        assert text_of(rpc(ws, frame)) == "a\ud800b ☃ é"
        assert text_of(rpc(ws, call("echo", 2, text="日本語"))) == "日本語"
