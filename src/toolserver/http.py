"""Monitoring over plain HTTP on the WebSocket port (websockets' ``process_request`` hook).

websockets hands every opening request to ``process_request`` before the handshake; a
returned ``Response`` is sent as-is and the connection is closed, ``None`` continues the
WebSocket handshake. So one port serves both the MCP endpoint and these routes:

==================  =========================================================
``/health``         200 ``{"status":"ok",...}``; 503 ``"draining"`` while draining
``/metrics``        Prometheus text exposition (``ServerMetrics.prometheus_text``)
``/api/metrics``    ``ServerMetrics.snapshot()`` as JSON, plus ``version``
``/monitoring``     the dashboard page (package data ``static/dashboard.html``)
``/static/<file>``  vendored assets under ``static/`` (``vendor/uPlot...``)
``/monitoring/ws``  WebSocket: one snapshot per second (:func:`monitoring_stream`)
==================  =========================================================

:func:`serve_monitoring` serves the same routes on a separate port instead, for
deployments that keep monitoring off the public WebSocket port.

WebSocket upgrade requests (other than the ones the server routes itself) are never
intercepted, so the MCP hot path pays one dict lookup per *connection*, nothing per
message. Monitoring routes are deliberately unauthenticated (like a health check): they
expose counts, never request contents. The server wraps this hook if it wants a token
check for them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import json
import mimetypes
import time
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from toolserver.metrics import ServerMetrics

__all__ = [
    "MONITORING_WS_PATH",
    "AppState",
    "make_process_request",
    "monitoring_stream",
    "serve_monitoring",
]

MONITORING_WS_PATH = "/monitoring/ws"

ProcessRequest = Callable[[ServerConnection, Request], Response | None]


class AppState(Protocol):
    """What the monitoring routes read from the server's ``ServerState``."""

    metrics: ServerMetrics
    version: str
    started_at: float  # time.monotonic()
    draining: bool
    connection_count: int


def make_process_request(app: AppState) -> ProcessRequest:
    """Return the ``process_request`` hook serving the monitoring routes for ``app``."""
    routes: dict[str, Callable[[AppState], Response]] = {
        "/health": _health,
        "/healthz": _health,
        "/metrics": _prometheus,
        "/api/metrics": _api_metrics,
        "/monitoring": _dashboard,
        "/monitoring/": _dashboard,
    }

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        route = routes.get(path)
        if route is not None:
            return route(app)
        if path.startswith("/static/"):
            return _static(path[len("/static/") :])
        if path == MONITORING_WS_PATH or _is_upgrade(request.headers):
            return None  # WebSocket: MCP endpoint or the dashboard stream
        return _json(http.HTTPStatus.NOT_FOUND, {"error": "not found", "routes": sorted(routes)})

    return process_request


async def serve_monitoring(app: AppState, host: str, port: int) -> Server:
    """Serve the monitoring routes alone on their own port (for a ``--monitoring-port``).

    Same routes and stream as on the WebSocket port, but any other WebSocket upgrade is
    answered 404, so this listener never reaches the MCP handler. The caller closes the
    returned server (``server.close(); await server.wait_closed()``).
    """
    hook = make_process_request(app)

    def only_monitoring(connection: ServerConnection, request: Request) -> Response | None:
        response = hook(connection, request)
        if response is None and request.path.split("?", 1)[0] != MONITORING_WS_PATH:
            return _json(http.HTTPStatus.NOT_FOUND, {"error": "not found"})
        return response

    async def handler(websocket: ServerConnection) -> None:
        await monitoring_stream(websocket, app)

    return await serve(handler, host, port, process_request=only_monitoring, compression=None)


async def monitoring_stream(websocket: ServerConnection, app: AppState) -> None:
    """Serve ``/monitoring/ws``: push a JSON snapshot after every metrics tick (~1 s).

    The first message also carries ``"history"`` (the last few minutes of per-second
    points) so the dashboard's charts are full as soon as it connects. Incoming frames
    are ignored. Once the server drains, one last snapshot (``"draining": true``) is sent
    and the stream closes with 1001, so an open dashboard never holds up shutdown.
    """
    metrics = app.metrics
    first = True
    with contextlib.suppress(ConnectionClosed):
        while True:
            doc = _snapshot(app)
            if first:
                doc["history"] = metrics.history()
                first = False
            await websocket.send(json.dumps(doc, separators=(",", ":")))
            if doc["draining"]:
                await websocket.close(1001, "server draining")
                return
            await _next_tick(app)


async def _next_tick(app: AppState) -> None:
    """Wait for the next metrics tick (at most 1.5 s, in case no ticker task runs), but
    return within a quarter second once the server starts draining."""
    loop = asyncio.get_running_loop()
    waiter = asyncio.ensure_future(app.metrics.wait_tick())
    deadline = loop.time() + 1.5
    try:
        while not waiter.done() and not app.draining and loop.time() < deadline:
            await asyncio.wait([waiter], timeout=0.25)
    finally:
        waiter.cancel()


def _snapshot(app: AppState) -> dict[str, Any]:
    """The /api/metrics document with the server-level fields the metrics don't own."""
    doc = app.metrics.snapshot()
    doc["version"] = app.version
    doc["draining"] = bool(app.draining) or bool(doc.get("draining"))
    return doc


def _health(app: AppState) -> Response:
    draining = bool(app.draining)
    body = {
        "status": "draining" if draining else "ok",
        "uptime_s": round(time.monotonic() - app.started_at, 3),
        "version": app.version,
        "connections": app.connection_count,
    }
    status = http.HTTPStatus.SERVICE_UNAVAILABLE if draining else http.HTTPStatus.OK
    return _json(status, body)


def _prometheus(app: AppState) -> Response:
    return _response(http.HTTPStatus.OK, app.metrics.prometheus_text(), CONTENT_TYPE_LATEST)


def _api_metrics(app: AppState) -> Response:
    return _json(http.HTTPStatus.OK, _snapshot(app))


def _dashboard(app: AppState) -> Response:
    body = _asset("dashboard.html")
    if body is None:
        return _json(http.HTTPStatus.NOT_FOUND, {"error": "dashboard not packaged"})
    return _response(http.HTTPStatus.OK, body, "text/html; charset=utf-8")


def _static(name: str) -> Response:
    """Serve a packaged asset; names are looked up in a fixed listing, so no traversal."""
    body = _asset(name)
    if body is None:
        return _json(http.HTTPStatus.NOT_FOUND, {"error": "not found"})
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        ctype += "; charset=utf-8"
    return _response(http.HTTPStatus.OK, body, ctype, cache="public, max-age=3600")


@lru_cache(maxsize=1)
def _asset_index() -> dict[str, bytes]:
    """Every file under the package's ``static/`` (read once; a few hundred KB)."""
    index: dict[str, bytes] = {}
    root = resources.files("toolserver") / "static"

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.is_file():
                index[prefix + child.name] = child.read_bytes()

    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        walk(root, "")
    return index


def _asset(name: str) -> bytes | None:
    return _asset_index().get(name)


def _json(status: http.HTTPStatus, body: dict[str, Any]) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    return _response(status, data, "application/json")


def _response(
    status: http.HTTPStatus, body: bytes, ctype: str, *, cache: str = "no-store"
) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", ctype),
            ("Cache-Control", cache),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def _is_upgrade(headers: Headers) -> bool:
    """True for a WebSocket opening handshake (``Upgrade: websocket``)."""
    return any(v.lower() == "websocket" for v in headers.get_all("Upgrade"))
