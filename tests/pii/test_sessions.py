"""Sessions: pseudonyms hold for a whole MCP session, never cross sessions, come back in answers."""

from __future__ import annotations

import pytest

from mcp_router.messages import PiiSummary
from mcp_router.pii import PiiBlocked, PiiFilter, PiiPolicy

EMAIL, CARD = "jane.doe@example.com", "4111 1111 1111 1111"
KEY = "sk-proj-abc123DEF456ghi789JKL012mno345"


@pytest.fixture
def pseudonymizing() -> PiiFilter:
    return PiiFilter(PiiPolicy(action="pseudonymize"))


def test_a_value_keeps_its_placeholder_across_calls_of_one_session(
        pseudonymizing: PiiFilter) -> None:
    session = pseudonymizing.session()
    assert session.filter_text(f"first {EMAIL}")[0] == "first <EMAIL_1>"
    assert session.filter_text("second bob@example.org")[0] == "second <EMAIL_2>"
    assert session.filter_text(f"third {EMAIL}")[0] == "third <EMAIL_1>"


def test_sessions_do_not_share_pseudonyms(pseudonymizing: PiiFilter) -> None:
    one, two = pseudonymizing.session(), pseudonymizing.session()
    one.filter_text(f"{EMAIL}")
    assert two.filter_text("bob@example.org")[0] == "<EMAIL_1>"
    assert one.restore("<EMAIL_1>") == EMAIL
    assert two.restore("<EMAIL_1>") == "bob@example.org"


def test_an_answer_gets_the_callers_values_back(pseudonymizing: PiiFilter) -> None:
    session = pseudonymizing.session()
    session.filter_text(f"email {EMAIL}, card {CARD}")
    answer, summary = session.filter_answer("I wrote to <EMAIL_1> about <CREDIT_CARD_1>.")
    assert answer == f"I wrote to {EMAIL} about {CARD}."
    assert summary == PiiSummary(action="none", counts={})


def test_unknown_or_foreign_placeholders_are_left_as_written(pseudonymizing: PiiFilter) -> None:
    session = pseudonymizing.session()
    session.filter_text(EMAIL)
    restored = session.restore("<EMAIL_2> <PHONE_1> <EMAIL> <email_1>")
    assert restored == f"<EMAIL_2> <PHONE_1> <EMAIL> {EMAIL}"


def test_a_secret_the_model_writes_is_redacted_but_the_callers_own_comes_back(
        pseudonymizing: PiiFilter) -> None:
    session = pseudonymizing.session()
    session.filter_text(f"my key {KEY}")
    other = "ghp_" + "Ab1" * 12
    answer, summary = session.filter_answer(f"Use <SECRET_1>, not {other}.")
    assert answer == f"Use {KEY}, not <SECRET>."
    assert summary == PiiSummary(action="redact", counts={"secret": 1})


def test_the_answer_policy_can_block(pseudonymizing: PiiFilter) -> None:
    strict = PiiFilter(PiiPolicy(answer_actions={"ssn": "block"})).session()
    with pytest.raises(PiiBlocked, match="^answer blocked by the PII policy: found ssn ×1$"):
        strict.filter_answer("their SSN is 123-45-6789")


def test_answers_pass_untouched_when_no_answer_action_is_set() -> None:
    lax = PiiFilter(PiiPolicy(answer_actions={})).session()
    assert lax.filter_answer(f"key {KEY}") == (f"key {KEY}", PiiSummary(action="none", counts={}))


def test_the_session_and_filter_reprs_show_no_values(pseudonymizing: PiiFilter) -> None:
    session = pseudonymizing.session()
    session.filter_text(f"{EMAIL} {CARD}")
    for shown in (repr(session), str(session), repr(pseudonymizing), repr(session._pseudonyms)):
        assert EMAIL not in shown and "4111" not in shown
    assert repr(session) == "<PiiSession: 2 pseudonyms>"


def test_an_answer_secret_inside_a_longer_finding_of_another_type_is_still_redacted() -> None:
    pii = PiiFilter(PiiPolicy(custom=(("ticket", r"TICKET\[[^\]]*\]"),)))
    answer, summary = pii.session().filter_answer(f"see TICKET[token {KEY} here]")
    assert KEY not in answer
    assert summary.counts == {"secret": 1}


def test_the_cacheable_answer_keeps_placeholders_and_each_session_restores_its_own(
        pseudonymizing: PiiFilter) -> None:
    alice, bob = pseudonymizing.session(), pseudonymizing.session()
    request_a, _ = alice.filter_text("mail alice@example.com")
    request_b, _ = bob.filter_text("mail bob@example.org")
    assert request_a == request_b == "mail <EMAIL_1>"  # the same cache key
    cached, summary = alice.redact_answer(f"Sent to <EMAIL_1>; leaked {KEY}")
    assert cached == "Sent to <EMAIL_1>; leaked <SECRET>"
    assert summary.counts == {"secret": 1}
    assert alice.restore(cached) == "Sent to alice@example.com; leaked <SECRET>"
    assert bob.restore(cached) == "Sent to bob@example.org; leaked <SECRET>"


@pytest.mark.parametrize("name", ["otp_code", "2fa_code", "3ds", "_2fa"])
def test_a_custom_types_placeholder_comes_back_whatever_its_name_starts_with(name: str) -> None:
    policy = PiiPolicy(action="pseudonymize", custom=((name, r"\bOTP-\d{6}\b"),))
    session = PiiFilter(policy).session()
    sent, _ = session.filter_text("Repeat OTP-123456 please")
    assert "OTP-123456" not in sent
    placeholder = sent.removeprefix("Repeat ").removesuffix(" please")
    answer, _ = session.filter_answer(f"You said {placeholder}.")
    assert answer == "You said OTP-123456."
