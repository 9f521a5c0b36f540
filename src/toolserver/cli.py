"""Command line: ``python -m toolserver serve [options]``.

Flags map one-to-one onto the option groups in :mod:`toolserver.config`, and
argparse groups mirror them so ``--help`` reads like the contract in
docs/ARCHITECTURE.md section 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .config import (
    API_KEY_ENV,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_REQUEST_LOG,
    TOKEN_ENV,
    BreakerOptions,
    LimitOptions,
    NetworkOptions,
    ProviderOptions,
    RequestLogOptions,
    ServerConfig,
    env_api_key,
    env_token,
)

__all__ = ["build_parser", "config_from_args", "main"]


def _base_url(value: str) -> tuple[str | None, str]:
    """``URL`` (every provider) or ``NAME=URL`` (one provider)."""
    name, sep, url = value.partition("=")
    if sep and not name.startswith(("http:", "https:")) and "/" not in name:
        return name, url
    return None, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolserver",
        description="MCP (JSON-RPC 2.0) tool server over WebSocket, subprotocol 'mcp'.",
    )
    parser.add_argument("--version", action="version", version=f"toolserver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description=(
            "Run the server. The first stdout line is 'listening on ws://HOST:PORT' once it "
            "accepts connections; logs go to stderr. SIGTERM/SIGINT: stop accepting, finish "
            "in-flight calls (--drain-timeout), flush the request log, exit 0. Monitoring on "
            "the same port: /health, /metrics, /api/metrics, /monitoring."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _network_options(serve)
    _limit_options(serve)
    _simulated_provider_options(serve)
    _real_provider_options(serve)
    _breaker_options(serve)
    _request_log_options(serve)
    _monitoring_options(serve)
    return parser


def _network_options(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("network")
    net.add_argument(
        "--host", default=DEFAULT_HOST, help="interface to bind (loopback only by default)"
    )
    net.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port; 0 picks a free one")
    net.add_argument(
        "--token",
        default=None,
        help=f"require 'Authorization: Bearer TOKEN' on the MCP handshake (HTTP 401 otherwise); "
        f"default from ${TOKEN_ENV}",
    )

    net.add_argument(
        "--monitoring-port",
        type=int,
        default=None,
        help="also serve /health, /metrics, /api/metrics, /monitoring on this port "
        "(stays up while draining; 0 picks a free one, logged on stderr)",
    )


def _limit_options(parser: argparse.ArgumentParser) -> None:
    lim = parser.add_argument_group("limits")
    d = LimitOptions()
    lim.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        help="open MCP connections; beyond it new ones close with 1013",
    )
    lim.add_argument(
        "--max-inflight-per-connection",
        type=int,
        default=d.max_inflight_per_connection,
        help="running tool calls per connection; beyond it -32001 server busy",
    )
    lim.add_argument(
        "--max-inflight",
        type=int,
        default=d.max_inflight,
        help="running tool calls in the whole server; beyond it -32001 server busy",
    )
    lim.add_argument(
        "--max-frame-bytes",
        type=int,
        default=d.max_frame_bytes,
        help="largest accepted frame; bigger ones close the connection with 1009",
    )
    lim.add_argument(
        "--max-queued-frames",
        type=int,
        default=d.max_queued_frames,
        help="received frames queued per connection before the server stops reading it "
        "(TCP back-pressure)",
    )
    lim.add_argument(
        "--send-timeout",
        type=float,
        default=d.send_timeout_s,
        help="seconds a send may wait for a client that does not read (write buffer full); "
        "then the connection closes with 1008 and frees its slot",
    )
    lim.add_argument(
        "--max-monitoring-streams",
        type=int,
        default=d.max_monitoring_streams,
        help="open /monitoring/ws streams (not counted in --max-connections); beyond it 1013",
    )
    lim.add_argument(
        "--drain-timeout",
        type=float,
        default=d.drain_timeout_s,
        help="seconds SIGTERM waits for in-flight calls",
    )


def _simulated_provider_options(parser: argparse.ArgumentParser) -> None:
    sim = parser.add_argument_group("simulated provider (default)")
    p = ProviderOptions()
    sim.add_argument(
        "--provider-latency-ms",
        type=float,
        default=p.latency_ms,
        help="median latency of one provider call",
    )
    sim.add_argument(
        "--provider-spread-ms",
        type=float,
        default=p.spread_ms,
        help="standard deviation of that latency (normal, clipped at 0)",
    )
    sim.add_argument("--provider-tokens", type=int, default=p.tokens, help="tokens per completion")
    sim.add_argument(
        "--provider-failure-rate",
        type=float,
        default=p.failure_rate,
        help="probability (0..1) that a call fails",
    )
    sim.add_argument("--seed", type=int, default=p.seed, help="seed for latency and failures")


def _real_provider_options(parser: argparse.ArgumentParser) -> None:
    real = parser.add_argument_group("real provider (OpenAI-compatible HTTP)")
    p = ProviderOptions()
    real.add_argument(
        "--provider-base-url",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="use an OpenAI-compatible endpoint instead of the simulation, for every provider "
        "(URL) or one (glm=URL, kimi=URL; repeatable). API key from "
        f"$TOOLSERVER_<NAME>_API_KEY, else ${API_KEY_ENV}",
    )
    real.add_argument(
        "--provider-timeout", type=float, default=p.timeout_s, help="seconds per HTTP provider call"
    )


def _breaker_options(parser: argparse.ArgumentParser) -> None:
    brk = parser.add_argument_group("circuit breaker (per provider)")
    b = BreakerOptions()
    brk.add_argument(
        "--breaker-failures",
        type=int,
        default=b.failures,
        help="consecutive failures that open the circuit",
    )
    brk.add_argument(
        "--breaker-cooldown",
        type=float,
        default=b.cooldown_s,
        help="seconds an open circuit fails fast before a half-open trial call",
    )


def _request_log_options(parser: argparse.ArgumentParser) -> None:
    log = parser.add_argument_group("request log")
    log.add_argument(
        "--request-log",
        default=DEFAULT_REQUEST_LOG,
        metavar="URL",
        help="sqlite:///path, postgresql://user@host:port/db, or none",
    )
    r = RequestLogOptions()
    log.add_argument(
        "--request-log-flush",
        type=float,
        default=r.flush_interval_s,
        help="seconds between batched writes",
    )
    log.add_argument(
        "--request-log-max-queue",
        type=int,
        default=r.max_queue,
        help="rows waiting for the writer at most; beyond it rows are dropped and counted "
        "(toolserver_requestlog_rows_dropped_total)",
    )
    log.add_argument(
        "--request-log-timeout",
        type=float,
        default=r.timeout_s,
        help="seconds one batch write may take (SQLite busy timeout, PostgreSQL "
        "statement_timeout); a slower write fails and its rows are dropped and counted",
    )


def _monitoring_options(parser: argparse.ArgumentParser) -> None:
    misc = parser.add_argument_group("monitoring and admin")
    misc.add_argument(
        "--no-metrics", action="store_true", help="disable metrics hooks (measures their cost)"
    )
    misc.add_argument(
        "--allow-admin",
        action="store_true",
        help="enable the admin/provider method (run-time failure injection)",
    )
    misc.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level",
    )
    misc.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    base_url: str | None = None
    per_provider: list[tuple[str, str]] = []
    for value in args.provider_base_url:
        name, url = _base_url(value)
        if name is None:
            base_url = url
        else:
            per_provider.append((name, url))
    return ServerConfig(
        network=NetworkOptions(
            host=args.host,
            port=args.port,
            token=args.token or env_token(),
            monitoring_port=args.monitoring_port,
        ),
        limits=LimitOptions(
            max_connections=args.max_connections,
            max_inflight_per_connection=args.max_inflight_per_connection,
            max_inflight=args.max_inflight,
            max_frame_bytes=args.max_frame_bytes,
            max_queued_frames=args.max_queued_frames,
            send_timeout_s=args.send_timeout,
            max_monitoring_streams=args.max_monitoring_streams,
            drain_timeout_s=args.drain_timeout,
        ),
        provider=ProviderOptions(
            latency_ms=args.provider_latency_ms,
            spread_ms=args.provider_spread_ms,
            tokens=args.provider_tokens,
            failure_rate=args.provider_failure_rate,
            seed=args.seed,
            base_url=base_url,
            base_urls=tuple(per_provider),
            api_key=env_api_key(),
            timeout_s=args.provider_timeout,
        ),
        breaker=BreakerOptions(failures=args.breaker_failures, cooldown_s=args.breaker_cooldown),
        requestlog=RequestLogOptions(
            url=args.request_log,
            flush_interval_s=args.request_log_flush,
            max_queue=args.request_log_max_queue,
            timeout_s=args.request_log_timeout,
        ),
        metrics=not args.no_metrics,
        allow_admin=args.allow_admin,
    )


def _runner(use_uvloop: bool) -> asyncio.Runner:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Imported here so `--help` works even if an optional dependency is broken.
    from .server import print_ready, run_server

    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"toolserver: {exc}", file=sys.stderr)
        return 2
    with _runner(not args.no_uvloop) as runner:
        try:
            runner.run(run_server(config, ready=print_ready))
        except (OSError, RuntimeError, ValueError) as exc:
            # Bind failures, a bad request-log URL...: one clear line, exit 2.
            print(f"toolserver: {exc}", file=sys.stderr)
            return 2
    return 0
