"""Server-sent events: bytes in as they arrive, `SseEvent`s out, per the WHATWG rules."""

from __future__ import annotations

from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its `event:` name ("message" when absent) and its joined data."""

    event: str
    data: str


class SseParser:
    """Splits a stream's chunks into lines (\\r\\n, \\n or \\r) and the lines into events.

    Comments and unknown fields drop; an event is dispatched at a blank line. Unlike a
    browser, data still pending at `close()` is dispatched too: some servers omit the last
    blank line, and a truncated JSON payload is caught by the JSON parser anyway. Lines are
    split on bytes, which no UTF-8 character contains, so a character cut between two
    chunks is decoded whole. One byte order mark opening the stream is ignored, as the
    rules say; otherwise it would become part of the first field's name and lose that event.
    """

    __slots__ = ("_data", "_name", "_pending", "_started")

    def __init__(self) -> None:
        self._pending = b""
        self._name = ""
        self._data: list[str] = []
        self._started = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events that `chunk` completes (usually all it holds: one read, one list)."""
        text = self._pending + chunk
        if not self._started:
            if len(text) < len(_BOM) and _BOM.startswith(text):
                self._pending = text  # the mark may be cut between chunks: wait for the rest
                return []
            text, self._started = text.removeprefix(_BOM), True
        lines = text.splitlines(keepends=True)
        # The last line waits for its ending; so does a lone \r, whose \n may come next.
        self._pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        return self._events(lines)

    def close(self) -> list[SseEvent]:
        """The events still pending when the stream ended."""
        lines, self._pending = [self._pending] if self._pending else [], b""
        events = self._events(lines)
        if self._data:
            events.append(SseEvent(self._name or "message", "\n".join(self._data)))
            self._name, self._data = "", []
        return events

    def _events(self, lines: list[bytes]) -> list[SseEvent]:
        events: list[SseEvent] = []
        for raw in lines:
            line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            if not line:
                if self._data:
                    events.append(SseEvent(self._name or "message", "\n".join(self._data)))
                self._name, self._data = "", []
                continue
            field, _, value = line.partition(":")
            if field == "data":
                self._data.append(value.removeprefix(" "))
            elif field == "event":
                self._name = value.removeprefix(" ")
        return events
