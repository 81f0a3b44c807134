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
                  env: Mapping[str, str]) -> Adapter:
    """The adapter for provider `name`; its key is read from `env[cfg.api_key_env]` here, once.

    An unset or empty key variable gives an adapter with `configured` False, whose `send`
    raises `ProviderNotConfigured`; a provider with `api_key_env: null` needs no key.
    """
    api_key = env.get(cfg.api_key_env) if cfg.api_key_env else None
    return ADAPTERS[cfg.kind](name, cfg, http, api_key or None)
