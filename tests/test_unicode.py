"""Text that is not valid Unicode, from an upstream or from a host, never breaks a call.

A gateway that cuts its stream by UTF-16 index (JavaScript's `slice`) sends an emoji's two
halves in two events, each a valid JSON escape; a host may send half an emoji in a prompt.
Python holds such halves as lone surrogates, which no encoder takes: the upstream body, the
tool result and the cache write would each fail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from mcp_router.config import parse_config
from mcp_router.ledger import Ledger
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio

CONFIG = ('providers:\n  up: {kind: openai, base_url: "http://up.test/v1"}\n'
          'routes:\n  default: {targets: [{provider: up, model: m}]}\n')


def _stream(parts: list[str]) -> bytes:
    chunks: list[dict[str, Any]] = [
        {"model": "m", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
        for p in parts]
    chunks.append({"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({"model": "m", "choices": [],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 5}})
    # json.dumps escapes non-ASCII, so each half travels as its own "\udXXX" escape
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + \
        b"data: [DONE]\n\n"


def _server(tmp_path: Path, parts: list[str], sent: list[httpx.Request]) -> Any:
    body = _stream(parts)

    def upstream(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return create_server(parse_config(CONFIG, env={}), home=tmp_path, env={},
                         transport=httpx.MockTransport(upstream))


async def test_an_emoji_split_across_two_stream_events_is_joined_cached_and_served(
        tmp_path: Path) -> None:
    sent: list[httpx.Request] = []
    async with Client(_server(tmp_path, ["smile \ud83d", "\ude00 ok"], sent)) as client:
        first = await client.call_tool("chat_completion", {"prompt": "q"})
        again = await client.call_tool("chat_completion", {"prompt": "q"})
        still = await client.call_tool("list_providers", {})  # the session lives on

    assert first.structured_content and again.structured_content
    assert first.structured_content["content"] == "smile \U0001F600 ok"
    assert (again.structured_content["cached"], again.structured_content["content"]) == (
        True, "smile \U0001F600 ok")
    assert len(sent) == 1
    assert not still.is_error


async def test_a_lone_half_in_an_answer_becomes_a_replacement_character(tmp_path: Path) -> None:
    sent: list[httpx.Request] = []
    async with Client(_server(tmp_path, ["cut \ud83d", " here"], sent)) as client:
        result = await client.call_tool("chat_completion", {"prompt": "q"})

    assert result.structured_content
    assert result.structured_content["content"] == "cut \ufffd here"


async def test_half_an_emoji_from_the_host_is_sent_as_a_replacement_character(
        tmp_path: Path) -> None:
    sent: list[httpx.Request] = []
    async with Client(_server(tmp_path, ["fine"], sent)) as client:
        by_prompt = await client.call_tool("chat_completion", {
            "prompt": "hi \ud83d there", "metadata": {"tag": "v\ud83d"}})
        by_messages = await client.call_tool("chat_completion", {
            "messages": [{"role": "user", "content": "a \ude00 b"}]})

    assert not by_prompt.is_error and not by_messages.is_error
    bodies = [json.loads(request.content) for request in sent]
    assert bodies[0]["messages"][0]["content"] == "hi \ufffd there"
    assert bodies[1]["messages"][0]["content"] == "a \ufffd b"
    with Ledger.in_home(tmp_path, clock=None) as ledger:  # type: ignore[arg-type]
        labels = [dict(row.metadata) for row in ledger.recent()]
    assert {"tag": "v\ufffd"} in labels
