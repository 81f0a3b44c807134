"""Answers sized for hosts: a default max_tokens, and oversize answers paged, never refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

from mcp_router.config import parse_config
from mcp_router.server import create_server
from mcp_router.token_estimate import estimate_text_tokens

pytestmark = pytest.mark.anyio

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat+tokens-1500}}]
output: {{max_result_tokens: 2000, page_chars: 2500}}
"""


@pytest.fixture
def server(sim: Any, tmp_path: Path) -> Any:
    return create_server(parse_config(CONFIG.format(url=sim.url), env={}), home=tmp_path, env={})


async def test_without_max_tokens_the_upstream_is_asked_for_what_fits(server: Any, sim: Any):
    async with Client(server) as client:
        await client.call_tool("chat_completion", {"prompt": "short", "max_tokens": 20})
        assert sim.state.requests[-1]["body"]["max_tokens"] == 20
        await client.call_tool("chat_completion", {"prompt": "long"})
    # (2000 result tokens - 1000 overhead) / 2 copies of the answer
    assert sim.state.requests[-1]["body"]["max_tokens"] == 500


async def test_an_answer_cut_at_the_routers_own_max_tokens_says_so(server: Any):
    async with Client(server) as client:
        capped = (await client.call_tool("chat_completion", {"prompt": "long"})
                  ).structured_content
        asked = (await client.call_tool("chat_completion", {"prompt": "long", "max_tokens": 500})
                 ).structured_content
    assert capped is not None and asked is not None
    assert (capped["finish_reason"], capped["max_tokens_applied"]) == ("length", 500)
    assert asked["finish_reason"] == "length" and "max_tokens_applied" not in asked


async def test_an_oversize_answer_is_truncated_with_a_link_to_its_pages(server: Any, sim: Any):
    async with Client(server) as client:
        result = await client.call_tool("chat_completion", {"prompt": "long", "max_tokens": 4000})
        assert not result.is_error
        data = result.structured_content
        assert data is not None and data["truncated"] is True
        assert len(data["content"]) == 500 * 4
        link = [c for c in result.content if c.type == "resource_link"]
        assert [str(c.uri) for c in link] == [data["full_text"]]
        pages = []
        for page in range(1, data["pages"] + 1):
            uri = data["full_text"].rsplit("/", 1)[0] + f"/{page}"
            read = await client.read_resource(uri)
            pages.append(read.contents[0].text)  # type: ignore[union-attr]
        whole = "".join(pages)
        assert whole.startswith(data["content"]) and len(whole) > len(data["content"])
        assert data["pages"] == -(-len(whole) // 2500)
        with pytest.raises(MCPError, match=f"no page 99 of answer .*: it has pages 1 to "
                                           f"{data['pages']}$") as missing:
            await client.read_resource(data["full_text"].rsplit("/", 1)[0] + "/99")
        assert missing.value.error.code == INVALID_PARAMS  # not found, not a server crash


LOCAL = """\
providers:
  local: {kind: openai, base_url: "http://local.test/v1", stream: false}
routes:
  default: {targets: [{provider: local, model: m}]}
"""
ANSWERS = {  # each far over a tool result's limit, in any count
    "chinese": "这是一个很长的中文回答。" * 4000,
    "russian": "Это очень длинный ответ на русском языке. " * 4000,
    "emoji": "👍🎉🚀" * 15000,
}


def answering(text: str, tmp_path: Path, output: str = "") -> Any:
    """A server whose one upstream answers `text` as one JSON body; `output` is the config's
    output section (its defaults, sized for Claude Code's ~25,000-token limit, when empty)."""
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"model": "m", "choices": [{
            "index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 9}})

    return create_server(parse_config(LOCAL + output, env={}), home=tmp_path, env={},
                         transport=httpx.MockTransport(upstream))


async def read_pages(client: Client, data: dict[str, Any]) -> list[str]:
    base = data["full_text"].rsplit("/", 1)[0]
    return [(await client.read_resource(f"{base}/{n}")).contents[0].text  # type: ignore[union-attr]
            for n in range(1, data["pages"] + 1)]


@pytest.mark.parametrize("script", list(ANSWERS))
async def test_a_long_answer_in_any_script_is_cut_to_fit_the_hosts_result_limit(
        script: str, tmp_path: Path):
    async with Client(answering(ANSWERS[script], tmp_path)) as client:
        result = await client.call_tool("chat_completion",
                                        {"prompt": "all of it", "max_tokens": 100_000})
        data = result.structured_content
        assert data is not None and data["truncated"] is True
        pages = await read_pages(client, data)
    text = "".join(c.text for c in result.content if c.type == "text")
    structured = json.dumps(data, ensure_ascii=False)
    # Counted as the budgets count tokens (high, in any script), the whole result fits.
    assert estimate_text_tokens(text) + estimate_text_tokens(structured) <= 24_000
    assert ANSWERS[script].startswith(data["content"])
    # So does each page, and together they are the whole answer.
    assert max(estimate_text_tokens(page) for page in pages) <= 24_000
    assert "".join(pages) == ANSWERS[script]


async def test_pages_in_another_script_hold_as_many_tokens_as_english_pages(tmp_path: Path):
    output = "output: {max_result_tokens: 2000, page_chars: 2500}\n"
    async with Client(answering(ANSWERS["chinese"][:3000], tmp_path, output)) as client:
        result = await client.call_tool("chat_completion",
                                        {"prompt": "all of it", "max_tokens": 4000})
        data = result.structured_content
        assert data is not None and data["truncated"] is True
        pages = await read_pages(client, data)
    # A page of 2,500 English characters is 625 tokens, the answer's share of this result
    # 500; a CJK character is counted as 5/3 of a token.
    assert len(data["content"]) == 500 * 3 // 5
    assert [len(page) for page in pages] == [625 * 3 // 5] * 8
