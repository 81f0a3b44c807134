"""Fail closed: a failing detector or an uninspectable payload refuses the call, never passes it."""

from __future__ import annotations

import pytest

from mcp_router.errors import PolicyBlocked
from mcp_router.messages import ChatRequest, Message
from mcp_router.pii import Finding, PiiFilter, PiiFilterFailed, PiiPolicy, build_detectors

SECRET_TEXT = "call 415-555-2671 about 123-45-6789"


class Exploding:
    """A detector that fails the way a buggy or overloaded one would, quoting its input."""

    name = "exploding"
    entities = frozenset({"email", "phone", "ssn", "credit_card", "iban", "ip_address",
                          "secret", "profanity"})

    def __init__(self, error: type[Exception] = RuntimeError) -> None:
        self.error = error

    def find(self, text: str) -> list[Finding]:
        raise self.error(f"cannot handle {text!r}")


def broken_filter(error: type[Exception] = RuntimeError) -> PiiFilter:
    policy = PiiPolicy()
    return PiiFilter(policy, detectors=[*build_detectors(policy), Exploding(error)])


@pytest.mark.parametrize("error", [RuntimeError, ValueError, MemoryError, RecursionError])
def test_a_failing_detector_refuses_the_request(error: type[Exception]) -> None:
    request = ChatRequest(messages=(Message(role="user", content=SECRET_TEXT),))
    with pytest.raises(PiiFilterFailed) as caught:
        broken_filter(error).session().filter_request(request)
    assert isinstance(caught.value, PolicyBlocked)
    assert str(caught.value) == f"the PII filter failed ({error.__name__}); nothing was sent"
    assert caught.value.cause == error.__name__


def test_the_refusal_carries_neither_the_text_nor_the_original_exception() -> None:
    request = ChatRequest(messages=(Message(role="user", content=SECRET_TEXT),))
    with pytest.raises(PiiFilterFailed) as caught:
        broken_filter().session().filter_request(request)
    error = caught.value
    assert error.__cause__ is None and error.__context__ is None
    assert "415-555-2671" not in str(error) and "415-555-2671" not in repr(error)


def test_a_failing_detector_withholds_the_answer_and_the_stream() -> None:
    session = broken_filter().session()
    with pytest.raises(PiiFilterFailed, match=r"\(RuntimeError\); the answer was withheld$"):
        session.filter_answer(SECRET_TEXT)
    restorer = session.stream_filter()
    with pytest.raises(PiiFilterFailed):
        for _ in range(20):
            restorer.feed(SECRET_TEXT + " ")


def test_a_payload_that_cannot_be_inspected_is_refused() -> None:
    unreadable = Message.model_construct(role="user", content=None)
    broken = ChatRequest.model_construct(messages=(unreadable,))
    with pytest.raises(PiiFilterFailed, match=r"^the PII filter failed \(\w+\); nothing was sent$"):
        PiiFilter(PiiPolicy()).session().filter_request(broken)


def test_a_failing_custom_pattern_does_not_let_text_through() -> None:
    class Flaky:
        name = "employee_id"
        entities = frozenset({name})

        def find(self, text: str) -> list[Finding]:
            return [Finding("employee_id", 0, len(text) + 5)] if "EMP" in text else []

    session = PiiFilter(PiiPolicy(), detectors=[Flaky()]).session()
    out, summary = session.filter_text("EMP-1")  # a finding past the end still redacts
    assert out == "<EMPLOYEE_ID>" and summary.counts == {"employee_id": 1}
