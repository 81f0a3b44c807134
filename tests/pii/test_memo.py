"""A session filters each text once: the chat history sent again every turn is not redone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mcp_router.messages import ChatRequest, Message, PiiSummary
from mcp_router.pii import PiiBlocked, PiiFilter, PiiPolicy
from mcp_router.pii.detectors import Finding
from mcp_router.pii.memo import FilterMemo, memo_key
from mcp_router.pii.registry import builtin_detectors

EMAIL = "jane.doe@example.com"


class Counting:
    """The built-in detectors, counting the texts they are asked to inspect."""

    name = "counting"

    def __init__(self) -> None:
        self.inner = builtin_detectors()
        self.entities = frozenset().union(*(d.entities for d in self.inner))
        self.texts: list[str] = []

    def find(self, text: str) -> Iterator[Finding]:
        self.texts.append(text)
        for detector in self.inner:
            yield from detector.find(text)


def _request(*contents: str) -> ChatRequest:
    return ChatRequest(messages=tuple(Message(role="user", content=c) for c in contents))


def _contents(request: ChatRequest) -> list[str]:
    return [m.content for m in request.messages]


@pytest.mark.parametrize("action", ["redact", "pseudonymize", "mask"])
def test_a_resent_history_gives_the_same_text_and_counts_and_is_not_inspected_again(
        action: str) -> None:
    counting = Counting()
    session = PiiFilter(PiiPolicy(action=action), [counting]).session()
    first = f"write to {EMAIL} please"
    turn1, found1 = session.filter_request(_request(first))
    turn2, found2 = session.filter_request(_request(first, "and to bob@example.org"))

    assert _contents(turn2)[0] == _contents(turn1)[0]
    assert found1.counts == {"email": 1} and found2.counts == {"email": 2}
    assert counting.texts == [first, "and to bob@example.org"]  # the first turn only once


def test_pseudonyms_of_a_remembered_text_are_still_restored() -> None:
    session = PiiFilter(PiiPolicy(action="pseudonymize")).session()
    history = f"mail {EMAIL}"
    session.filter_request(_request(history))
    again, _ = session.filter_request(_request(history, f"again {EMAIL}"))
    assert _contents(again) == ["mail <EMAIL_1>", "again <EMAIL_1>"]
    assert session.restore("<EMAIL_1>") == EMAIL


def test_a_blocked_text_is_blocked_every_time_it_is_sent() -> None:
    session = PiiFilter(PiiPolicy(actions={"email": "block"})).session()
    for _ in range(2):
        with pytest.raises(PiiBlocked):
            session.filter_request(_request(f"mail {EMAIL}"))


def test_sessions_do_not_share_what_they_remember() -> None:
    pii = PiiFilter(PiiPolicy(action="pseudonymize"))
    one, two = pii.session(), pii.session()
    one.filter_text("bob@example.org")
    assert one.filter_text(EMAIL)[0] == "<EMAIL_2>"
    assert two.filter_text(EMAIL)[0] == "<EMAIL_1>"


def test_the_memo_keeps_no_input_in_clear() -> None:
    memo = FilterMemo()
    memo.put(memo_key(f"to {EMAIL}"), "to <EMAIL>", {"email": 1})
    assert memo.get(memo_key(f"to {EMAIL}")) == ("to <EMAIL>", {"email": 1})
    assert EMAIL not in repr(memo.__dict__)


def test_the_memo_drops_the_least_recently_used_texts_past_its_bounds() -> None:
    memo = FilterMemo(max_entries=2, max_chars=10)
    a, b, c, long = map(memo_key, ("a", "b", "c", "long"))
    memo.put(a, "aaaa", {})
    memo.put(b, "bbbb", {})
    assert memo.get(a) is not None  # now "b" is the least recently used
    memo.put(c, "cccc", {})  # 3 entries and 12 characters: "b" goes
    assert (memo.get(a), memo.get(b), len(memo)) == (("aaaa", {}), None, 2)
    memo.put(long, "x" * 11, {})  # longer than the whole memo: not kept
    assert memo.get(long) is None and len(memo) == 2


def test_a_disabled_policy_passes_text_through_unremembered() -> None:
    session = PiiFilter(PiiPolicy(enabled=False)).session()
    assert session.filter_text(EMAIL) == (EMAIL, PiiSummary(action="none"))
