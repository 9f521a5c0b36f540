"""Circuit breaker: unit state machine (fake clock) and end to end through a server."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from serverproc import ServerProcess, call, request, rpc, text_of

from toolserver.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpenError

StartServer = Callable[..., ServerProcess]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _ok() -> str:
    return "ok"


async def _fail() -> str:
    raise RuntimeError("upstream down")


def test_breaker_state_machine() -> None:
    clock = Clock()
    breaker = CircuitBreaker("glm", failures=3, cooldown_s=10.0, clock=clock)

    async def scenario() -> None:
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await breaker.call(_fail)
        assert breaker.state == CLOSED
        assert await breaker.call(_ok) == "ok"  # a success resets the count
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await breaker.call(_fail)
        assert breaker.state == OPEN
        with pytest.raises(CircuitOpenError, match="circuit open for provider glm"):
            await breaker.call(_ok)  # fails fast, the function is not called
        clock.now += 10.0
        assert breaker.state == HALF_OPEN
        with pytest.raises(RuntimeError):
            await breaker.call(_fail)  # the trial fails: open again for a full cool-down
        assert breaker.state == OPEN
        clock.now += 9.9
        assert breaker.state == OPEN
        clock.now += 0.1
        assert await breaker.call(_ok) == "ok"
        assert breaker.state == CLOSED
        assert breaker.opened_count == 2

    asyncio.run(scenario())


def test_half_open_admits_a_single_trial_call() -> None:
    clock = Clock()
    breaker = CircuitBreaker("kimi", failures=1, cooldown_s=1.0, clock=clock)

    async def scenario() -> None:
        with pytest.raises(RuntimeError):
            await breaker.call(_fail)
        clock.now += 1.0
        gate = asyncio.Event()

        async def slow_ok() -> str:
            await gate.wait()
            return "ok"

        trial = asyncio.create_task(breaker.call(slow_ok))
        await asyncio.sleep(0)
        with pytest.raises(CircuitOpenError):
            await breaker.call(_ok)  # second caller while the trial runs
        gate.set()
        assert await trial == "ok"
        assert breaker.state == CLOSED

    asyncio.run(scenario())


def _status(ws: Any) -> dict[str, Any]:
    return json.loads(text_of(rpc(ws, call("status", "status"))))  # type: ignore[no-any-return]


def _metrics_breakers(server: ServerProcess) -> dict[str, str]:
    with urllib.request.urlopen(server.http_url + "/api/metrics", timeout=5) as response:
        doc = json.loads(response.read())
    return {name: p["breaker"] for name, p in doc["providers"].items()}


def test_breaker_opens_fails_fast_half_opens_and_closes(start_server: StartServer) -> None:
    server = start_server(
        "--provider-failure-rate", "1", "--provider-latency-ms", "200", "--provider-spread-ms", "0",
        "--breaker-failures", "3", "--breaker-cooldown", "0.6", "--allow-admin",
    )  # fmt: skip
    with server.connect() as ws:
        for i in range(3):
            answer = rpc(ws, call("chat", i, prompt="hi"))
            assert answer["result"]["isError"] is True
            assert "failed" in text_of(answer)
        assert _status(ws)["breakers"] == {"glm": "open", "kimi": "closed"}
        assert _metrics_breakers(server)["glm"] == "open"

        started = time.monotonic()
        answer = rpc(ws, call("chat", "fast", prompt="hi"))
        assert time.monotonic() - started < 0.1, "open circuit did not fail fast (latency 200 ms)"
        assert answer["result"]["isError"] is True
        assert text_of(answer).startswith("circuit open for provider glm")
        # analyze goes through the same breaker
        assert "circuit open for provider glm" in text_of(rpc(ws, call("analyze", "a", text="x")))
        # the other provider is independent (and still failing by injection)
        assert "failed" in text_of(rpc(ws, call("chat", "k", prompt="x", provider="kimi")))

        # Heal the provider at run time, wait out the cool-down: half-open, then closed.
        settings = rpc(ws, request("admin/provider", "heal", provider="glm", failure_rate=0.0))
        assert settings["result"]["failure_rate"] == 0.0
        assert settings["result"]["latency_ms"] == 200.0
        time.sleep(0.7)
        assert _status(ws)["breakers"]["glm"] == "half_open"
        assert _metrics_breakers(server)["glm"] == "half_open"
        answer = rpc(ws, call("chat", "trial", prompt="back"))
        assert answer["result"]["isError"] is False, answer
        assert _status(ws)["breakers"]["glm"] == "closed"
        assert _metrics_breakers(server)["glm"] == "closed"


def test_admin_provider_validation(start_server: StartServer) -> None:
    server = start_server("--allow-admin")
    with server.connect() as ws:
        assert rpc(ws, request("admin/provider", 1, provider="nope"))["error"]["code"] == -32602
        bad_rate = request("admin/provider", 2, provider="glm", failure_rate=2)
        assert rpc(ws, bad_rate)["error"]["code"] == -32602
        changed = rpc(ws, request("admin/provider", 3, provider="kimi", latency_ms=1, spread_ms=0))
        assert changed["result"]["latency_ms"] == 1
        assert changed["result"]["spread_ms"] == 0
        started = time.monotonic()
        assert "x" in text_of(rpc(ws, call("chat", 4, prompt="x", provider="kimi")))
        assert time.monotonic() - started < 0.5


def test_admin_provider_settings_are_bounded(start_server: StartServer) -> None:
    """Like echo's delay_ms: no admin call can park every chat for hours (issue 19)."""
    server = start_server("--allow-admin")
    too_much: list[dict[str, float]] = [
        {"latency_ms": 10_001},
        {"latency_ms": 1e300},
        {"spread_ms": 10_001},
        {"tokens": 32_769},
        {"tokens": 10**30},
    ]
    with server.connect() as ws:
        for i, settings in enumerate(too_much):
            answer = rpc(ws, request("admin/provider", i, provider="glm", **settings))
            assert answer["error"]["code"] == -32602, (settings, answer)
        # Nothing was applied, and the ceilings themselves are accepted.
        edge = rpc(ws, request("admin/provider", "edge", provider="glm", latency_ms=10_000,
                               spread_ms=10_000, tokens=32_768))  # fmt: skip
        assert edge["result"]["latency_ms"] == 10_000
        restored = rpc(ws, request("admin/provider", "back", provider="glm", latency_ms=1,
                                   spread_ms=0, tokens=8))  # fmt: skip
        assert restored["result"]["tokens"] == 8
        assert "8 tokens" in text_of(rpc(ws, call("chat", "c", prompt="x")))
