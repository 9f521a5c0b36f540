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
``/``               WebSocket: the MCP endpoint (the server's own handler)
==================  =========================================================

(``/healthz`` and ``/monitoring/`` are aliases.) A plain GET on either WebSocket path
gets 426 Upgrade Required.

:func:`serve_monitoring` serves the same routes on a separate port instead, for
deployments that keep monitoring off the public WebSocket port.

One rule decides where a request goes, :func:`endpoint`: the path (query string
ignored) must be *exactly* one of the routes above (``/static/`` plus a packaged file
name), :data:`MONITORING_WS_PATH` or :data:`MCP_PATH`. Nothing is decoded or
normalised (``/health/``, ``//``, ``/%68ealth``, ``/health/../`` are all unknown), and
an unknown path gets 404 before any WebSocket session opens. The server's bearer-token
check uses the same function, so a path can never be "monitoring" for the token check
and "MCP" for the handler. The MCP hot path pays one dict lookup per *connection*,
nothing per message. Monitoring routes are deliberately unauthenticated (like a health
check): they expose counts, never request contents.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import enum
import http
import json
import mimetypes
import time
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any, Final, Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from toolserver.connection import connection_class
from toolserver.metrics import ServerMetrics

__all__ = [
    "MCP_PATH",
    "MONITORING_WS_PATH",
    "AppState",
    "Endpoint",
    "endpoint",
    "make_process_request",
    "monitoring_stream",
    "serve_monitoring",
]

#: The one path where a WebSocket upgrade reaches the MCP handler.
MCP_PATH: Final = "/"
MONITORING_WS_PATH: Final = "/monitoring/ws"

ProcessRequest = Callable[[ServerConnection, Request], Response | None]


class AppState(Protocol):
    """What the monitoring routes read from the server's ``ServerState``."""

    metrics: ServerMetrics
    version: str
    started_at: float  # time.monotonic()
    draining: bool
    connection_count: int
    #: ``/monitoring/ws`` streams open now (on every port) and their cap.
    monitoring_streams: int
    max_monitoring_streams: int


class Endpoint(enum.Enum):
    """Where a request goes; decided by :func:`endpoint` alone."""

    MCP = "mcp"  # WebSocket: the MCP handler (the only place a token is checked)
    STREAM = "stream"  # WebSocket: /monitoring/ws
    PAGE = "page"  # plain HTTP: /health, /metrics, /api/metrics, /monitoring
    STATIC = "static"  # plain HTTP: a packaged asset
    UNKNOWN = "unknown"  # 404, whatever the method or headers


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


_PAGES: Final[dict[str, Callable[[AppState], Response]]] = {
    "/health": _health,
    "/healthz": _health,
    "/metrics": _prometheus,
    "/api/metrics": _api_metrics,
    "/monitoring": _dashboard,
    "/monitoring/": _dashboard,
}
_STATIC_PREFIX: Final = "/static/"


def endpoint(path: str) -> Endpoint:
    """The endpoint a request target names: exact paths only, the query string ignored.

    Pure and total: every request the server sees goes through this one function, for
    the token check and for the routing alike.
    """
    target = path.partition("?")[0]
    if target == MCP_PATH:
        return Endpoint.MCP
    if target == MONITORING_WS_PATH:
        return Endpoint.STREAM
    if target in _PAGES:
        return Endpoint.PAGE
    if target.startswith(_STATIC_PREFIX) and target[len(_STATIC_PREFIX) :] in _asset_index():
        return Endpoint.STATIC
    return Endpoint.UNKNOWN


def make_process_request(app: AppState, *, mcp: bool = True) -> ProcessRequest:
    """Return the ``process_request`` hook serving the monitoring routes for ``app``.

    ``None`` (go on with the WebSocket handshake) only for a WebSocket upgrade to
    :data:`MONITORING_WS_PATH` or, when ``mcp``, to :data:`MCP_PATH`; every other
    request is answered here, unknown paths with 404.
    """

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        kind = endpoint(request.path)
        target = request.path.partition("?")[0]
        if kind is Endpoint.PAGE:
            return _PAGES[target](app)
        if kind is Endpoint.STATIC:
            return _static(target[len(_STATIC_PREFIX) :])
        if kind is Endpoint.STREAM or (kind is Endpoint.MCP and mcp):
            if _is_upgrade(request.headers):
                return None
            response = _json(
                http.HTTPStatus.UPGRADE_REQUIRED, {"error": "WebSocket endpoint: upgrade"}
            )
            response.headers["Upgrade"] = "websocket"
            return response
        return _json(http.HTTPStatus.NOT_FOUND, {"error": "not found", "routes": sorted(_PAGES)})

    return process_request


async def serve_monitoring(
    app: AppState, host: str, port: int, *, send_timeout: float | None = None
) -> Server:
    """Serve the monitoring routes alone on their own port (for a ``--monitoring-port``).

    Same routes and stream as on the WebSocket port, but an upgrade to the MCP path is
    answered 404, so this listener never reaches the MCP handler. The caller closes the
    returned server (``server.close(); await server.wait_closed()``).
    """

    async def handler(websocket: ServerConnection) -> None:
        await monitoring_stream(websocket, app)

    return await serve(
        handler,
        host,
        port,
        process_request=make_process_request(app, mcp=False),
        compression=None,
        create_connection=connection_class(send_timeout),
    )


async def monitoring_stream(websocket: ServerConnection, app: AppState) -> None:
    """Serve ``/monitoring/ws``: push a JSON snapshot after every metrics tick (~1 s).

    The first message also carries ``"history"`` (the last few minutes of per-second
    points) so the dashboard's charts are full as soon as it connects. Incoming frames
    are ignored. Once the server drains, one last snapshot (``"draining": true``) is sent
    and the stream closes with 1001, so an open dashboard never holds up shutdown.

    Streams have their own cap (``max_monitoring_streams``, every port together), not
    ``--max-connections``: past it a stream is closed at once with 1013.
    """
    if app.monitoring_streams >= app.max_monitoring_streams:
        app.metrics.connection_rejected("stream_capacity")
        await websocket.close(1013, "too many monitoring streams, try again later")
        return
    app.monitoring_streams += 1
    try:
        await _stream(websocket, app)
    finally:
        app.monitoring_streams -= 1


async def _stream(websocket: ServerConnection, app: AppState) -> None:
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
