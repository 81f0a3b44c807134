"""The last resort: when every target failed, the host's own model answers (if allowed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CreateMessageRequestParams, CreateMessageResult, TextContent

from mcp_router.config import parse_config
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat+fail-503}}]
retry: {{attempts: 1}}
sampling: {{fallback: {fallback}}}
cache: {{enabled: false}}
"""
asked: list[CreateMessageRequestParams] = []


async def host_model(context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
    asked.append(params)
    return CreateMessageResult(role="assistant", model="host-model-1", stop_reason="endTurn",
                               content=TextContent(type="text", text="answered by the host"))


def server(sim: Any, home: Path, fallback: bool) -> Any:
    text = CONFIG.format(url=sim.url, fallback=str(fallback).lower())
    return create_server(parse_config(text, env={}), home=home, env={})


async def test_the_hosts_model_answers_when_every_target_failed(sim: Any, tmp_path: Path):
    asked.clear()
    async with Client(server(sim, tmp_path, True), sampling_callback=host_model,
                      mode="legacy") as client:
        result = await client.call_tool("chat_completion", {
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": "hello"}], "max_tokens": 50})
    data = result.structured_content
    assert data is not None and not result.is_error
    assert (data["content"], data["provider"], data["model"]) == (
        "answered by the host", "host", "host-model-1")
    assert [(a["provider"], a["outcome"]) for a in data["attempts"]] == [
        ("deepseek", "error"), ("host", "ok")]
    [params] = asked
    assert params.system_prompt == "be brief" and params.max_tokens == 50
    assert [m.content.text for m in params.messages] == ["hello"]  # type: ignore[union-attr]


async def test_an_explicit_model_that_fails_alone_also_falls_back_to_the_host(
        sim: Any, tmp_path: Path):
    asked.clear()
    async with Client(server(sim, tmp_path, True), sampling_callback=host_model,
                      mode="legacy") as client:
        result = await client.call_tool("chat_completion", {
            "prompt": "hello", "model": "deepseek/deepseek-chat+fail-500"})
    data = result.structured_content
    assert data is not None and not result.is_error
    assert [(a["provider"], a["outcome"], a["status"]) for a in data["attempts"]] == [
        ("deepseek", "error", 500), ("host", "ok", None)]


async def test_without_the_config_switch_the_host_is_never_asked(sim: Any, tmp_path: Path):
    asked.clear()
    async with Client(server(sim, tmp_path, False), sampling_callback=host_model,
                      mode="legacy") as client:
        result = await client.call_tool("chat_completion", {"prompt": "hello"})
    assert result.is_error and asked == []


async def test_a_client_without_sampling_gets_the_routing_error_saying_so(sim: Any,
                                                                          tmp_path: Path):
    async with Client(server(sim, tmp_path, True), mode="legacy") as client:
        result = await client.call_tool("chat_completion", {"prompt": "hello"})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Error executing tool chat_completion: all targets failed")
    assert text.endswith("host/sampling: skipped (the host does not offer MCP sampling)")


async def test_on_a_connection_without_server_requests_the_error_says_why_the_host_was_not_asked(
        sim: Any, tmp_path: Path):
    asked.clear()
    # 2026-07-28 (the SDK client's default) has no channel for the server's own requests
    async with Client(server(sim, tmp_path, True), sampling_callback=host_model) as client:
        result = await client.call_tool("chat_completion", {"prompt": "hello"})
    assert result.is_error and asked == []
    text = result.content[0].text  # type: ignore[union-attr]
    assert "deepseek/deepseek-chat+fail-503: error (HTTP 503" in text
    assert "host/sampling: skipped (this connection carries no request from the server" in text
