"""The interface every provider implements, simulated or real.

Tools only ever see this interface, so the benchmarks can swap a seeded
simulation for a real GLM/Kimi endpoint without touching tool code, and the
circuit breaker can wrap any provider the same way.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

__all__ = ["PROVIDER_NAMES", "Completion", "Provider", "ProviderError"]

#: Providers the server exposes, named like the real services they stand for.
PROVIDER_NAMES: tuple[str, ...] = ("glm", "kimi")


class ProviderError(Exception):
    """A provider call failed; tools turn this into an ``isError`` result."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    text: str
    model: str
    tokens: int


class Provider(abc.ABC):
    """One upstream model service."""

    name: str
    #: Models offered; the first is the default.
    models: tuple[str, ...]

    @abc.abstractmethod
    async def complete(
        self, prompt: str, *, model: str | None = None, max_tokens: int | None = None
    ) -> Completion:
        """Run one completion; raise :class:`ProviderError` on any failure."""

    def settings(self) -> dict[str, Any]:
        """What ``listmodels``/``status`` show about this provider."""
        return {"kind": type(self).__name__, "models": list(self.models)}

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release network resources on shutdown."""
