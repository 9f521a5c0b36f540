"""The wire protocol as the instrument speaks it (ARCHITECTURE.md section 2).

Frames are built from pre-encoded templates because the generator must stay far cheaper
than the server it measures: one ``json.dumps`` of the arguments per run, then a string
format per request. Responses are classified strictly: a reply is a success only when its
id matches an outstanding request, it has no ``error`` member and ``result.isError`` is
``false`` (the seed system counted error replies as successes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = "2025-06-18"
SUBPROTOCOL = "mcp"

#: Error kinds: prefixes used in every ``errors`` mapping of the result JSON.
KIND_TIMEOUT = "timeout"
KIND_UNMATCHED = "unmatched_id"
KIND_BAD_RESPONSE = "bad_response"
KIND_MISMATCH = "bad_result:echo_mismatch"
KIND_NO_ISERROR = "bad_result:no_isError"
KIND_TOOL_ERROR = "tool:error"
KIND_CIRCUIT_OPEN = "tool:circuit_open"
KIND_BUSY = "rpc:-32001"


def rpc_kind(code: Any) -> str:
    """Error kind of a JSON-RPC error code, e.g. ``rpc:-32001`` (server busy)."""
    return f"rpc:{code}"


def close_kind(code: int | None) -> str:
    """Error kind of a connection closed with a close code (``close:none`` when abrupt)."""
    return f"close:{code if code is not None else 'none'}"


@dataclass(frozen=True)
class Call:
    """One request shape sent repeatedly: method + params, pre-encoded.

    ``expect_text`` makes the echo tool's answer checked byte for byte (a server that
    answers the wrong text is not counted as successful). ``accept_echo`` is for the bare
    echo server that returns the request frame unchanged: then the frame coming back
    (same id, our method) is the success.
    """

    method: str = "tools/call"
    params: dict[str, Any] = field(default_factory=dict)
    expect_text: str | None = None
    accept_echo: bool = False

    def frame_parts(self) -> tuple[str, str]:
        """(prefix, suffix): a frame is ``prefix + str(id) + suffix`` (no formatting cost)."""
        params = json.dumps(self.params, separators=(",", ":"))
        suffix = ',"method":' + json.dumps(self.method) + ',"params":' + params + "}"
        return '{"jsonrpc":"2.0","id":', suffix

    @property
    def tool(self) -> str | None:
        """Tool name for ``tools/call``, None for other methods."""
        name = self.params.get("name") if self.method == "tools/call" else None
        return str(name) if name is not None else None


ECHO_TEXT = "the quick brown fox jumps over the lazy dog, 0123456789 abcdefgh"  # ~60 chars


def tool_call(tool: str, arguments: dict[str, Any] | None = None) -> Call:
    """A ``tools/call`` request; echo calls get their answer checked."""
    args = dict(arguments or {})
    expect = None
    if tool == "echo":
        args.setdefault("text", ECHO_TEXT)
        expect = str(args["text"])
    return Call("tools/call", {"name": tool, "arguments": args}, expect_text=expect)


def default_call(tool: str) -> Call:
    """The standard request of each tool type used by the scenarios."""
    if tool == "echo":
        return tool_call("echo")
    if tool == "status":
        return tool_call("status", {})
    if tool == "chat":
        return tool_call("chat", {"prompt": "Summarise the load test in one line.",
                                  "provider": "glm", "max_tokens": 32})
    if tool == "analyze":
        return tool_call("analyze", {"text": ECHO_TEXT, "provider": "glm", "steps": 3})
    if tool == "listmodels":
        return tool_call("listmodels", {})
    if tool == "ping":
        return Call("ping", {})
    if tool == "raw_echo":
        return Call("tools/call", {"name": "echo", "arguments": {"text": ECHO_TEXT}},
                    accept_echo=True)
    raise ValueError(f"unknown tool type {tool!r}")


def initialize_frame(req_id: int) -> str:
    """The MCP ``initialize`` request the client sends first on every connection."""
    return json.dumps({
        "jsonrpc": "2.0", "id": req_id, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                   "clientInfo": {"name": "benchmarks.load", "version": "1"}},
    }, separators=(",", ":"))


INITIALIZED_NOTIFICATION = '{"jsonrpc":"2.0","method":"notifications/initialized"}'


def classify(msg: dict[str, Any], call: Call) -> str | None:
    """None when ``msg`` (already matched by id) is a success, else its error kind."""
    err = msg.get("error")
    if err is not None:
        code = err.get("code") if isinstance(err, dict) else None
        return rpc_kind(code)
    result = msg.get("result")
    if result is None:
        if call.accept_echo and msg.get("method") == call.method:
            return None
        return KIND_BAD_RESPONSE
    if call.method != "tools/call":
        return None
    if not isinstance(result, dict):
        return KIND_BAD_RESPONSE
    is_error = result.get("isError")
    if is_error is True:
        return _tool_error_kind(result)
    if is_error is not False:
        return KIND_NO_ISERROR
    if call.expect_text is not None:
        try:
            text = result["content"][0]["text"]
        except (KeyError, IndexError, TypeError):
            return KIND_MISMATCH
        if text != call.expect_text:
            return KIND_MISMATCH
    return None


def _tool_error_kind(result: dict[str, Any]) -> str:
    """Tell an open circuit apart from other tool errors (the overload scenario needs it)."""
    try:
        text = str(result["content"][0]["text"]).lower()
    except (KeyError, IndexError, TypeError):
        return KIND_TOOL_ERROR
    if "circuit" in text and "open" in text:
        return KIND_CIRCUIT_OPEN
    return KIND_TOOL_ERROR
