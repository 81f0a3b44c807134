"""Provider adapters, one per wire protocol, and `make_provider`, which builds one from config."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from mcp_router.config import Kind, ProviderConfig
from mcp_router.messages import Adapter
from mcp_router.providers._adapter import HttpAdapter
from mcp_router.providers.anthropic import AnthropicAdapter
from mcp_router.providers.gemini import GeminiAdapter
from mcp_router.providers.openai import OpenAIAdapter

__all__ = ["ADAPTERS", "AnthropicAdapter", "GeminiAdapter", "OpenAIAdapter", "make_provider"]

ADAPTERS: Mapping[Kind, type[HttpAdapter]] = {
    "openai": OpenAIAdapter,
    "anthropic": AnthropicAdapter,
    "gemini": GeminiAdapter,
}
"""The adapter class for each config `kind`."""


def make_provider(name: str, cfg: ProviderConfig, http: httpx.AsyncClient,
                  api_key: str | None) -> Adapter:
    """The adapter for provider `name` with its key (read once, by `provider_keys`).

    A provider that names a key source whose key is missing or empty gets `configured`
    False, and its `send` raises `ProviderNotConfigured`; one that names none needs no key.
    """
    return ADAPTERS[cfg.kind](name, cfg, http, api_key or None)
