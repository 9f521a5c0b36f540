"""A small real MCP-over-WebSocket client that tallies exactly what it sent and got back.

The monitoring tests compare the server's counters with these tallies, so every frame
sent and every response received is counted here, by outcome.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

BUSY = -32001


@dataclass
class Tally:
    """What one client run did, by the same outcomes the server counts."""

    connections: int = 0
    sent: int = 0
    received: int = 0
    ok: int = 0
    tool_error: int = 0
    busy: int = 0
    error: int = 0
    by_tool: dict[str, dict[str, int]] = field(default_factory=dict)

    def record(self, tool: str, response: dict[str, Any]) -> None:
        """Classify one response the way the server's ``request_done`` outcome does."""
        self.received += 1
        if "error" in response:
            outcome = "busy" if response["error"].get("code") == BUSY else "error"
        elif response.get("result", {}).get("isError"):
            outcome = "tool_error"
        else:
            outcome = "ok"
        setattr(self, outcome, getattr(self, outcome) + 1)
        per = self.by_tool.setdefault(tool, {"ok": 0, "tool_error": 0, "error": 0, "busy": 0})
        per[outcome] += 1


_ids = itertools.count(1)


def tool_call(name: str, **arguments: Any) -> dict[str, Any]:
    """A ``tools/call`` request with a fresh id."""
    return {
        "jsonrpc": "2.0",
        "id": next(_ids),
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


async def send_batch(ws: ClientConnection, batch: list[dict[str, Any]], tally: Tally) -> None:
    """Send a batch of requests back to back (they run concurrently), then read every answer."""
    tools = {req["id"]: req["params"]["name"] for req in batch}
    for req in batch:
        await ws.send(json.dumps(req))
        tally.sent += 1
    for _ in batch:
        resp = json.loads(await ws.recv())
        tally.record(tools[resp["id"]], resp)


async def burst(url: str, connections: int, batches: list[list[dict[str, Any]]]) -> Tally:
    """Each of ``connections`` connections sends every batch in turn; return the tally."""
    tally = Tally()

    async def one() -> None:
        async with connect(url, subprotocols=["mcp"], compression=None) as ws:  # type: ignore[list-item]
            tally.connections += 1
            for batch in batches:
                # fresh ids per connection so responses map back unambiguously
                await send_batch(
                    ws,
                    [tool_call(r["params"]["name"], **r["params"]["arguments"]) for r in batch],
                    tally,
                )

    await asyncio.gather(*(one() for _ in range(connections)))
    return tally


class BackgroundTraffic:
    """Mixed traffic from a thread until stopped: echo, chat (provider calls) and bursts
    bigger than the per-connection cap (overload rejections), so every dashboard figure
    moves. ``tally`` is exact once :meth:`stop` returns."""

    def __init__(
        self, url: str, connections: int = 3, burst_every: int = 8, stagger_s: float = 0.0
    ) -> None:
        self.url = url
        self.stagger_s = stagger_s
        self.connections = connections
        self.burst_every = burst_every
        self.tally = Tally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> BackgroundTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Tally:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error is not None:
            raise self.error
        return self.tally

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    async def _main(self) -> None:
        await asyncio.gather(*(self._conn(i) for i in range(self.connections)))

    async def _conn(self, index: int) -> None:
        # staggered start: the charts show the load stepping up connection by connection
        deadline = asyncio.get_running_loop().time() + index * self.stagger_s
        while not self._stop.is_set() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        async with connect(self.url, subprotocols=["mcp"], compression=None) as ws:  # type: ignore[list-item]
            self.tally.connections += 1
            for n in itertools.count():
                if self._stop.is_set():
                    return
                if n % self.burst_every == self.burst_every - 1:
                    batch = [tool_call("echo", text="burst", delay_ms=30) for _ in range(24)]
                else:
                    batch = [tool_call("echo", text=f"c{index} m{n} {k}") for k in range(8)]
                    batch.append(tool_call("chat", prompt="hello"))
                await send_batch(ws, batch, self.tally)
                await asyncio.sleep(0.01)
