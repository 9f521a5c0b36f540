"""Model providers behind one interface (:class:`~.base.Provider`)."""

from __future__ import annotations

from ..config import ProviderOptions, env_api_key
from .base import PROVIDER_NAMES, Completion, Provider, ProviderError
from .openai_compat import OpenAICompatProvider
from .simulated import SimulatedProvider

__all__ = [
    "PROVIDER_NAMES",
    "Completion",
    "OpenAICompatProvider",
    "Provider",
    "ProviderError",
    "SimulatedProvider",
    "make_providers",
]


def make_providers(options: ProviderOptions) -> dict[str, Provider]:
    """One provider per name: real HTTP clients when a base URL is set, else simulated."""
    providers: dict[str, Provider] = {}
    urls = dict(options.base_urls)
    for name in PROVIDER_NAMES:
        url = urls.get(name) or options.base_url
        if url:
            providers[name] = OpenAICompatProvider(
                name,
                base_url=url,
                api_key=env_api_key(name) or options.api_key,
                timeout_s=options.timeout_s,
            )
        else:
            providers[name] = SimulatedProvider(
                name,
                latency_ms=options.latency_ms,
                spread_ms=options.spread_ms,
                tokens=options.tokens,
                failure_rate=options.failure_rate,
                seed=options.seed,
            )
    return providers
