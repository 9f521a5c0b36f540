"""Server options, grouped the way the command line groups them.

Every group is a frozen dataclass with keyword-only fields so that call sites
read like the command line (``LimitOptions(max_connections=10)``) and a new
option cannot silently shift positional arguments in tests or benchmarks.
"""

from __future__ import annotations

import dataclasses
import os

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_REQUEST_LOG",
    "BreakerOptions",
    "LimitOptions",
    "NetworkOptions",
    "ProviderOptions",
    "RequestLogOptions",
    "ServerConfig",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8079
DEFAULT_REQUEST_LOG = "sqlite:///toolserver-requests.sqlite3"

#: Environment variables read when the matching option is not given.
TOKEN_ENV = "TOOLSERVER_TOKEN"
API_KEY_ENV = "TOOLSERVER_PROVIDER_API_KEY"


@dataclasses.dataclass(frozen=True, kw_only=True)
class NetworkOptions:
    """Where to listen and who may connect."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: Bearer token required on the MCP WebSocket handshake; ``None`` disables auth.
    token: str | None = None
    #: Also serve the monitoring routes on this port (same host), alone. Unlike the
    #: main port it stays open while draining, so /health can report 503.
    monitoring_port: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class LimitOptions:
    """Caps that turn overload into fast, explicit rejections instead of queues."""

    max_connections: int = 1000
    max_inflight_per_connection: int = 64
    max_inflight: int = 4096
    #: Largest accepted frame; bigger frames close the connection with 1009.
    max_frame_bytes: int = 1 << 20
    #: Received frames queued per connection before the server stops reading from it
    #: (websockets' ``max_queue``): TCP back-pressure instead of memory.
    max_queued_frames: int = 16
    #: Seconds a send may wait for a client that does not read (its write buffer full)
    #: before the connection is closed with 1008; frees its slot and its queued frames.
    send_timeout_s: float = 10.0
    #: Open ``/monitoring/ws`` streams (all ports together); beyond it, 1013. Streams do
    #: not count against ``max_connections``.
    max_monitoring_streams: int = 16
    #: How long SIGTERM waits for in-flight calls before closing connections.
    drain_timeout_s: float = 10.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProviderOptions:
    """The simulated provider's behaviour, or the real endpoint to use instead."""

    latency_ms: float = 20.0
    spread_ms: float = 5.0
    tokens: int = 64
    failure_rate: float = 0.0
    seed: int = 0
    #: OpenAI-compatible base URL for every provider; when set, providers are
    #: real HTTP clients instead of simulations.
    base_url: str | None = None
    #: Per-provider base URLs (``{"glm": ..., "kimi": ...}``), overriding ``base_url``.
    base_urls: tuple[tuple[str, str], ...] = ()
    #: Key for every provider; per-provider keys come from ``TOOLSERVER_<NAME>_API_KEY``.
    api_key: str | None = None
    #: Per-request timeout of the HTTP adapter.
    timeout_s: float = 30.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class BreakerOptions:
    """Circuit breaker per provider."""

    #: Consecutive failures that open the circuit.
    failures: int = 5
    #: How long an open circuit fails fast before letting one trial call through.
    cooldown_s: float = 5.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class RequestLogOptions:
    """Where the request log goes and how often the writer thread flushes."""

    #: ``sqlite:///path``, ``postgresql://...`` or ``none``.
    url: str = DEFAULT_REQUEST_LOG
    flush_interval_s: float = 0.2
    #: Rows queued for the writer at most; past it rows are dropped (and counted), so
    #: a stalled database costs log rows, never memory or event-loop time.
    max_queue: int = 100_000
    #: Longest one batch write may take (SQLite busy timeout, PostgreSQL
    #: ``statement_timeout``); a write over it fails and its rows are dropped (counted).
    timeout_s: float = 5.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Everything :func:`toolserver.server.run` needs."""

    network: NetworkOptions = dataclasses.field(default_factory=NetworkOptions)
    limits: LimitOptions = dataclasses.field(default_factory=LimitOptions)
    provider: ProviderOptions = dataclasses.field(default_factory=ProviderOptions)
    breaker: BreakerOptions = dataclasses.field(default_factory=BreakerOptions)
    requestlog: RequestLogOptions = dataclasses.field(default_factory=RequestLogOptions)
    metrics: bool = True
    allow_admin: bool = False


def env_token() -> str | None:
    """The token from the environment; empty means unset so ``VAR=`` disables auth."""
    return os.environ.get(TOKEN_ENV) or None


def env_api_key(provider: str | None = None) -> str | None:
    """``TOOLSERVER_<NAME>_API_KEY`` for one provider, else ``TOOLSERVER_PROVIDER_API_KEY``."""
    if provider is not None:
        key = os.environ.get(f"TOOLSERVER_{provider.upper()}_API_KEY")
        if key:
            return key
    return os.environ.get(API_KEY_ENV) or None
