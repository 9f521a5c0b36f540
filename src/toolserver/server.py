"""The I/O layer: websockets' asyncio server around the sans-I/O protocol core.

Hot path, per text frame on one connection:

1. :func:`toolserver.protocol.parse` (one ``json.loads``) gives a request or
   an error frame.
2. A dict lookup picks the method; ``tools/call`` looks up the tool and runs
   its pre-compiled fastjsonschema validator.
3. Tools that need no I/O (``echo`` without delay, ``status``, ...) are
   answered inline: no task, no queue. Tools that wait (timers, providers)
   become one task each, so a slow call never delays a fast one behind it on
   the same connection; their answers go out whenever they are ready, each
   carrying its request id.
4. One tuple is appended to the request log's deque and the metrics hooks
   bump plain counters; nothing is formatted or logged per message.
5. After ``TURN_S`` of back-to-back messages a connection yields to the event
   loop once, so a client pipelining large frames cannot starve the others.

Everything that must not hurt other clients (bad JSON, oversized frames,
crashing tools, failing providers, a client that stops reading) is contained to
one response or one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import fastjsonschema
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HTTPRequest
from websockets.http11 import Response as HTTPResponse
from websockets.typing import Subprotocol

from . import __version__
from .breaker import CircuitBreaker
from .config import ServerConfig
from .connection import SEND_TIMEOUT_CODE, connection_class
from .http import Endpoint, endpoint, make_process_request, monitoring_stream, serve_monitoring
from .limits import InflightLimiter
from .metrics import ServerMetrics
from .protocol import (
    BINARY_FRAME_ERROR,
    BUSY,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    Request,
    RpcError,
    error_frame,
    parse,
    result_frame,
    text_frame,
    tool_result_frame,
)
from .providers import Provider, SimulatedProvider, make_providers
from .requestlog import RequestLog, open_request_log
from .tools import TOOLS, ToolContext

__all__ = ["PROTOCOL_VERSIONS", "ServerState", "run_server"]

logger = logging.getLogger("toolserver.server")

#: MCP revisions this server speaks; the first is offered to clients asking for others.
PROTOCOL_VERSIONS: Final = ("2025-06-18", "2025-11-25", "2025-03-26", "2024-11-05")
SUBPROTOCOL: Final = Subprotocol("mcp")
#: Longest a connection's read loop runs before it yields to the event loop (fairness).
TURN_S: Final = 0.002
#: websockets' write buffer high-water mark. The default 32 KiB makes send()
#: wait for the socket to drain often under pipelining; 256 KiB per connection
#: keeps that rare while still bounding memory for a client that stops reading.
WRITE_LIMIT: Final = 256 * 1024

_TOOLS_LIST_RESULT: Final = {"tools": [tool.describe() for tool in TOOLS.values()]}

_ADMIN_PROVIDER_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "provider": {"type": "string"},
        "failure_rate": {"type": "number", "minimum": 0, "maximum": 1},
        # The same ceiling as echo's delay_ms: a call must never be parked for hours.
        "latency_ms": {"type": "number", "minimum": 0, "maximum": 10000},
        "spread_ms": {"type": "number", "minimum": 0, "maximum": 10000},
        "tokens": {"type": "integer", "minimum": 0, "maximum": 32768},
    },
    "required": ["provider"],
    "additionalProperties": False,
}
_validate_admin_provider = fastjsonschema.compile(_ADMIN_PROVIDER_SCHEMA)

#: Request-log status -> metrics outcome.
_OUTCOME: Final = {
    "ok": "ok",
    "tool_error": "tool_error",
    "invalid": "error",
    "error": "error",
    "busy": "busy",
    "cancelled": "error",
}


def _select_subprotocol(connection: ServerConnection, subprotocols: Any) -> Subprotocol | None:
    # websockets rejects clients that offer no subprotocol when the server
    # lists one; MCP clients other than the SDK often offer none, so accept them.
    return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None


class Session:
    """Per-connection state."""

    __slots__ = ("id", "inflight", "initialized", "tasks", "ws")

    def __init__(self, id: str, ws: ServerConnection) -> None:
        self.id = id
        self.ws = ws
        self.inflight = 0
        self.initialized = False
        self.tasks: set[asyncio.Task[None]] = set()


class ServerState:
    """Everything shared by connections; also the ``app`` the monitoring routes read."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        metrics: ServerMetrics | None = None,
        requestlog: RequestLog | None = None,
        providers: dict[str, Provider] | None = None,
    ) -> None:
        self.config = config
        self.version = __version__
        self.started_at = time.monotonic()
        self.draining = False
        self.connection_count = 0
        self.monitoring_streams = 0
        self.max_monitoring_streams = config.limits.max_monitoring_streams
        self.metrics = metrics if metrics is not None else ServerMetrics(enabled=config.metrics)
        self.requestlog = (
            requestlog
            if requestlog is not None
            else open_request_log(
                config.requestlog.url,
                flush_interval_s=config.requestlog.flush_interval_s,
                max_queue=config.requestlog.max_queue,
                timeout_s=config.requestlog.timeout_s,
            )
        )
        self.providers = providers if providers is not None else make_providers(config.provider)
        self.breakers = {
            name: CircuitBreaker(
                name, failures=config.breaker.failures, cooldown_s=config.breaker.cooldown_s
            )
            for name in self.providers
        }
        limits = config.limits
        self.limiter = InflightLimiter(
            per_connection=limits.max_inflight_per_connection, total=limits.max_inflight
        )
        self.sessions: set[Session] = set()
        self.calls_total = 0
        self._session_seq = 0
        self._boot = os.urandom(3).hex()
        self.ctx = ToolContext(
            providers=self.providers,
            breakers=self.breakers,
            metrics=self.metrics,
            status=self.status,
        )
        self.metrics.attach(
            breakers=self.breaker_states,
            requestlog=self.requestlog.stats,
            connections=lambda: self.connection_count,
            draining=lambda: self.draining,
        )
        self._token = _bearer(config.network.token) if config.network.token else None
        self._http_hook = make_process_request(self)
        # Bound once: both run on every tools/call.
        self._log_append = self.requestlog.append
        self._request_done = self.metrics.request_done
        self._methods: dict[str, Callable[[Session, Request], Any]] = {
            "ping": self._ping,
            "initialize": self._initialize,
            "tools/list": self._tools_list,
        }
        if config.allow_admin:
            self._methods["admin/provider"] = self._admin_provider

    # --- views ------------------------------------------------------------------

    def breaker_states(self) -> dict[str, str]:
        return {name: breaker.state for name, breaker in self.breakers.items()}

    def status(self) -> dict[str, Any]:
        depth, written, _, _ = self.requestlog.stats()
        return {
            "version": self.version,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "connections": self.connection_count,
            "inflight": self.limiter.inflight,
            "tool_calls": self.calls_total,
            "draining": self.draining,
            "breakers": self.breaker_states(),
            "providers": {name: p.settings() for name, p in self.providers.items()},
            "requestlog": {
                "queue_depth": depth,
                "rows_written": written,
                "rows_dropped": self.requestlog.rows_dropped,
            },
        }

    # --- handshake ------------------------------------------------------------------

    def process_request(
        self, connection: ServerConnection, request: HTTPRequest
    ) -> HTTPResponse | None:
        """Bearer-token check for the MCP endpoint, then the monitoring routes.

        :func:`toolserver.http.endpoint` alone says which endpoint a path is, for this
        check and for the routing: only :data:`~toolserver.http.MCP_PATH` is the MCP
        endpoint, unknown paths get 404 from the hook before any session opens.
        Monitoring routes (health, metrics, dashboard and its stream) stay open like a
        health check: they expose counts, never request contents.
        """
        if (
            self._token is not None
            and endpoint(request.path) is Endpoint.MCP
            and not self._authorized(request)
        ):
            self.metrics.connection_rejected("auth")
            response = connection.respond(
                http.HTTPStatus.UNAUTHORIZED, "missing or invalid bearer token\n"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="toolserver"'
            return response
        return self._http_hook(connection, request)

    def _authorized(self, request: HTTPRequest) -> bool:
        """Exactly one ``Authorization`` header, equal to ``Bearer <token>`` byte for byte."""
        assert self._token is not None
        values = request.headers.get_all("Authorization")
        if len(values) != 1:
            return False  # none, or several (which one would a proxy have checked?)
        got = _header_bytes(values[0])
        # compare_digest on bytes: the time taken must not reveal how much matched.
        return got is not None and hmac.compare_digest(got, self._token)

    # --- connections ------------------------------------------------------------------

    async def handler(self, ws: ServerConnection) -> None:
        """websockets' connection handler."""
        route = endpoint(ws.request.path) if ws.request is not None else Endpoint.UNKNOWN
        if route is Endpoint.STREAM:
            await monitoring_stream(ws, self)
            return
        if route is not Endpoint.MCP:
            # process_request answers every other path itself; never serve MCP there.
            await ws.close(1008, "not found")
            return
        if self.connection_count >= self.config.limits.max_connections or self.draining:
            self.metrics.connection_rejected("capacity")
            await ws.close(1013, "try again later")
            return
        self._session_seq += 1
        session = Session(f"{self._boot}-{self._session_seq}", ws)
        self.connection_count += 1
        self.sessions.add(session)
        self.metrics.connection_opened()
        try:
            await self._read_loop(session)
        except ConnectionClosed as exc:
            code = exc.sent.code if exc.sent is not None else None
            if code == 1009:
                self.metrics.connection_rejected("frame_too_big")
            elif code == SEND_TIMEOUT_CODE:
                self.metrics.connection_rejected("send_timeout")
        finally:
            self.sessions.discard(session)
            self.connection_count -= 1
            self.metrics.connection_closed()
            # The client is gone: nobody can receive these answers, so free
            # their slots now (each still logs a "cancelled" row).
            for task in list(session.tasks):
                task.cancel()
            if session.tasks:
                await asyncio.gather(*session.tasks, return_exceptions=True)

    async def _read_loop(self, session: Session) -> None:
        # Locals instead of attribute lookups: this loop runs once per message.
        ws = session.ws
        send = ws.send
        metrics = self.metrics
        message_in = metrics.message_in
        message_out = metrics.message_out
        request_done = metrics.request_done
        perf_counter = time.perf_counter
        tools_call = self._tools_call
        sleep = asyncio.sleep
        # Queued messages are handled back to back without yielding (a recv() of a
        # queued message and a send() into a non-full buffer never suspend), so a client
        # pipelining large frames would hold the event loop for its whole backlog.
        # Each connection's turn ends after TURN_S: then it yields once to the loop.
        turn_end = 0.0
        frame: str | None
        async for message in ws:
            start = perf_counter()
            if start > turn_end:
                turn_end = start + TURN_S
            message_in(len(message))
            frame = None
            try:
                if type(message) is not str:
                    frame = BINARY_FRAME_ERROR
                    request_done("invalid", None, "error", perf_counter() - start)
                else:
                    request = parse(message)
                    if type(request) is not Request:
                        if request is not None:  # None: a client response, no answer
                            assert isinstance(request, str)
                            frame = request
                            request_done("invalid", None, "error", perf_counter() - start)
                    elif request.is_notification:
                        # notifications/initialized, notifications/cancelled, ...:
                        # never answered; unknown ones (a tools/call without id
                        # included) are ignored, as JSON-RPC allows.
                        if request.method == "notifications/initialized":
                            session.initialized = True
                    elif request.method == "tools/call":
                        # None: running as a task, which answers when done
                        frame = tools_call(session, request, start)
                    else:
                        frame = self._call_method(session, request, start)
            except Exception:
                # Safety net: a bug triggered by one message costs that
                # message an error, not the connection (or the server).
                logger.exception("unexpected error handling a message")
                frame = error_frame(None, INTERNAL_ERROR, "internal error")
            if frame is not None:
                await send(frame)
                message_out(len(frame))
            if perf_counter() > turn_end:
                turn_end = 0.0
                await sleep(0)

    def _call_method(self, session: Session, request: Request, start: float) -> str:
        """Everything but ``tools/call``: cheap methods answered inline."""
        method = request.method
        handler = self._methods.get(method)
        if handler is None:
            frame = error_frame(request.id, METHOD_NOT_FOUND, f"method not found: {method}")
            method = "unknown"  # bounded label set for the metrics
            outcome = "error"
        else:
            try:
                frame = result_frame(request.id, handler(session, request))
                outcome = "ok"
            except RpcError as exc:
                frame = error_frame(request.id, exc.code, exc.message, exc.data)
                outcome = "error"
        self.metrics.request_done(method, None, outcome, time.perf_counter() - start)
        return frame

    # --- tools/call -------------------------------------------------------------------

    def _log(
        self,
        session: Session,
        tool: str,
        provider: str | None,
        status: str,
        start: float,
        _perf_counter: Callable[[], float] = time.perf_counter,
        _time: Callable[[], float] = time.time,
    ) -> None:
        """One request-log row and one metrics observation per ``tools/call``."""
        # (The underscore defaults only turn global lookups into local ones.)
        elapsed = _perf_counter() - start
        self.calls_total += 1
        self._log_append((_time(), session.id, tool, provider, status, elapsed * 1000.0))
        self._request_done("tools/call", tool, _OUTCOME[status], elapsed)

    def _tools_call(self, session: Session, request: Request, start: float) -> str | None:
        """Answer inline (returns the frame) or start a task (returns None)."""
        params = request.params
        name = params.get("name")
        tool = TOOLS.get(name) if type(name) is str else None
        if tool is None:
            self._log(session, "unknown", None, "invalid", start)
            return error_frame(request.id, INVALID_PARAMS, f"unknown tool: {name!r}")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        try:
            tool.validate(arguments)
        except fastjsonschema.JsonSchemaValueException as exc:
            self._log(session, tool.name, None, "invalid", start)
            return error_frame(
                request.id, INVALID_PARAMS, f"invalid arguments for {tool.name}: {exc.message}"
            )
        provider = arguments.get("provider", "glm") if tool.uses_provider else None
        limiter = self.limiter
        if (
            session.inflight >= limiter.per_connection
            or limiter.inflight >= limiter.total
            or self.draining
        ):
            scope = "draining" if self.draining else limiter.reject_scope(session.inflight)
            self._log(session, tool.name, provider, "busy", start)
            return error_frame(request.id, BUSY, "server busy", {"scope": scope})
        try:
            output = tool.handler(self.ctx, arguments)
        except Exception:
            logger.exception("tool %s failed", tool.name)
            self._log(session, tool.name, provider, "error", start)
            return error_frame(request.id, INTERNAL_ERROR, "internal error")
        if isinstance(output, str):
            self._log(session, tool.name, provider, "ok", start)
            return text_frame(request.id, output)
        if isinstance(output, dict):
            status = "tool_error" if output["isError"] else "ok"
            self._log(session, tool.name, provider, status, start)
            return tool_result_frame(request.id, output)
        session.inflight += 1
        limiter.inflight += 1
        self.metrics.set_inflight(limiter.inflight)
        task = asyncio.get_running_loop().create_task(
            self._finish(session, request.id, tool.name, provider, output, start)
        )
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)
        return None

    async def _finish(
        self,
        session: Session,
        request_id: str | int | None,
        tool: str,
        provider: str | None,
        output: Awaitable[str | dict[str, Any]],
        start: float,
    ) -> None:
        status = "cancelled"
        frame = None
        try:
            try:
                result = await output
                if type(result) is str:
                    status = "ok"
                    frame = text_frame(request_id, result)
                else:
                    assert isinstance(result, dict)
                    status = "tool_error" if result["isError"] else "ok"
                    frame = tool_result_frame(request_id, result)
            except Exception:
                logger.exception("tool %s failed", tool)
                status = "error"
                frame = error_frame(request_id, INTERNAL_ERROR, "internal error")
            finally:
                self._log(session, tool, provider, status, start)
            with contextlib.suppress(ConnectionClosed):
                await session.ws.send(frame)
                self.metrics.message_out(len(frame))
        finally:
            # The slot is held until the answer is handed to the socket: a
            # client that stops reading then runs out of slots and gets "busy"
            # instead of piling up finished tasks waiting to send.
            session.inflight -= 1
            self.limiter.inflight -= 1
            self.metrics.set_inflight(self.limiter.inflight)

    # --- other methods ------------------------------------------------------------------

    def _ping(self, session: Session, request: Request) -> dict[str, Any]:
        return {}

    def _initialize(self, session: Session, request: Request) -> dict[str, Any]:
        requested = request.params.get("protocolVersion")
        version = requested if requested in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "toolserver", "version": self.version},
            "instructions": "Tools: echo, status, chat, analyze, listmodels.",
        }

    def _tools_list(self, session: Session, request: Request) -> dict[str, Any]:
        return _TOOLS_LIST_RESULT

    def _admin_provider(self, session: Session, request: Request) -> dict[str, Any]:
        params = request.params
        try:
            _validate_admin_provider(params)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise RpcError(INVALID_PARAMS, f"invalid params: {exc.message}") from None
        provider = self.providers.get(params["provider"])
        if provider is None:
            raise RpcError(INVALID_PARAMS, f"unknown provider: {params['provider']!r}")
        if not isinstance(provider, SimulatedProvider):
            raise RpcError(INVALID_PARAMS, f"provider {provider.name} is not simulated")
        provider.configure(
            failure_rate=params.get("failure_rate"),
            latency_ms=params.get("latency_ms"),
            spread_ms=params.get("spread_ms"),
            tokens=params.get("tokens"),
        )
        return provider.settings()

    # --- lifecycle ------------------------------------------------------------------

    def all_tasks(self) -> list[asyncio.Task[None]]:
        return [task for session in self.sessions for task in session.tasks]

    async def drain(
        self, server: Server, timeout: float, force: asyncio.Event | None = None
    ) -> None:
        """Stop accepting, let in-flight calls finish (bounded), then close connections.

        ``force`` (a second SIGTERM/SIGINT) cuts the wait short, for an
        operator who does not want to wait out ``--drain-timeout``.
        """
        self.draining = True
        # Close the listening socket only; open connections keep running so
        # in-flight answers can still be delivered.
        server.close(close_connections=False)
        pending: set[asyncio.Future[Any]] = set(self.all_tasks())
        if pending:
            forced = asyncio.ensure_future(force.wait()) if force is not None else None
            waiting = pending | {forced} if forced is not None else pending
            deadline = asyncio.get_running_loop().time() + timeout
            # Wait for every call, or the deadline, or a forced stop.
            while pending and (forced is None or not forced.done()):
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                done, _ = await asyncio.wait(
                    waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
                waiting -= done
            if forced is not None:
                forced.cancel()
            if pending:
                logger.warning("drain cut short: cancelling %d in-flight calls", len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        # Every handler returns once its connection is closed (1001 going away).
        closing = [
            asyncio.create_task(session.ws.close(1001, "server shutting down"))
            for session in list(self.sessions)
        ]
        if closing:
            await asyncio.wait(closing, timeout=5.0)
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=5.0)
        except TimeoutError:
            # A connection that ignores the closing handshake must not keep
            # the process alive: exit anyway, the request log still flushes.
            logger.warning("some connections did not close in time")


def _bearer(token: str) -> bytes:
    """The exact ``Authorization`` value a client must send, as bytes on the wire."""
    return b"Bearer " + token.encode()


def _header_bytes(value: str) -> bytes | None:
    """A header value back as the bytes the client sent (None if they cannot be recovered).

    websockets decodes header values as ISO-8859-1 (current releases: any byte maps to
    one character) or as ASCII with surrogateescape (older ones); this undoes either
    exactly, so a raw non-UTF-8 header is compared (and refused) like any other instead
    of raising, and a non-ASCII token matches the UTF-8 bytes a client sends for it.
    """
    for encoding, errors in (("latin-1", "strict"), ("utf-8", "surrogateescape")):
        try:
            return value.encode(encoding, errors)
        except UnicodeEncodeError:
            continue
    return None


#: Accept queue length (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 1024


async def run_server(
    config: ServerConfig,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> ServerState:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then drain and flush.

    ``ready`` gets ``ws://host:port`` once the server accepts connections.
    Returns the final state (tests read counters from it).
    """
    state = ServerState(config)
    # Open the log before listening: a bad URL must fail at startup, not at
    # the first call. Blocking is fine here, nothing is being served yet.
    state.requestlog.start()
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    ticker = loop.create_task(state.metrics.run_ticker()) if state.metrics.enabled else None
    limits = config.limits
    monitoring: Server | None = None
    try:
        if config.network.monitoring_port is not None:
            monitoring = await serve_monitoring(
                state,
                config.network.host,
                config.network.monitoring_port,
                send_timeout=limits.send_timeout_s,
            )
            mon_port = monitoring.sockets[0].getsockname()[1]
            # stderr: stdout's first line is reserved for the MCP URL (the contract).
            print(
                f"monitoring on http://{config.network.host}:{mon_port}/monitoring",
                file=sys.stderr,
                flush=True,
            )
        async with serve(
            state.handler,
            config.network.host,
            config.network.port,
            subprotocols=[SUBPROTOCOL],
            select_subprotocol=_select_subprotocol,
            process_request=state.process_request,
            compression=None,
            max_size=limits.max_frame_bytes,
            max_queue=limits.max_queued_frames,
            write_limit=WRITE_LIMIT,
            create_connection=connection_class(limits.send_timeout_s),
            server_header=f"toolserver/{__version__}",
            # asyncio's default accept backlog is 100: a burst of 1000 connects then
            # overflows it and the kernel makes clients retry their SYN after ~1 s.
            backlog=max(LISTEN_BACKLOG, limits.max_connections),
        ) as server:
            host, port = server.sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            url = f"ws://{shown}:{port}"
            if ready is not None:
                ready(url)
            await stop.wait()
            logger.info("shutting down: draining in-flight calls")
            force = asyncio.Event()
            for signum in installed:
                loop.add_signal_handler(signum, force.set)  # a second signal: stop now
            await state.drain(server, limits.drain_timeout_s, force)
    finally:
        if monitoring is not None:
            monitoring.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(monitoring.wait_closed(), timeout=5.0)
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        for signum in installed:
            loop.remove_signal_handler(signum)
        for provider in state.providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        # Joining the writer thread blocks until every queued row is written.
        await asyncio.to_thread(state.requestlog.close)
    return state


def print_ready(url: str) -> None:
    """The process contract: the first stdout line is ``listening on ws://HOST:PORT``."""
    sys.stdout.write(f"listening on {url}\n")
    sys.stdout.flush()
