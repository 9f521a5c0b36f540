"""A provider that calls an OpenAI-compatible ``/chat/completions`` endpoint.

Zhipu GLM (``https://open.bigmodel.cn/api/paas/v4``) and Moonshot Kimi
(``https://api.moonshot.ai/v1``) both speak this dialect, so one adapter
covers both; tests point it at a local fake server. Every failure mode
(transport error, timeout, HTTP status, malformed body) becomes a
:class:`ProviderError` so a broken upstream can only produce tool errors and
open the circuit breaker, never an exception in the server.
"""

from __future__ import annotations

from typing import Any

import httpx

from .base import Completion, Provider, ProviderError
from .simulated import SIMULATED_MODELS

__all__ = ["OpenAICompatProvider"]


class OpenAICompatProvider(Provider):
    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None,
        timeout_s: float = 30.0,
        models: tuple[str, ...] | None = None,
    ) -> None:
        self.name = name
        self.models = models or SIMULATED_MODELS.get(name, (name,))
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # One pooled client per provider: connection reuse matters more than
        # anything else for latency against a remote endpoint.
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def settings(self) -> dict[str, Any]:
        # Never include the API key.
        return {
            "provider": self.name,
            "kind": "openai_compat",
            "base_url": self.base_url,
            "models": list(self.models),
        }

    async def complete(
        self, prompt: str, *, model: str | None = None, max_tokens: int | None = None
    ) -> Completion:
        body: dict[str, Any] = {
            "model": model or self.models[0],
            "messages": [{"role": "user", "content": prompt}],
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        try:
            response = await self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise ProviderError(f"provider {self.name} unreachable: {exc!r}") from exc
        if response.status_code >= 400:
            raise ProviderError(
                f"provider {self.name} returned HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"]
            usage = data.get("usage") or {}
            tokens = int(usage.get("completion_tokens") or usage.get("total_tokens") or 0)
            used_model = str(data.get("model") or body["model"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ProviderError(f"provider {self.name} sent a malformed response") from exc
        if not isinstance(text, str):
            raise ProviderError(f"provider {self.name} sent a non-text completion")
        return Completion(text=text, model=used_model, tokens=tokens)

    async def aclose(self) -> None:
        await self._client.aclose()
