"""Nothing a client sends can stop the server or hurt other clients."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from serverproc import ServerProcess, call, request, rpc, text_of

StartServer = Callable[..., ServerProcess]


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**70, 1.5, float("1e308")])
    if kind == 2:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(12)))
    if kind == 3:
        return rng.choice(["2.0", "tools/call", "echo", "ping", "initialize", "chat"])
    if kind == 4:
        return rng.randrange(-5, 5)
    if kind in (5, 6):
        keys = ["jsonrpc", "id", "method", "params", "name", "arguments", "text", "delay_ms",
                "provider", "steps", "prompt", "result", "error"]  # fmt: skip
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(6))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_random_frames_never_break_the_connection(start_server: StartServer) -> None:
    server = start_server("--provider-latency-ms", "1", "--max-frame-bytes", "65536")
    rng = random.Random(1234)
    with server.connect() as ws, server.connect() as bystander:
        for i in range(400):
            doc = _random_json(rng)
            if isinstance(doc, dict) and rng.random() < 0.5:
                doc = {"jsonrpc": "2.0", "id": f"f{i}", "method": "tools/call",
                       "params": {"name": rng.choice(["echo", "chat", "analyze", "status",
                                                      "listmodels", "x"]),
                                  "arguments": doc}}  # fmt: skip
            frame: str | bytes = json.dumps(doc)
            if rng.random() < 0.1:
                frame = frame[: rng.randrange(len(frame) + 1)]  # truncated
            if rng.random() < 0.05:
                frame = frame.encode()  # binary
            ws.send(frame)
        # Everything sent so far is answered or ignored; a ping gets through behind it.
        ws.send(request("ping", "sentinel"))
        deadline = time.monotonic() + 20
        while True:
            msg = json.loads(ws.recv(20))
            assert "result" in msg or msg["error"]["code"] in (-32700, -32600, -32601, -32602)
            if msg.get("id") == "sentinel":
                break
            assert time.monotonic() < deadline
        assert text_of(rpc(bystander, call("echo", 1, text="fine"))) == "fine"
    assert server.proc.poll() is None


def test_client_vanishing_mid_call_frees_its_slots(start_server: StartServer) -> None:
    server = start_server("--max-inflight", "4")
    for _ in range(3):
        with server.connect() as ws:
            for i in range(4):
                ws.send(call("echo", i, text="never read", delay_ms=5000))
            time.sleep(0.1)
        # the connection is closed with 4 calls in flight
    time.sleep(0.3)
    with server.connect() as ws:
        status = json.loads(text_of(rpc(ws, call("status", "s"))))
        assert status["inflight"] == 0
        assert text_of(rpc(ws, call("echo", "e", text="slots free", delay_ms=1))) == "slots free"
    assert server.terminate() == 0
    statuses = sorted(row[4] for row in server.rows())
    assert statuses.count("cancelled") == 12


def test_cli_help_and_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "toolserver", "serve", "--help"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    flags = (
        "--port", "--token", "--max-connections", "--max-inflight-per-connection",
        "--max-frame-bytes", "--provider-latency-ms", "--provider-base-url",
        "--breaker-failures", "--request-log", "--allow-admin", "--drain-timeout",
        "--send-timeout", "--max-queued-frames", "--max-monitoring-streams",
        "--request-log-max-queue", "--request-log-timeout",
    )  # fmt: skip
    for flag in flags:
        assert flag in out
    assert "listening on ws://HOST:PORT" in out
    version = subprocess.run(
        [sys.executable, "-m", "toolserver", "--version"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert version.startswith("toolserver ")
