"""Clients that never read: bounded by ``--send-timeout`` (close 1008), slot freed.

Before the fix a client with a zero receive window held its connection, its queued
frames and its ``--max-connections`` slot forever: ``send()`` waited for the write
buffer to drain, and so did the keepalive ping that would otherwise have noticed.
The non-reading client here is a raw socket with a tiny receive buffer that pipelines
large echo calls and never reads; a real ``websockets`` client keeps being served
next to it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable

import pytest
from serverproc import ServerProcess, call, request, rpc, text_of
from websockets.exceptions import ConnectionClosed

from benchmarks.load import rawws

StartServer = Callable[..., ServerProcess]

#: Echo text per call: 64 calls make 12 MiB of answers, far over the kernel's socket
#: buffers plus the server's 256 KiB write limit, so the server's writes must block.
TEXT = "x" * (192 * 1024)


def _non_reader(port: int, calls: int = 64) -> tuple[socket.socket, int]:
    """Open a session, pipeline echo calls until they are all out or the server stops
    reading (TCP back-pressure), and never read. Returns the socket and the calls sent.
    """
    sock, head = rawws.handshake(port, "/", rcvbuf=4096)
    assert rawws.status(head) == 101, head
    frame = rawws.frame(call("echo", "big", text=TEXT))
    sock.settimeout(0.5)  # no progress for 0.5 s: the server stopped reading us
    sent = 0
    try:
        while sent < calls:
            sock.sendall(frame)
            sent += 1
    except (TimeoutError, OSError):
        pass
    return sock, sent


def _api(server: ServerProcess) -> dict[str, object]:
    with urllib.request.urlopen(server.http_url + "/api/metrics", timeout=5) as response:
        doc: dict[str, object] = json.loads(response.read())
    return doc


def _connections(server: ServerProcess) -> dict[str, object]:
    conns = _api(server)["connections"]
    assert isinstance(conns, dict)
    return conns


def _closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Read what is buffered until the server's close shows (EOF or reset)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(1 << 20):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def test_clients_that_never_read_are_closed_and_free_their_slots(
    start_server: StartServer,
) -> None:
    server = start_server("--max-connections", "3", "--send-timeout", "2.5")
    with server.connect() as good:
        stuck = [_non_reader(server.port) for _ in range(2)]
        try:
            # Both hold a slot for now: the server is full.
            assert _connections(server)["current"] == 3
            with server.connect() as late, pytest.raises(ConnectionClosed) as info:
                late.recv(5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1013
            # The well-behaved client is served all along, then the stuck ones are cut.
            deadline = time.monotonic() + 20
            while True:
                started = time.monotonic()
                assert rpc(good, request("ping", "p"), timeout=5)["result"] == {}
                assert time.monotonic() - started < 2.0, "a non-reading client stalled others"
                conns = _connections(server)
                if conns["rejected_by_reason"].get("send_timeout") == 2:  # type: ignore[attr-defined]
                    break
                assert time.monotonic() < deadline, f"non-readers never closed: {conns}"
                time.sleep(0.1)
            assert conns["current"] == 1
            for sock, _ in stuck:
                assert _closed_by_peer(sock), "the server did not close the non-reading client"
        finally:
            for sock, _ in stuck:
                sock.close()
        # Their slots are free again.
        with server.connect() as again:
            assert text_of(rpc(again, call("echo", 1, text="room again"))) == "room again"
        assert text_of(rpc(good, call("echo", 2, text="still served"))) == "still served"
    assert server.terminate() == 0
    assert "Traceback" not in server.stderr()


def test_a_slow_but_reading_client_is_not_cut(start_server: StartServer) -> None:
    """The timeout bounds each stalled send, not the whole transfer: a client that keeps
    reading makes room within the timeout every time and keeps its connection, however
    long it takes overall."""
    server = start_server("--send-timeout", "2")
    calls = 24  # 4.5 MiB of answers: more than the kernel buffers hold, so writes block
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", server.port))
    with server.connect(sock=sock, max_size=None, max_queue=2) as ws:
        for i in range(calls):
            ws.send(call("echo", i, text=TEXT))
        started = time.monotonic()
        for _ in range(calls):
            time.sleep(0.1)  # about 2 MB/s
            assert "result" in json.loads(ws.recv(10))
        assert time.monotonic() - started > 2.0  # slower overall than the timeout
    assert _connections(server)["rejected_by_reason"].get("send_timeout") is None  # type: ignore[attr-defined]
