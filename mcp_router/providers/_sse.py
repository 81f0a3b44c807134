"""Server-sent events: text lines in, `SseEvent`s out, per the WHATWG event-stream rules."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its `event:` name ("message" when absent) and its joined data."""

    event: str
    data: str


async def iter_events(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    """Group lines (without their line endings) into events; comments and unknown fields drop.

    An event is dispatched at a blank line. Unlike a browser, data still pending when the
    lines run out is dispatched too: some servers omit the last blank line, and a truncated
    JSON payload is caught by the JSON parser anyway.
    """
    name: str = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(name or "message", "\n".join(data))
            name, data = "", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    if data:
        yield SseEvent(name or "message", "\n".join(data))
