"""Results and errors carry types, counts and actions, never a detected value."""

from __future__ import annotations

import pytest

from mcp_router.messages import ChatRequest, Message, PiiSummary
from mcp_router.pii import BUILTIN_ENTITIES, PiiBlocked, PiiFilter, PiiPolicy

VALUES = ["jane.doe@example.com", "4111 1111 1111 1111", "123-45-6789", "+44 20 7946 0958",
          "DE89 3704 0044 0532 0130 00", "203.0.113.7", "AKIAIOSFODNN7EXAMPLE", "fucking"]
TEXT = " | ".join(VALUES)


def shown(obj: object) -> str:
    parts = [repr(obj), str(obj)]
    if isinstance(obj, PiiSummary):
        parts.append(obj.model_dump_json())
    return " ".join(parts)


def assert_no_value(obj: object) -> None:
    text = shown(obj)
    for value in VALUES:
        assert value not in text
        assert value.replace(" ", "") not in text


@pytest.mark.parametrize("action", ["redact", "mask", "pseudonymize"])
def test_summaries_never_contain_a_detected_value(action: str) -> None:
    session = PiiFilter(PiiPolicy(action=action)).session()  # type: ignore[arg-type]
    request = ChatRequest(messages=(Message(role="user", content=TEXT),))
    out, summary = session.filter_request(request)
    assert summary.counts == {"credit_card": 1, "email": 1, "iban": 1, "ip_address": 1,
                              "phone": 1, "profanity": 1, "secret": 1, "ssn": 1}
    assert_no_value(summary)
    assert_no_value(out.messages[0].content)
    assert_no_value(session)


def test_a_block_error_never_contains_a_detected_value() -> None:
    with pytest.raises(PiiBlocked) as caught:
        PiiFilter(PiiPolicy(action="block")).session().filter_text(TEXT)
    assert_no_value(caught.value)
    assert_no_value(caught.value.args)
    assert caught.value.__context__ is None


def test_answer_and_stream_summaries_never_contain_a_detected_value() -> None:
    everything = dict.fromkeys(BUILTIN_ENTITIES, "redact")
    session = PiiFilter(PiiPolicy(answer_actions=everything)).session()  # type: ignore[arg-type]
    answer, summary = session.filter_answer(TEXT)
    assert_no_value(answer)
    assert_no_value(summary)
    restorer = session.stream_filter()
    streamed = "".join(restorer.feed(c) for c in TEXT) + restorer.flush()
    assert streamed == answer
    assert_no_value(restorer.summary)
