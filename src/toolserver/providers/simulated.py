"""A provider that sleeps instead of calling a model.

Benchmarks need provider latency that is realistic in shape but repeatable:
latency is drawn from a normal distribution (median, spread) clipped at zero,
failures from a Bernoulli draw, both from a ``random.Random`` seeded per
provider name so two runs with the same ``--seed`` see the same sequence.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from .base import Completion, Provider, ProviderError

__all__ = ["SIMULATED_MODELS", "SimulatedProvider"]

SIMULATED_MODELS: dict[str, tuple[str, ...]] = {
    "glm": ("glm-4.5-air", "glm-4.6", "glm-4-flash"),
    "kimi": ("kimi-k2-0905-preview", "moonshot-v1-8k"),
}


class SimulatedProvider(Provider):
    def __init__(
        self,
        name: str,
        *,
        latency_ms: float = 20.0,
        spread_ms: float = 5.0,
        tokens: int = 64,
        failure_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.models = SIMULATED_MODELS.get(name, (f"{name}-sim",))
        self.latency_ms = latency_ms
        self.spread_ms = spread_ms
        self.tokens = tokens
        self.failure_rate = failure_rate
        # A str seed is hashed with SHA-512, so it is stable across processes
        # regardless of PYTHONHASHSEED; each provider gets its own stream.
        self._rng = random.Random(f"{seed}:{name}")

    def configure(
        self,
        *,
        failure_rate: float | None = None,
        latency_ms: float | None = None,
        spread_ms: float | None = None,
        tokens: int | None = None,
    ) -> None:
        """Change behaviour at run time (``admin/provider`` failure injection)."""
        if failure_rate is not None:
            self.failure_rate = failure_rate
        if latency_ms is not None:
            self.latency_ms = latency_ms
        if spread_ms is not None:
            self.spread_ms = spread_ms
        if tokens is not None:
            self.tokens = tokens

    def settings(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "kind": "simulated",
            "models": list(self.models),
            "latency_ms": self.latency_ms,
            "spread_ms": self.spread_ms,
            "tokens": self.tokens,
            "failure_rate": self.failure_rate,
        }

    async def complete(
        self, prompt: str, *, model: str | None = None, max_tokens: int | None = None
    ) -> Completion:
        rng = self._rng
        # Draw both numbers before sleeping so the sequence does not depend on
        # how concurrent calls interleave.
        delay_ms = max(0.0, rng.gauss(self.latency_ms, self.spread_ms))
        failed = rng.random() < self.failure_rate
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)
        if failed:
            raise ProviderError(f"provider {self.name} failed (simulated)")
        tokens = self.tokens if max_tokens is None else min(self.tokens, max_tokens)
        model = model or self.models[0]
        snippet = " ".join(prompt[:60].split())  # one line, however the prompt looks
        return Completion(
            text=f"[{self.name}/{model}] {tokens} tokens about: {snippet}",
            model=model,
            tokens=tokens,
        )
