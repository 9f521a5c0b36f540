"""The sans-I/O protocol core: parsing rules and response frames, no sockets."""

from __future__ import annotations

import json

import pytest

from toolserver.protocol import (
    INVALID_REQUEST,
    PARSE_ERROR,
    Request,
    error_frame,
    parse,
    result_frame,
    tool_result_frame,
)


def error_code(frame: object) -> int:
    assert isinstance(frame, str), frame
    return int(json.loads(frame)["error"]["code"])


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", PARSE_ERROR),
        ("", PARSE_ERROR),
        ('{"jsonrpc":"2.0","id":1,"method":"ping"} x', PARSE_ERROR),
        ("[]", INVALID_REQUEST),
        ("42", INVALID_REQUEST),
        ('"ping"', INVALID_REQUEST),
        ('{"id":1,"method":"ping"}', INVALID_REQUEST),
        ('{"jsonrpc":"1.0","id":1,"method":"ping"}', INVALID_REQUEST),
        ('{"jsonrpc":"2.0","id":1}', INVALID_REQUEST),
        ('{"jsonrpc":"2.0","id":1,"method":7}', INVALID_REQUEST),
        ('{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', INVALID_REQUEST),
        ('{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST),
        ('{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST),
        ('{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST),
        ('{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}', INVALID_REQUEST),
    ],
)
def test_invalid_messages_become_error_frames(text: str, code: int) -> None:
    assert error_code(parse(text)) == code


def test_error_keeps_the_request_id_when_it_is_valid() -> None:
    frame = parse('{"jsonrpc":"1.0","id":"abc","method":"ping"}')
    assert isinstance(frame, str)
    assert json.loads(frame)["id"] == "abc"


def test_requests_and_notifications() -> None:
    req = parse(' {"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"echo"}} ')
    assert isinstance(req, Request)
    assert (req.id, req.method, req.params, req.is_notification) == (
        "x",
        "tools/call",
        {"name": "echo"},
        False,
    )
    note = parse('{"jsonrpc":"2.0","method":"notifications/initialized"}')
    assert isinstance(note, Request) and note.is_notification and note.params == {}


def test_client_responses_are_ignored() -> None:
    assert parse('{"jsonrpc":"2.0","id":3,"result":{}}') is None


@pytest.mark.parametrize("id_", [1, "req-1", None, 'quo"te', "ünï"])
@pytest.mark.parametrize("is_error", [True, False])
def test_fast_tool_result_frame_matches_the_generic_encoder(id_: object, is_error: bool) -> None:
    result = {"content": [{"type": "text", "text": 'a "b"\n\\ é ☃'}], "isError": is_error}
    fast = tool_result_frame(id_, result)  # type: ignore[arg-type]
    assert fast == result_frame(id_, result)  # type: ignore[arg-type]
    assert json.loads(fast) == {"jsonrpc": "2.0", "id": id_, "result": result}


def test_unusual_tool_results_fall_back_to_the_generic_encoder() -> None:
    result = {"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"}]}
    assert json.loads(tool_result_frame(5, result))["result"] == result


def test_error_frame_data() -> None:
    frame = json.loads(error_frame(1, -32001, "server busy", {"scope": "global"}))
    assert frame["error"] == {"code": -32001, "message": "server busy", "data": {"scope": "global"}}
