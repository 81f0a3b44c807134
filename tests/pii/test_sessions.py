"""Sessions: pseudonyms hold for a whole MCP session, never cross sessions, come back in answers."""

from __future__ import annotations

import pytest

from mcp_router.messages import ChatRequest, Message, PiiSummary
from mcp_router.pii import PiiBlocked, PiiFilter, PiiPolicy, Pseudonyms

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


def _addresses(first: int, count: int) -> str:
    return "\n".join(f"login failed for user{i}@acme-corp.de" for i in range(first, first + count))


def test_a_long_session_keeps_at_most_20000_values_and_forgets_the_oldest(
        pseudonymizing: PiiFilter) -> None:
    session = pseudonymizing.session()
    for first in range(0, 20_500, 500):  # a long agent session pasting log excerpts
        session.filter_text(_addresses(first, 500))
    assert repr(session) == "<PiiSession: 20000 pseudonyms>"
    # The oldest 500 are dropped: an answer naming them keeps what the upstream saw.
    assert session.restore("<EMAIL_1> <EMAIL_500>") == "<EMAIL_1> <EMAIL_500>"
    assert session.restore("<EMAIL_501> <EMAIL_20500>") == (
        "user500@acme-corp.de user20499@acme-corp.de")


def test_a_value_seen_again_in_a_request_is_kept_over_older_ones() -> None:
    pseudonyms = Pseudonyms(max_values=3)
    for name in ("ann", "bob", "cat"):
        pseudonyms.placeholder("email", f"{name}@acme-corp.de")
    assert pseudonyms.placeholder("email", "ann@acme-corp.de") == "<EMAIL_1>"  # used again
    pseudonyms.placeholder("email", "dan@acme-corp.de")
    assert pseudonyms.restore("<EMAIL_1> <EMAIL_2> <EMAIL_3> <EMAIL_4>") == (
        "ann@acme-corp.de <EMAIL_2> cat@acme-corp.de dan@acme-corp.de")


def test_a_value_restored_in_an_answer_is_kept_over_older_ones() -> None:
    pseudonyms = Pseudonyms(max_values=3)
    for name in ("ann", "bob", "cat"):
        pseudonyms.placeholder("email", f"{name}@acme-corp.de")
    assert pseudonyms.restore("wrote to <EMAIL_1>") == "wrote to ann@acme-corp.de"
    pseudonyms.placeholder("email", "dan@acme-corp.de")
    assert pseudonyms.restore("<EMAIL_1> <EMAIL_2> <EMAIL_4>") == (
        "ann@acme-corp.de <EMAIL_2> dan@acme-corp.de")


def test_a_dropped_value_seen_again_gets_a_new_number_and_none_is_issued_twice() -> None:
    pseudonyms = Pseudonyms(max_values=2)
    issued = [pseudonyms.placeholder("email", f"{name}@acme-corp.de")
              for name in ("ann", "bob", "cat", "ann", "bob")]
    assert issued == ["<EMAIL_1>", "<EMAIL_2>", "<EMAIL_3>", "<EMAIL_4>", "<EMAIL_5>"]
    assert pseudonyms.restore("<EMAIL_1> <EMAIL_4>") == "<EMAIL_1> ann@acme-corp.de"


def test_the_map_is_bounded_by_the_characters_it_holds_and_keeps_the_newest_value() -> None:
    pseudonyms = Pseudonyms(max_chars=100)  # a value and its normal form: 2 x 30 per key
    keys = [f"sk-proj-{i:03d}" + "x" * 19 for i in range(3)]
    for key in keys:
        pseudonyms.placeholder("secret", key)
    assert len(pseudonyms) == 1
    assert pseudonyms.restore("<SECRET_2> <SECRET_3>") == f"<SECRET_2> {keys[2]}"
    huge = "y" * 500  # longer than the whole bound: kept alone, so it still comes back
    assert pseudonyms.placeholder("secret", huge) == "<SECRET_4>"
    assert (len(pseudonyms), pseudonyms.restore("<SECRET_4>")) == (1, huge)


def test_typed_placeholders_are_held_within_a_bound_and_never_issued() -> None:
    pseudonyms = Pseudonyms(max_written=4)
    typed = {f"<EMAIL_{n}>" for n in range(2, 40, 3)} | {"<TICKET_7>", "<EMAIL_999>"}
    pseudonyms.reserve("pasted log: " + " ".join(sorted(typed)))
    issued = {pseudonyms.placeholder("email", f"user{i}@acme-corp.de") for i in range(60)}
    assert len(issued) == 60 and not issued & typed
    assert len(pseudonyms._written) <= 4


def test_a_typed_placeholder_the_session_already_numbered_past_is_not_held() -> None:
    pseudonyms = Pseudonyms()
    for name in ("ann", "bob"):
        pseudonyms.placeholder("email", f"{name}@acme-corp.de")
    pseudonyms.reserve("the answer said <EMAIL_1> and <EMAIL_2>, then <EMAIL_4>")
    assert pseudonyms._written == {"<EMAIL_4>"}
    assert pseudonyms.placeholder("email", "cat@acme-corp.de") == "<EMAIL_3>"
    assert pseudonyms.placeholder("email", "dan@acme-corp.de") == "<EMAIL_5>"


def test_a_message_sent_again_keeps_its_values_however_much_else_the_session_sees() -> None:
    """The host resends a conversation's first message beside other traffic; it is served
    from the session's memo, yet its value must not be the least recently used one."""
    session = PiiFilter(PiiPolicy(action="pseudonymize")).session()
    first = Message(role="user", content="My address is alice@example.com; remember it.")
    session.filter_request(ChatRequest(messages=(first,)))
    for turn in range(25):  # 25,000 other addresses: past the 20,000 the session keeps
        other = " ".join(f"u{turn}x{i}@corp.example" for i in range(1000))
        sent, _ = session.filter_request(ChatRequest(messages=(
            first, Message(role="user", content=other))))
    assert sent.messages[0].content == "My address is <EMAIL_1>; remember it."
    answer, _ = session.filter_answer("Sure, I'll write to <EMAIL_1>.")
    assert answer == "Sure, I'll write to alice@example.com."


def test_planted_placeholders_numbered_near_the_top_leave_numbers_readable() -> None:
    pseudonyms = Pseudonyms(max_written=8)
    pseudonyms.reserve(" ".join(f"<EMAIL_{999_999 - i}>" for i in range(20)))
    issued = pseudonyms.placeholder("email", "jane@example.com")
    assert issued == "<EMAIL_1>"
    assert pseudonyms.restore(f"write to {issued}") == "write to jane@example.com"
