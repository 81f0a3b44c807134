"""Builders shared by the cache tests: requests, responses and answers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from mcp_router.cache import CachedAnswer
from mcp_router.messages import ChatRequest, ChatResponse, Completion, Usage
from tests.fixtures.clock import FakeClock


def request(text: str = "What is 2 + 2?", **fields: Any) -> ChatRequest:
    """A one-message user request, with any other fields given."""
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": text}], **fields})


def response(content: str = "4", *, finish_reason: str | None = "stop",
             provider: str = "deepseek", model: str = "deepseek-chat") -> ChatResponse:
    """An answer that `provider`/`model` gave."""
    return ChatResponse(
        completion=Completion(content=content, finish_reason=finish_reason,
                              usage=Usage(input_tokens=12, output_tokens=1),
                              upstream_model=f"{model}-0613"),
        provider=provider, model=model)


def answer(clock: FakeClock, content: str = "4", cost: str | None = "0.0012",
           **kwargs: Any) -> CachedAnswer:
    """A response stamped with the clock's wall time and what it cost."""
    return CachedAnswer(response(content, **kwargs), stored_at=clock.wall(),
                        cost_usd=None if cost is None else Decimal(cost))


def unwritable(answer: ChatResponse) -> ChatResponse:
    """`answer` with half an emoji in its text, as no validated response would carry: JSON
    cannot hold it, so writing it anywhere fails."""
    completion = answer.completion.model_copy(update={"content": "smile \ud83d"})
    return answer.model_copy(update={"completion": completion})
