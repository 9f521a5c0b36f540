"""A bare ``websockets`` echo server: the ceiling for a one-process Python server.

Used (1) to measure where the generator itself saturates, and (2) as side (a) of
``python -m benchmarks.load.versus``. Same start contract as the toolserver: ``--port 0``
binds a free port and the first stdout line is ``listening on ws://HOST:PORT``.

Modes:

* ``raw`` (default): every text frame goes back unchanged, which is the cheapest possible
  handler; the client accepts its own request coming back as the answer (``raw_echo``
  call). Only ``initialize`` gets a real result and notifications get nothing, so the
  client's session start is the same as against the toolserver.
* ``jsonrpc``: parse the request and answer a proper ``tools/call`` echo result, i.e. the
  minimum JSON work any MCP server has to do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

_INIT_RESULT = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                "serverInfo": {"name": "bare-echo", "version": "1"}}


async def _raw(ws: ServerConnection) -> None:
    async for msg in ws:
        if '"initialize"' in msg:
            rid = json.loads(msg).get("id")
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "result": _INIT_RESULT}))
        elif '"notifications/' in msg:
            continue
        else:
            await ws.send(msg)


async def _jsonrpc(ws: ServerConnection) -> None:
    dumps = json.dumps
    async for msg in ws:
        req = json.loads(msg)
        if "id" not in req:
            continue
        method = req.get("method")
        if method == "initialize":
            result: object = _INIT_RESULT
        elif method == "tools/call":
            text = req.get("params", {}).get("arguments", {}).get("text", "")
            result = {"content": [{"type": "text", "text": text}], "isError": False}
        else:
            result = {}
        await ws.send(dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}))


async def main_async(host: str, port: int, mode: str) -> None:
    """Serve until SIGTERM/SIGINT."""
    handler = _raw if mode == "raw" else _jsonrpc
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, host, port, subprotocols=[Subprotocol("mcp")],
                     compression=None, max_size=2**24) as server:
        sock = next(iter(server.sockets))
        h, p = sock.getsockname()[:2]
        print(f"listening on ws://{h}:{p}", flush=True)
        await stop


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.load.bare_echo [--port 0] [--mode raw|jsonrpc]``."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load.bare_echo",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("raw", "jsonrpc"), default="raw")
    ap.add_argument("--no-uvloop", action="store_true")
    args = ap.parse_args(argv)
    if not args.no_uvloop:
        try:
            import uvloop
            uvloop.run(main_async(args.host, args.port, args.mode))
            return
        except ImportError:
            pass
    asyncio.run(main_async(args.host, args.port, args.mode))
    sys.exit(0)


if __name__ == "__main__":
    main()
