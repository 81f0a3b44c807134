"""Actions on requests: redact, mask, pseudonymize and block, per entity type, with summaries."""

from __future__ import annotations

import pytest

from mcp_router.errors import PolicyBlocked
from mcp_router.messages import ChatRequest, Message, PiiSummary
from mcp_router.pii import PiiBlocked, PiiFilter, PiiPolicy

EMAIL, CARD, SSN = "jane.doe@example.com", "4111 1111 1111 1111", "123-45-6789"


def request(*contents: str, stop: tuple[str, ...] | None = None) -> ChatRequest:
    roles = ["system", "user", "assistant"]
    messages = tuple(Message(role=roles[i % 3], content=c)  # type: ignore[arg-type]
                     for i, c in enumerate(contents))
    return ChatRequest(messages=messages, stop=stop)


def filtered(policy: PiiPolicy, *contents: str) -> tuple[list[str], PiiSummary]:
    out, summary = PiiFilter(policy).session().filter_request(request(*contents))
    return [m.content for m in out.messages], summary


def test_redact_replaces_each_value_by_a_typed_placeholder() -> None:
    texts, summary = filtered(PiiPolicy(action="redact"), f"mail {EMAIL}, card {CARD}, ssn {SSN}")
    assert texts == ["mail <EMAIL>, card <CREDIT_CARD>, ssn <SSN>"]
    assert summary == PiiSummary(action="redact", counts={"credit_card": 1, "email": 1, "ssn": 1})


def test_mask_keeps_the_shape_and_only_a_cards_last_four_digits() -> None:
    texts, summary = filtered(PiiPolicy(action="mask"), f"mail {EMAIL}, card {CARD}, ssn {SSN}")
    assert texts == ["mail ****.***@*******.***, card **** **** **** 1111, ssn ***-**-****"]
    assert summary.action == "mask"


def test_pseudonymize_gives_the_same_value_the_same_numbered_placeholder() -> None:
    texts, summary = filtered(PiiPolicy(action="pseudonymize"),
                              f"{EMAIL} and bob@example.org", f"again {EMAIL.upper()}")
    assert texts == ["<EMAIL_1> and <EMAIL_2>", "again <EMAIL_1>"]
    assert summary == PiiSummary(action="pseudonymize", counts={"email": 3})


def test_pseudonyms_pair_spellings_of_the_same_number() -> None:
    texts, _ = filtered(PiiPolicy(action="pseudonymize"), f"{CARD} / {CARD.replace(' ', '-')}")
    assert texts == ["<CREDIT_CARD_1> / <CREDIT_CARD_1>"]


def test_block_refuses_the_call_naming_types_and_counts_only() -> None:
    pii = PiiFilter(PiiPolicy(action="block"))
    with pytest.raises(PiiBlocked) as caught:
        pii.session().filter_request(request(f"{EMAIL} {EMAIL}", f"ssn {SSN}"))
    assert isinstance(caught.value, PolicyBlocked)
    assert str(caught.value) == "request blocked by the PII policy: found email ×2, ssn ×1"
    assert caught.value.counts == {"email": 2, "ssn": 1}


def test_per_type_actions_override_the_default() -> None:
    policy = PiiPolicy(action="redact", actions={"credit_card": "mask", "email": "pseudonymize"})
    texts, summary = filtered(policy, f"{EMAIL}, {CARD}, {SSN}")
    assert texts == ["<EMAIL_1>, **** **** **** 1111, <SSN>"]
    assert summary == PiiSummary(action="mask,pseudonymize,redact",
                                 counts={"credit_card": 1, "email": 1, "ssn": 1})


def test_only_types_set_to_block_refuse_the_call() -> None:
    policy = PiiPolicy(action="redact", actions={"ssn": "block"})
    assert filtered(policy, f"{EMAIL}")[0] == ["<EMAIL>"]
    with pytest.raises(PiiBlocked, match=r"found ssn ×1$"):
        filtered(policy, f"{EMAIL} {SSN}")


def test_a_blocked_request_leaves_no_pseudonyms_behind() -> None:
    session = PiiFilter(PiiPolicy(action="pseudonymize", actions={"ssn": "block"})).session()
    with pytest.raises(PiiBlocked):
        session.filter_request(request(f"{EMAIL} {SSN}"))
    assert session.restore("<EMAIL_1>") == "<EMAIL_1>"


def test_every_message_and_stop_string_is_filtered() -> None:
    out, summary = PiiFilter(PiiPolicy()).session().filter_request(
        request(f"system knows {EMAIL}", f"user {CARD}", f"assistant said {SSN}", stop=(EMAIL,)))
    assert [m.content for m in out.messages] == [
        "system knows <EMAIL>", "user <CREDIT_CARD>", "assistant said <SSN>"]
    assert out.stop == ("<EMAIL>",)
    assert summary.counts == {"credit_card": 1, "email": 2, "ssn": 1}


def test_a_clean_request_is_returned_as_is_with_the_policy_action() -> None:
    clean = request("refactor the retry loop in router.py")
    out, summary = PiiFilter(PiiPolicy()).session().filter_request(clean)
    assert out is clean
    assert summary == PiiSummary(action="redact", counts={})


def test_a_disabled_filter_passes_the_request_and_says_so() -> None:
    original = request(f"{EMAIL}")
    out, summary = PiiFilter(PiiPolicy(enabled=False)).session().filter_request(original)
    assert out is original
    assert summary == PiiSummary(action="none", counts={})


def test_the_filtered_request_keeps_every_other_field() -> None:
    original = ChatRequest(messages=(Message(role="user", content=EMAIL),), max_tokens=50,
                           temperature=0.2, top_p=0.9)
    out, _ = PiiFilter(PiiPolicy()).session().filter_request(original)
    redacted = (Message(role="user", content="<EMAIL>"),)
    assert out == original.model_copy(update={"messages": redacted})


def test_custom_entity_types_get_their_own_placeholder() -> None:
    policy = PiiPolicy(action="pseudonymize", custom=(("employee_id", r"\bEMP-\d{6}\b"),))
    texts, _ = filtered(policy, "EMP-004211 and EMP-004211")
    assert texts == ["<EMPLOYEE_ID_1> and <EMPLOYEE_ID_1>"]


def test_a_blocked_type_inside_a_longer_finding_of_another_type_still_blocks() -> None:
    policy = PiiPolicy(custom=(("ticket", r"TICKET\[[^\]]*\]"),), actions={"ssn": "block"})
    with pytest.raises(PiiBlocked, match=r"found ssn ×1$"):
        filtered(policy, "TICKET[customer ssn 123-45-6789 on file]")
