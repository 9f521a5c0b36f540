"""JSON-RPC 2.0 framing for MCP, with no I/O.

Like websockets' sans-I/O core, this module turns a received text frame into
either a :class:`Request` or a ready-to-send error frame, and builds response
frames. It never touches a socket, so the server's I/O layer stays a thin
loop and every rule about what counts as a valid request is tested here
without a network.

Each message is decoded with ``json.loads`` once and each response encoded
once with a pre-built encoder: ``json.dumps(..., separators=...)`` would
construct a new ``JSONEncoder`` per call, which shows up on the hot path.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from json.scanner import make_scanner
from typing import Any, Final

__all__ = [
    "BUSY",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Request",
    "RpcError",
    "encode",
    "error_frame",
    "parse",
    "result_frame",
    "text_frame",
    "tool_result_frame",
]

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
#: Implementation-defined code for "over an in-flight cap, try again".
BUSY: Final = -32001

#: Compact separators keep frames small. ensure_ascii stays on: JSON text may
#: carry lone surrogates ("\\ud800") that Python decodes happily but that
#: cannot be encoded as UTF-8, so a non-ASCII frame could fail in send() and
#: take the connection down. Escaped output is always valid.
encode = json.JSONEncoder(separators=(",", ":")).encode

#: The C scanner that ``json.loads`` ends up calling, without the wrapper's
#: type checks and two whitespace regex matches (about 1 us per message).
_scan_once = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _decode(text: str) -> Any:
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        # Leading whitespace or not JSON at all: let json.loads decide and
        # produce its usual error message.
        return json.loads(text)
    if end != len(text):
        return json.loads(text)  # trailing whitespace is fine, trailing data is not
    return value


RequestId = str | int | None


class RpcError(Exception):
    """Raised by method handlers to answer with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class Request:
    """A parsed request or notification (``is_notification`` when it had no id)."""

    __slots__ = ("id", "is_notification", "method", "params")

    def __init__(
        self, id: RequestId, method: str, params: dict[str, Any], is_notification: bool
    ) -> None:
        self.id = id
        self.method = method
        self.params = params
        self.is_notification = is_notification

    def __repr__(self) -> str:
        return f"Request(id={self.id!r}, method={self.method!r})"


def result_frame(id: RequestId, result: Any) -> str:
    """The text frame answering request ``id`` with ``result``."""
    return encode({"jsonrpc": "2.0", "id": id, "result": result})


def error_frame(id: RequestId, code: int, message: str, data: Any = None) -> str:
    """The text frame answering request ``id`` with an error."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return encode({"jsonrpc": "2.0", "id": id, "error": error})


_TEXT_RESULT: Final = (
    '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":%s}],"isError":%s}}'
)


def text_frame(id: RequestId, text: str, is_error: bool = False) -> str:
    """The frame for a tool result holding one text item (what most tools return)."""
    return _TEXT_RESULT % (
        id if type(id) is int else "null" if id is None else encode_basestring_ascii(str(id)),
        encode_basestring_ascii(text),
        "true" if is_error else "false",
    )


def tool_result_frame(id: RequestId, result: dict[str, Any]) -> str:
    """:func:`result_frame` for a tool result, fast for the usual one-text-item shape.

    Nearly every tool answer is ``{"content":[{"type":"text","text":T}],"isError":B}``;
    filling a template with the escaped text is ~10x cheaper than encoding
    the nested dicts, and produces the identical string.
    """
    content = result.get("content")
    if len(result) == 2 and type(content) is list and len(content) == 1:
        item = content[0]
        text = item.get("text")
        if len(item) == 2 and type(text) is str and item.get("type") == "text":
            is_error = result.get("isError")
            if is_error is True or is_error is False:
                return text_frame(id, text, is_error)
    return result_frame(id, result)


BINARY_FRAME_ERROR: Final = error_frame(None, PARSE_ERROR, "binary frames are not supported")


def _valid_id(value: object) -> bool:
    # MCP narrows JSON-RPC ids to strings and integers; bool is an int subclass
    # in Python but not an integer in JSON, so it is rejected explicitly.
    return type(value) is str or (type(value) is int)


def parse(text: str) -> Request | str | None:
    """Parse one text frame.

    Returns a :class:`Request`, or an error frame (``str``) to send back, or
    ``None`` when the message needs no answer (a response sent by the client,
    which this server never asks for).
    """
    try:
        msg = _decode(text)
    except ValueError as exc:  # JSONDecodeError and bad surrogates alike
        return error_frame(None, PARSE_ERROR, f"invalid JSON: {exc}")
    except RecursionError:
        # "[[[[...": valid-looking JSON nested deeper than the interpreter allows.
        return error_frame(None, PARSE_ERROR, "invalid JSON: nested too deeply")
    if type(msg) is not dict:
        if type(msg) is list:
            return error_frame(None, INVALID_REQUEST, "batch requests are not supported")
        return error_frame(None, INVALID_REQUEST, "a request must be a JSON object")
    # Fast path: a well-formed request with an id and object (or no) params,
    # i.e. nearly every message. Everything else takes the careful path.
    id_ = msg.get("id")
    method = msg.get("method")
    if (
        (type(id_) is int or type(id_) is str)
        and type(method) is str
        and msg.get("jsonrpc") == "2.0"
    ):
        params = msg.get("params")
        if type(params) is dict:
            return Request(id_, method, params, False)
        if params is None:
            return Request(id_, method, {}, False)
    return _parse_slow(msg)


def _parse_slow(msg: dict[str, Any]) -> Request | str | None:
    """Notifications, client responses and every kind of invalid request."""
    has_id = "id" in msg
    id_ = msg.get("id")
    if has_id and id_ is not None and not _valid_id(id_):
        return error_frame(None, INVALID_REQUEST, "id must be a string or an integer")
    if msg.get("jsonrpc") != "2.0":
        return error_frame(id_, INVALID_REQUEST, 'jsonrpc must be "2.0"')
    method = msg.get("method")
    if type(method) is not str:
        if has_id and ("result" in msg or "error" in msg):
            return None
        return error_frame(id_, INVALID_REQUEST, "method must be a string")
    if has_id and id_ is None:
        # JSON-RPC discourages null ids and MCP forbids them: we could not
        # tell the answer apart from an error about an unparsable message.
        return error_frame(None, INVALID_REQUEST, "id must not be null")
    params = msg.get("params")
    if params is None:
        params = {}
    elif type(params) is not dict:
        return error_frame(id_, INVALID_REQUEST, "params must be an object")
    return Request(id_, method, params, not has_id)
