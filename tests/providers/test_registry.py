"""`make_provider`: the adapter class by kind, the key read once from the environment."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mcp_router.config import Kind, ProviderConfig
from mcp_router.provider_keys import provider_keys
from mcp_router.providers import (
    AnthropicAdapter,
    GeminiAdapter,
    OpenAIAdapter,
    make_provider,
)
from mcp_router.providers._adapter import HttpAdapter


@pytest.mark.parametrize(("kind", "cls"), [("openai", OpenAIAdapter),
                                           ("anthropic", AnthropicAdapter),
                                           ("gemini", GeminiAdapter)])
def test_the_config_kind_chooses_the_adapter_and_the_config_fills_it(
        kind: Kind, cls: type) -> None:
    cfg = ProviderConfig(kind=kind, base_url="https://x.test/v1/", api_key_env="K",
                         timeout_s=12, stream=False)
    http = httpx.AsyncClient()

    adapter = make_provider("vendor", cfg, http, "secret")

    assert isinstance(adapter, HttpAdapter)
    assert type(adapter) is cls
    assert (adapter.provider, adapter.configured, adapter.timeout_s, adapter.http,
            adapter.base_url, adapter.api_key, adapter.stream) == (
        "vendor", True, 12, http, "https://x.test/v1", "secret", False)


def test_a_provider_that_needs_no_key_is_configured_without_one() -> None:
    cfg = ProviderConfig(kind="openai", base_url="http://localhost:11434/v1")

    adapter = make_provider("ollama", cfg, httpx.AsyncClient(), None)

    assert adapter.configured


def test_the_key_is_read_once_when_the_adapter_is_made() -> None:
    env = {"K": "first"}
    cfg = ProviderConfig(kind="gemini", base_url="https://g.test/v1beta", api_key_env="K")
    keys = provider_keys({"google": cfg}, env, base=Path("."))
    adapter = make_provider("google", cfg, httpx.AsyncClient(), keys.get("google"))

    env["K"] = "second"

    assert isinstance(adapter, GeminiAdapter)
    assert adapter.auth_headers() == {"x-goog-api-key": "first"}
