"""Perplexity, an OpenAI-compatible wire with rules of its own: it refuses role orders the
others take, and names its sources beside the answer that cites them as [1], [2]."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from mcp_router.messages import Message

PERPLEXITY_HOST = "api.perplexity.ai"


def is_perplexity(provider: str, base_url: str) -> bool:
    """Whether a provider is Perplexity: its own host, or a provider named "perplexity" (as
    every shipped config names it) whose base URL is a proxy's or a test's."""
    return urlsplit(base_url).hostname == PERPLEXITY_HOST or provider == "perplexity"


def systems_first(messages: Iterable[Message]) -> tuple[Message, ...]:
    """`messages` with each system message after the first other one appended to the last
    leading system message (a new one at the front when there is none), joined by a blank
    line in order: Perplexity refuses system messages after the conversation began ("After the
    (optional) system message(s), user and assistant roles should be alternating.")."""
    leading: list[Message] = []
    rest: list[Message] = []
    late: list[str] = []
    for message in messages:
        if message.role != "system":
            rest.append(message)
        elif rest:
            late.append(message.content)
        else:
            leading.append(message)
    if not late:
        return (*leading, *rest)
    head = leading.pop() if leading else Message(role="system", content="")
    text = "\n\n".join(t for t in (head.content, *late) if t.strip())
    return (*leading, head.model_copy(update={"content": text}), *rest)


def sources(data: dict[str, Any]) -> str:
    """Perplexity's sources, as a numbered list to append to the answer that cites them as
    [1], [2]: its `citations` (URLs), else the `url` of each of its `search_results`. "" for
    a body that names none, as every other vendor's does."""
    urls = data.get("citations")
    if urls is None:
        results = data.get("search_results")
        urls = [r.get("url") for r in results if isinstance(r, dict)] \
            if isinstance(results, list) else []
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        return ""
    return "\n\nSources:\n" + "\n".join(f"[{n}] {url}" for n, url in enumerate(urls, 1))
