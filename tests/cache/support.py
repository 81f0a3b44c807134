"""Builders shared by the cache tests: a settable wall clock, requests, responses and answers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from mcp_router.cache import CachedAnswer
from mcp_router.messages import ChatRequest, ChatResponse, Completion, Usage

T0 = 1_790_000_000.0


class FakeWallClock:
    """A clock whose wall time moves only when told; `now` moves with it."""

    def __init__(self, wall: float = T0) -> None:
        self._wall = wall

    def now(self) -> float:
        return self._wall - T0

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._wall += seconds


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


def answer(clock: FakeWallClock, content: str = "4", cost: str | None = "0.0012",
           **kwargs: Any) -> CachedAnswer:
    """A response stamped with the clock's wall time and what it cost."""
    return CachedAnswer(response(content, **kwargs), stored_at=clock.wall(),
                        cost_usd=None if cost is None else Decimal(cost))
