"""The event-stream parser: lines in, events out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from mcp_router.providers._sse import SseEvent, iter_events

pytestmark = pytest.mark.anyio


async def events_of(text: str) -> list[SseEvent]:
    async def lines() -> AsyncIterator[str]:
        # the same line splitting the adapters get from httpx, so \r\n and \r count too
        async for line in httpx.Response(200, text=text).aiter_lines():
            yield line

    return [event async for event in iter_events(lines())]


async def test_events_are_dispatched_at_blank_lines_with_their_names() -> None:
    text = "event: message_start\ndata: {\"a\": 1}\n\ndata: [DONE]\n\n"

    assert await events_of(text) == [SseEvent("message_start", '{"a": 1}'),
                                     SseEvent("message", "[DONE]")]


async def test_multiline_data_is_joined_and_comments_and_unknown_fields_are_dropped() -> None:
    text = ": keep-alive\r\nid: 7\r\nretry: 10\r\ndata: first\r\ndata:second\r\n\r\n"

    assert await events_of(text) == [SseEvent("message", "first\nsecond")]


async def test_an_event_without_data_is_not_dispatched() -> None:
    assert await events_of("event: ping\n\n: comment\n\n") == []


async def test_data_pending_when_the_lines_run_out_is_still_dispatched() -> None:
    assert await events_of("data: last\n") == [SseEvent("message", "last")]
