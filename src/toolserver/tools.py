"""The tools this server offers, their JSON Schemas and their handlers.

Each tool's ``inputSchema`` is compiled once with fastjsonschema at import
time: validating arguments then costs a plain Python function call instead of
walking the schema per message.

A handler returns either its output (tools that need no I/O: the server
answers those inline, without creating a task) or an awaitable of it (tools
that wait on a timer or a provider: the server runs those as a task so they
never block other requests on the connection). That split is the main reason
the hot path stays close to a bare websockets echo server. The output is a
``str`` for a successful one-text result (the server fills a pre-built frame
template: no result dict to build and re-encode) or a full MCP result dict.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import fastjsonschema

from .breaker import CircuitBreaker, CircuitOpenError
from .providers import PROVIDER_NAMES, Completion, Provider, ProviderError

__all__ = ["TOOLS", "Tool", "ToolContext", "error_result", "text_result"]

ToolResult = dict[str, Any]
#: ``str``: success with that one text item; dict: any MCP ``CallToolResult``.
ToolOutput = str | ToolResult
HandlerOutput = ToolOutput | Awaitable[ToolOutput]


def text_result(text: str) -> ToolResult:
    return {"content": [{"type": "text", "text": text}], "isError": False}


def error_result(text: str) -> ToolResult:
    """A *tool* error: the call reached the tool and failed (MCP ``isError``)."""
    return {"content": [{"type": "text", "text": text}], "isError": True}


@dataclasses.dataclass(kw_only=True)
class ToolContext:
    """What handlers may use; built once by the server."""

    providers: dict[str, Provider]
    breakers: dict[str, CircuitBreaker]
    #: ``ServerMetrics``; typed loosely so tools do not import the metrics module.
    metrics: Any
    #: Returns the server counters shown by the ``status`` tool.
    status: Callable[[], dict[str, Any]]

    async def complete(
        self, provider: str, prompt: str, *, model: str | None = None, max_tokens: int | None = None
    ) -> Completion:
        """One provider call through its circuit breaker, timed into the metrics."""
        backend = self.providers[provider]
        start = time.perf_counter()
        try:
            completion = await self.breakers[provider].call(
                lambda: backend.complete(prompt, model=model, max_tokens=max_tokens)
            )
        except CircuitOpenError:
            raise  # no call was made: nothing to time
        except Exception:
            self.metrics.provider_call(provider, False, time.perf_counter() - start)
            raise
        self.metrics.provider_call(provider, True, time.perf_counter() - start)
        return completion


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    handler: Callable[[ToolContext, dict[str, Any]], HandlerOutput]
    validate: Callable[[Any], Any]
    #: Takes a ``provider`` argument (default ``glm``) that the request log records.
    uses_provider: bool = False

    def describe(self) -> dict[str, Any]:
        """The ``tools/list`` entry."""
        return {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.input_schema,
        }

    def provider_of(self, arguments: dict[str, Any]) -> str | None:
        """Which provider a call uses, for the request log."""
        return arguments.get("provider", "glm") if self.uses_provider else None


# --- echo -------------------------------------------------------------------


def _echo(ctx: ToolContext, args: dict[str, Any]) -> HandlerOutput:
    delay = args.get("delay_ms")
    if delay:
        return _echo_later(args["text"], delay)
    return args["text"]  # type: ignore[no-any-return]


async def _echo_later(text: str, delay_ms: float) -> str:
    await asyncio.sleep(delay_ms / 1000.0)
    return text


# --- status / listmodels ----------------------------------------------------


def _status(ctx: ToolContext, args: dict[str, Any]) -> HandlerOutput:
    return json.dumps(ctx.status(), sort_keys=True)


def _listmodels(ctx: ToolContext, args: dict[str, Any]) -> HandlerOutput:
    names = [args["provider"]] if "provider" in args else list(ctx.providers)
    listing = {name: list(ctx.providers[name].models) for name in names}
    return json.dumps(listing, sort_keys=True)


# --- chat / analyze ---------------------------------------------------------


async def _chat(ctx: ToolContext, args: dict[str, Any]) -> ToolOutput:
    provider = args.get("provider", "glm")
    try:
        completion = await ctx.complete(
            provider, args["prompt"], model=args.get("model"), max_tokens=args.get("max_tokens")
        )
    except (ProviderError, CircuitOpenError) as exc:
        return error_result(str(exc))
    return completion.text


async def _analyze(ctx: ToolContext, args: dict[str, Any]) -> ToolOutput:
    provider = args.get("provider", "glm")
    steps = args.get("steps", 3)
    text = args["text"]
    findings: list[str] = []
    # Sequential on purpose: each step builds on the previous one, which is
    # what makes analyze latency the sum of its provider calls.
    for step in range(1, steps + 1):
        previous = findings[-1] if findings else ""
        prompt = f"step {step}/{steps}: analyze {text}\n{previous}".rstrip()
        try:
            completion = await ctx.complete(provider, prompt)
        except (ProviderError, CircuitOpenError) as exc:
            return error_result(f"analyze failed at step {step}/{steps}: {exc}")
        findings.append(completion.text)
    return "\n".join(f"{i}. {line}" for i, line in enumerate(findings, 1))


# --- registry ---------------------------------------------------------------

_PROVIDER_ARG = {"type": "string", "enum": list(PROVIDER_NAMES), "description": "Provider to use."}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def _tool(
    name: str,
    description: str,
    schema: dict[str, Any],
    handler: Callable[[ToolContext, dict[str, Any]], HandlerOutput],
    *,
    uses_provider: bool = False,
) -> Tool:
    return Tool(
        name=name,
        description=description,
        input_schema=schema,
        handler=handler,
        validate=fastjsonschema.compile(schema),
        uses_provider=uses_provider,
    )


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        _tool(
            "echo",
            "Return the text unchanged, optionally after delay_ms milliseconds. No provider.",
            _object(
                {
                    "text": {"type": "string"},
                    "delay_ms": {"type": "number", "minimum": 0, "maximum": 10000},
                },
                ["text"],
            ),
            _echo,
        ),
        _tool(
            "status",
            "Server counters: uptime, connections, in-flight requests, circuit breakers.",
            _object({}),
            _status,
        ),
        _tool(
            "chat",
            "Send one prompt to a model provider and return its answer.",
            _object(
                {
                    "prompt": {"type": "string"},
                    "provider": _PROVIDER_ARG,
                    "model": {"type": "string"},
                    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 32768},
                },
                ["prompt"],
            ),
            _chat,
            uses_provider=True,
        ),
        _tool(
            "analyze",
            "Analyze text in several sequential provider calls (steps, default 3).",
            _object(
                {
                    "text": {"type": "string"},
                    "provider": _PROVIDER_ARG,
                    "steps": {"type": "integer", "minimum": 1, "maximum": 8},
                },
                ["text"],
            ),
            _analyze,
            uses_provider=True,
        ),
        _tool(
            "listmodels",
            "List the models each provider offers.",
            _object({"provider": _PROVIDER_ARG}),
            _listmodels,
        ),
    )
}
