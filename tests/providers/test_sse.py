"""The event-stream parser: bytes in, however the network cuts them, events out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_router.providers._sse import SseEvent, SseParser


def events_of(*chunks: bytes) -> list[SseEvent]:
    parser = SseParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


def test_events_are_dispatched_at_blank_lines_with_their_names() -> None:
    text = b"event: message_start\ndata: {\"a\": 1}\n\ndata: [DONE]\n\n"

    assert events_of(text) == [SseEvent("message_start", '{"a": 1}'),
                               SseEvent("message", "[DONE]")]


def test_multiline_data_is_joined_and_comments_and_unknown_fields_are_dropped() -> None:
    text = b": keep-alive\r\nid: 7\r\nretry: 10\r\ndata: first\r\ndata:second\r\n\r\n"

    assert events_of(text) == [SseEvent("message", "first\nsecond")]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_each_line_ending_separates_lines(ending: bytes) -> None:
    text = ending.join([b"data: a", b"data: b", b"", b"data: c", b"", b""])

    assert events_of(text) == [SseEvent("message", "a\nb"), SseEvent("message", "c")]


def test_an_event_without_data_is_not_dispatched() -> None:
    assert events_of(b"event: ping\n\n: comment\n\n") == []


def test_data_pending_when_the_stream_ends_is_still_dispatched() -> None:
    assert events_of(b"data: last\n") == [SseEvent("message", "last")]
    assert events_of(b"data: cut short") == [SseEvent("message", "cut short")]


def test_an_event_is_dispatched_as_soon_as_its_blank_line_arrives() -> None:
    parser = SseParser()

    assert parser.feed(b"data: one\n") == []
    assert parser.feed(b"\ndata: tw") == [SseEvent("message", "one")]
    assert parser.close() == [SseEvent("message", "tw")]


def test_a_crlf_cut_between_chunks_is_one_line_ending_not_a_blank_line() -> None:
    assert events_of(b"data: a\r", b"\ndata: b\r\n\r\n") == [SseEvent("message", "a\nb")]


STREAM = ("event: delta\r\ndata: {\"text\": \"héllo — 日本\"}\r\n\r\n: ping\n"
          "data: line one\ndata: line two\n\ndata: [DONE]\r\r").encode()


@given(st.lists(st.integers(0, len(STREAM)), max_size=8))
def test_where_the_network_cuts_the_bytes_changes_nothing(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    assert events_of(*chunks) == events_of(STREAM) == [
        SseEvent("delta", '{"text": "héllo — 日本"}'),
        SseEvent("message", "line one\nline two"), SseEvent("message", "[DONE]")]


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(("first", "name"), [(b"event: message_start\ndata: {}\n\n",
                                               "message_start"),
                                              (b"data: {}\n\n", "message")])
def test_one_byte_order_mark_opening_the_stream_is_ignored(first: bytes, name: str) -> None:
    # WHATWG: one leading U+FEFF is ignored; kept, it renames the first field and the
    # first event (Anthropic's message_start: the model and the input tokens) is lost
    events = events_of(BOM + first + b"event: message_stop\ndata: end\n\n")

    assert events == [SseEvent(name, "{}"), SseEvent("message_stop", "end")]


@given(st.lists(st.integers(0, len(BOM + STREAM)), max_size=8))
def test_a_byte_order_mark_cut_between_chunks_is_still_ignored(cuts: list[int]) -> None:
    text = BOM + STREAM
    bounds = [0, *sorted(cuts), len(text)]
    chunks = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    assert events_of(*chunks) == events_of(STREAM)


def test_only_the_first_byte_order_mark_is_ignored() -> None:
    assert events_of(BOM + b"data: \xef\xbb\xbfx\n\n") == [SseEvent("message", "\ufeffx")]
    assert events_of(BOM + BOM + b"data: x\n\n") == []
