"""Answers sized for hosts: a default max_tokens, and oversize answers paged, never refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_router.config import parse_config
from mcp_router.server import create_server

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
        with pytest.raises(Exception, match=f"no page 99 of answer .*: it has pages 1 to "
                                            f"{data['pages']}$"):
            await client.read_resource(data["full_text"].rsplit("/", 1)[0] + "/99")
