"""One exact-path rule for the token check and the routing (issue 19: token bypass).

The bypass this guards against: the token check skipped every path that *started
with* a monitoring prefix and the HTTP hook let unknown upgrades through, so
``/metrics/``, ``/monitoringx`` or ``/health/../`` opened an MCP session without the
token, ``admin/provider`` included. Now MCP is served on ``/`` only, monitoring routes
are exact paths, and everything else is 404 before any session opens. Request targets
go out byte for byte on a raw socket (the ``websockets`` client is used too, for the
variants it can express).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess, call, request, rpc, text_of
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from benchmarks.load import rawws

TOKEN = "s3cret"
AUTH = b"Authorization: Bearer " + TOKEN.encode()

#: Paths that are not an endpoint: near misses of every route, traversal, encodings.
NOT_ENDPOINTS = [
    "/metrics/", "/monitoringx", "/health/../", "//", "//health", "/%2F", "/%2f",
    "/health/", "/healthx", "/api/metrics/", "/api/metricsx", "/api", "/monitoring/ws/",
    "/monitoring/wsx", "/monitoring/ws/..", "/%6Donitoring/ws", "/monitoring%2Fws",
    "/mcp", "/mcp/", "/./", "/static/", "/static/nope.js", "/static/../http.py",
    "/static/vendor/", "/..", "/%00", "/index.html", "*", "http://127.0.0.1/",
    "/metrics/?x=1", "//?a=b",
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A token server with the admin method: the worst case for a bypass."""
    proc = ServerProcess(tmp_path_factory.mktemp("routing"), "--token", TOKEN, "--allow-admin")
    yield proc
    proc.kill()


def _mcp_answers(sock: socket.socket) -> dict[str, dict[str, Any]]:
    """Send echo + admin/provider on an open raw session; return both answers by id."""
    sock.sendall(rawws.frame(call("echo", "echo", text="reached")))
    sock.sendall(rawws.frame(request("admin/provider", "admin", provider="glm")))
    answers = {}
    for _ in range(2):
        opcode, payload = rawws.read_frame(sock)
        assert opcode == rawws.OP_TEXT
        msg = json.loads(payload)
        answers[msg["id"]] = msg
    return answers


@pytest.mark.parametrize("path", NOT_ENDPOINTS)
def test_an_upgrade_to_any_other_path_is_404_with_or_without_the_token(
    server: ServerProcess, path: str
) -> None:
    for headers in ([], [AUTH]):
        sock, head = rawws.handshake(server.port, path, headers)
        with sock:
            assert rawws.status(head) == 404, (path, headers, head)
            assert sock.recv(65536).startswith(b"{"), "expected the 404 body, then close"
    assert server.proc.poll() is None


@pytest.mark.parametrize("path", ["/metrics/", "/monitoringx", "/health/../", "/static/x", "//"])
def test_the_verified_bypasses_fail_with_the_websockets_client(
    server: ServerProcess, path: str
) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(server.url + path, subprotocols=["mcp"], open_timeout=5)  # type: ignore[list-item]
    assert info.value.response.status_code == 404


@pytest.mark.parametrize("path", ["/", "/?", "/?x=1", "/?/health", "/?token=s3cret"])
def test_the_mcp_path_needs_the_token_whatever_the_query_string(
    server: ServerProcess, path: str
) -> None:
    sock, head = rawws.handshake(server.port, path)
    with sock:
        assert rawws.status(head) == 401, head
        assert b'www-authenticate: bearer realm="toolserver"' in head.lower()
    sock, head = rawws.handshake(server.port, path, [AUTH])
    with sock:
        assert rawws.status(head) == 101, head
        answers = _mcp_answers(sock)
    assert text_of(answers["echo"]) == "reached"
    assert "result" in answers["admin"]


@pytest.mark.parametrize(
    "path",
    ["/health", "/health?probe=1", "/healthz", "/metrics", "/metrics?name[]=x", "/api/metrics",
     "/monitoring", "/monitoring/", "/static/vendor/uPlot.min.css"],
)  # fmt: skip
def test_monitoring_routes_are_open_and_never_a_session(server: ServerProcess, path: str) -> None:
    for upgrade in (False, True):
        sock, head = rawws.handshake(server.port, path, upgrade=upgrade)
        with sock:
            assert rawws.status(head) == 200, (path, upgrade, head)


def test_the_monitoring_stream_is_no_mcp_session(server: ServerProcess) -> None:
    sock, head = rawws.handshake(server.port, "/monitoring/ws?x=1")
    with sock:
        assert rawws.status(head) == 101, head
        sock.sendall(rawws.frame(call("echo", "echo", text="reached")))
        for _ in range(2):  # snapshots, one per tick; never a JSON-RPC answer
            opcode, payload = rawws.read_frame(sock)
            doc = json.loads(payload)
            assert opcode == rawws.OP_TEXT and doc["schema"] == 1 and "jsonrpc" not in doc


def test_a_plain_get_on_a_websocket_path_is_426(server: ServerProcess) -> None:
    sock, head = rawws.handshake(server.port, "/monitoring/ws", upgrade=False)
    with sock:
        assert rawws.status(head) == 426, head
    sock, head = rawws.handshake(server.port, "/", [AUTH], upgrade=False)
    with sock:
        assert rawws.status(head) == 426, head


def test_without_a_token_mcp_is_still_only_on_its_path(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path)
    try:
        for path in ("/metrics/", "/monitoringx", "/health/../", "/mcp"):
            sock, head = rawws.handshake(proc.port, path)
            with sock:
                assert rawws.status(head) == 404, (path, head)
        with proc.connect() as ws:
            assert rpc(ws, request("ping"))["result"] == {}
    finally:
        proc.kill()


# --- the Authorization header ----------------------------------------------------------

BAD_AUTHORIZATION: list[tuple[str, list[bytes]]] = [
    ("raw non-UTF-8", [b"Authorization: Bearer \xff\xfe"]),
    ("token then raw bytes", [AUTH + b"\xff"]),
    ("UTF-8 e-acute", ["Authorization: Bearer é".encode()]),
    ("latin-1 e-acute", [b"Authorization: Bearer s3cr\xe9t"]),
    ("only high bytes", [b"Authorization: " + bytes(range(0x80, 0x100))]),
    ("empty", [b"Authorization: "]),
    ("no scheme", [b"Authorization: " + TOKEN.encode()]),
    ("token prefix", [b"Authorization: Bearer s3cre"]),
    ("token twice", [AUTH, AUTH]),
    ("wrong then right", [b"Authorization: Bearer nope", AUTH]),
]


@pytest.mark.parametrize(
    "headers", [case[1] for case in BAD_AUTHORIZATION], ids=[case[0] for case in BAD_AUTHORIZATION]
)
def test_a_bad_authorization_header_gets_a_clean_401(
    server: ServerProcess, headers: list[bytes]
) -> None:
    sock, head = rawws.handshake(server.port, "/", headers)
    with sock:
        assert rawws.status(head) == 401, head
    assert "Traceback" not in server.stderr()
    with server.connect(additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert rpc(ws, request("ping"))["result"] == {}


def test_a_non_ascii_token_is_compared_on_its_utf8_bytes(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, env={"TOOLSERVER_TOKEN": "clé-ü"})
    try:
        sock, head = rawws.handshake(proc.port, "/", ["Authorization: Bearer clé-ü".encode()])
        with sock:
            assert rawws.status(head) == 101, head
        latin1 = "Authorization: Bearer clé-ü".encode("latin-1")
        sock, head = rawws.handshake(proc.port, "/", [latin1])
        with sock:
            assert rawws.status(head) == 401, head
        assert "Traceback" not in proc.stderr()
    finally:
        proc.kill()
