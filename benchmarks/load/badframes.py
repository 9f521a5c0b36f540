"""The bad-input corpus: frames a client should not send, each with the answer it must get.

Pure (no I/O) and seeded, so the ``bad_input`` scenario (which sends it at a server under
load) and the CI fuzz test (which checks every answer) share one oracle. The expected
answers follow the wire contract of docs/ARCHITECTURE.md section 2, never the server's
code: -32700 for what is not JSON (binary frames, nesting deeper than the parser allows,
integers over Python's 4300-digit limit included), -32600 for JSON that is not a
JSON-RPC 2.0 request (the id echoed when it is valid, else ``null``), -32601 for unknown
methods, -32602 for bad tool names or arguments, no answer for notifications and client
responses, and a normal result for frames that are odd but valid (huge valid ids, an
``initialize`` asking for an unknown protocol version).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602

@dataclass(frozen=True)
class BadFrame:
    """One frame and what the server must answer.

    ``code`` is the JSON-RPC error code, ``0`` for a result (the frame is odd but valid),
    ``None`` for no answer at all. ``id`` is the id the answer carries (``None``: null).
    """

    kind: str
    frame: str | bytes
    code: int | None
    id: str | int | None

    @property
    def answered(self) -> bool:
        return self.code is not None


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


def _req(id_: Any, method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        doc["params"] = params
    doc.update(extra)
    return doc


def _call(id_: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return _req(id_, "tools/call", {"name": name, "arguments": arguments})


#: Values of every JSON type but one, to put where that type is expected.
_NOT_STRING: tuple[Any, ...] = (5, -1.5, None, True, [], ["x"], {}, {"a": 1})
_NOT_OBJECT: tuple[Any, ...] = (5, 0.5, "x", "", True, [], [{}])
_NOT_NUMBER: tuple[Any, ...] = ("5", None, True, [], {}, [1])
_BAD_IDS: tuple[Any, ...] = (1.5, -0.5, 1e400, True, False, [], [1], {}, {"id": 1})

Maker = Callable[[random.Random, str], BadFrame]


def _wrong_jsonrpc(rng: random.Random, id_: str) -> BadFrame:
    value: Any = rng.choice([2.0, 2, "1.0", "2", "2.0 ", None, [], {}, True])
    doc = _req(id_, "ping", {})
    doc["jsonrpc"] = value
    return BadFrame("wrong_type:jsonrpc", _dumps(doc), INVALID_REQUEST, id_)


def _missing_jsonrpc(rng: random.Random, id_: str) -> BadFrame:
    doc = _req(id_, rng.choice(["ping", "tools/list", "initialize"]), {})
    del doc["jsonrpc"]
    return BadFrame("missing:jsonrpc", _dumps(doc), INVALID_REQUEST, id_)


def _wrong_method(rng: random.Random, id_: str) -> BadFrame:
    doc = _req(id_, "ping", {})
    doc["method"] = rng.choice(_NOT_STRING)
    return BadFrame("wrong_type:method", _dumps(doc), INVALID_REQUEST, id_)


def _missing_method(rng: random.Random, id_: str) -> BadFrame:
    doc = _req(id_, "ping", {"x": 1})
    del doc["method"]
    return BadFrame("missing:method", _dumps(doc), INVALID_REQUEST, id_)


def _wrong_params(rng: random.Random, id_: str) -> BadFrame:
    method = rng.choice(["ping", "tools/call", "tools/list", "initialize", "nope/x"])
    doc = _req(id_, method, rng.choice(_NOT_OBJECT))
    return BadFrame("wrong_type:params", _dumps(doc), INVALID_REQUEST, id_)


def _wrong_id(rng: random.Random, id_: str) -> BadFrame:
    doc = _req(rng.choice(_BAD_IDS), rng.choice(["ping", "tools/call"]), {})
    return BadFrame("wrong_type:id", _dumps(doc), INVALID_REQUEST, None)


def _null_id(rng: random.Random, id_: str) -> BadFrame:
    return BadFrame("null_id", _dumps(_req(None, "ping", {})), INVALID_REQUEST, None)


def _huge_valid_id(rng: random.Random, id_: str) -> BadFrame:
    unique = int.from_bytes(id_.encode(), "big")  # keeps ids unique within a stream
    big: str | int = rng.choice([2**70 + unique, -(2**200) - unique, 10**4000 + unique])
    if rng.random() < 0.5:
        big = id_ + "x" * rng.randrange(1000, 20_000)  # a long string id
    return BadFrame("huge_id", _dumps(_req(big, "ping", {})), 0, big)


def _huge_invalid_id(rng: random.Random, id_: str) -> BadFrame:
    # JSON has no size limit on numbers, Python refuses int literals over 4300 digits.
    frame = '{"jsonrpc":"2.0","id":' + "9" * rng.randrange(4400, 20_000) + ',"method":"ping"}'
    return BadFrame("huge_id:over_4300_digits", frame, PARSE_ERROR, None)


def _unknown_method(rng: random.Random, id_: str) -> BadFrame:
    # (not admin/provider: a server run with --allow-admin knows it)
    method = rng.choice(["resources/list", "prompts/get", "tools/run", "", "ping ", "PING",
                         "tools/call/x", "notifications/initialized", f"x/{rng.randrange(10**9)}"])
    return BadFrame("unknown_method", _dumps(_req(id_, method, {})), METHOD_NOT_FOUND, id_)


def _wrong_tool_name(rng: random.Random, id_: str) -> BadFrame:
    name = rng.choice([*_NOT_STRING, "nope", "ECHO", "echo ", "", "../echo"])
    return BadFrame("wrong_type:name", _dumps(_call(id_, name, {})), INVALID_PARAMS, id_)


def _missing_tool_name(rng: random.Random, id_: str) -> BadFrame:
    doc = _req(id_, "tools/call", {"arguments": {"text": "x"}})
    return BadFrame("missing:name", _dumps(doc), INVALID_PARAMS, id_)


def _wrong_arguments(rng: random.Random, id_: str) -> BadFrame:
    tool = rng.choice(["echo", "status", "chat", "analyze", "listmodels"])
    arguments = rng.choice([v for v in _NOT_OBJECT if v is not None])
    doc = _call(id_, tool, arguments)
    return BadFrame("wrong_type:arguments", _dumps(doc), INVALID_PARAMS, id_)


#: tool -> argument -> values it must refuse (wrong type or out of range).
_BAD_ARGUMENTS: dict[str, dict[str, tuple[Any, ...]]] = {
    "echo": {"text": _NOT_STRING, "delay_ms": (*_NOT_NUMBER, -1, 10_001, 1e300)},
    "chat": {"prompt": _NOT_STRING, "provider": (*_NOT_STRING, "openai", "GLM", ""),
             "model": _NOT_STRING, "max_tokens": (*_NOT_NUMBER, 0, 32_769, 1.5)},
    "analyze": {"text": _NOT_STRING, "provider": (5, "x"),
                "steps": (*_NOT_NUMBER, 0, 9, 2.5, -3)},
    "listmodels": {"provider": (*_NOT_STRING, "nope")},
}
_VALID_ARGUMENTS: dict[str, dict[str, Any]] = {
    "echo": {"text": "x"}, "chat": {"prompt": "x"}, "analyze": {"text": "x"},
    "listmodels": {},
}


def _wrong_argument(rng: random.Random, id_: str) -> BadFrame:
    tool = rng.choice(sorted(_BAD_ARGUMENTS))
    field = rng.choice(sorted(_BAD_ARGUMENTS[tool]))
    arguments = dict(_VALID_ARGUMENTS[tool])
    arguments[field] = rng.choice(_BAD_ARGUMENTS[tool][field])
    return BadFrame(f"wrong_type:{tool}.{field}", _dumps(_call(id_, tool, arguments)),
                    INVALID_PARAMS, id_)


def _missing_argument(rng: random.Random, id_: str) -> BadFrame:
    tool = rng.choice(["echo", "chat", "analyze"])
    return BadFrame(f"missing:{tool}.required", _dumps(_call(id_, tool, {})), INVALID_PARAMS,
                    id_)


def _extra_argument(rng: random.Random, id_: str) -> BadFrame:
    tool = rng.choice(["echo", "status", "chat", "listmodels"])
    arguments = dict(_VALID_ARGUMENTS.get(tool, {}))
    arguments[rng.choice(["colour", "Text", "__proto__", "delay"])] = 1
    return BadFrame("extra_argument", _dumps(_call(id_, tool, arguments)), INVALID_PARAMS, id_)


def _nested_argument(rng: random.Random, id_: str) -> BadFrame:
    depth = rng.randrange(20, 200)  # valid JSON, just deep, where no nesting is allowed
    deep: Any = "x"
    for _ in range(depth):
        deep = [deep] if rng.random() < 0.5 else {"a": deep}
    doc = _call(id_, "echo", {"text": "x", "nested": deep})
    return BadFrame("deep_nesting:argument", _dumps(doc), INVALID_PARAMS, id_)


def _too_deep(rng: random.Random, id_: str) -> BadFrame:
    depth = rng.randrange(1500, 20_000)
    if rng.random() < 0.5:
        frame = "[" * depth + "]" * depth
    else:
        frame = '{"jsonrpc":"2.0","id":1,"method":"ping","params":' + '{"a":' * depth + "1" \
            + "}" * depth + "}"
    return BadFrame("deep_nesting:over_parser_limit", frame, PARSE_ERROR, None)


_MALFORMED = ("", " ", "{", "}", "[1,]", '{"a" 1}', "{'jsonrpc':'2.0'}", "nul", "tru",
              '"unterminated', '{"jsonrpc":"2.0","id":1,"method":"ping"', "\x00", "\ufeff{}",
              '{"jsonrpc":"2.0","id":1,"method":"ping"}}', '{"id":01}', '{"id":1.}',
              '{"jsonrpc":"2.0",}', "[" * 10, "\\u0000", '{"a":"\\x"}')


def _malformed(rng: random.Random, id_: str) -> BadFrame:
    if rng.random() < 0.5:
        return BadFrame("malformed_json", rng.choice(_MALFORMED), PARSE_ERROR, None)
    # Any strict prefix of a compact JSON object is invalid JSON (its "}" is missing).
    whole = _dumps(_call(id_, "echo", {"text": "truncated " * rng.randrange(1, 5)}))
    return BadFrame("malformed_json:truncated", whole[: rng.randrange(1, len(whole))],
                    PARSE_ERROR, None)


def _not_a_request(rng: random.Random, id_: str) -> BadFrame:
    frame = rng.choice(["17", "-1", '"ping"', "null", "true", "NaN", "1e400", "[]",
                        _dumps([_req(id_, "ping")]), _dumps([1, 2])])
    return BadFrame("not_a_request", frame, INVALID_REQUEST, None)


def _binary(rng: random.Random, id_: str) -> BadFrame:
    payload = rng.choice([_dumps(_req(id_, "ping")).encode(), b"\x00\xff" * 8,
                          bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))])
    return BadFrame("binary_frame", payload, PARSE_ERROR, None)


def _notification(rng: random.Random, id_: str) -> BadFrame:
    doc = rng.choice([{"jsonrpc": "2.0", "method": "notifications/whatever"},
                      {"jsonrpc": "2.0", "method": "tools/call",
                       "params": {"name": "nope", "arguments": 5}},
                      {"jsonrpc": "2.0", "id": id_, "result": {}},
                      {"jsonrpc": "2.0", "id": id_, "error": {"code": 1, "message": "x"}}])
    return BadFrame("no_answer:notification_or_response", _dumps(doc), None, None)


def _odd_but_valid(rng: random.Random, id_: str) -> BadFrame:
    doc = rng.choice([
        _req(id_, "initialize", {"protocolVersion": rng.choice([5, "1999-01-01", None])}),
        _req(id_, "ping", None),
        _call(id_, "echo", {"text": "\ud800 lone surrogate, ☃, \x00"}),
        _call(id_, "listmodels", None),
    ])
    return BadFrame("odd_but_valid", json.dumps(doc), 0, id_)


#: Kind of frame -> weight in the mix (unknown methods: the "flood" of the corpus).
MAKERS: dict[str, tuple[Maker, int]] = {
    "wrong_jsonrpc": (_wrong_jsonrpc, 3), "missing_jsonrpc": (_missing_jsonrpc, 1),
    "wrong_method": (_wrong_method, 3), "missing_method": (_missing_method, 1),
    "wrong_params": (_wrong_params, 3), "wrong_id": (_wrong_id, 3), "null_id": (_null_id, 1),
    "huge_valid_id": (_huge_valid_id, 2), "huge_invalid_id": (_huge_invalid_id, 1),
    "unknown_method": (_unknown_method, 12), "wrong_tool_name": (_wrong_tool_name, 3),
    "missing_tool_name": (_missing_tool_name, 1), "wrong_arguments": (_wrong_arguments, 3),
    "wrong_argument": (_wrong_argument, 8), "missing_argument": (_missing_argument, 2),
    "extra_argument": (_extra_argument, 2), "nested_argument": (_nested_argument, 2),
    "too_deep": (_too_deep, 2), "malformed": (_malformed, 6),
    "not_a_request": (_not_a_request, 3), "binary": (_binary, 3),
    "notification": (_notification, 2), "odd_but_valid": (_odd_but_valid, 2),
}  # fmt: skip


def corpus(seed: int, *, prefix: str = "b") -> Iterator[BadFrame]:
    """Endless seeded stream of bad frames; ids are ``f"{prefix}{n}"`` (unique per stream)."""
    rng = random.Random(seed)
    names = sorted(MAKERS)
    weights = [MAKERS[name][1] for name in names]
    n = 0
    while True:
        n += 1
        maker = MAKERS[rng.choices(names, weights)[0]][0]
        yield maker(rng, f"{prefix}{n}")


def answer_matches(expected: BadFrame, answer: dict[str, Any]) -> bool:
    """True when ``answer`` is what ``expected`` says the server must send."""
    if answer.get("jsonrpc") != "2.0" or answer.get("id") != expected.id:
        return False
    if expected.code == 0:
        return "result" in answer and "error" not in answer
    error = answer.get("error")
    return (isinstance(error, dict) and error.get("code") == expected.code
            and isinstance(error.get("message"), str))


#: Largest frame the corpus makes (the 20 000-deep nesting): the server's
#: --max-frame-bytes must be at least this for every frame to be answered.
MAX_FRAME_BYTES = 128 * 1024
