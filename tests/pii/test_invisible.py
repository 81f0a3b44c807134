"""Invisible characters (zero-width, joiners, soft hyphens, BOMs) do not hide a value."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_router.pii import Finding, PiiFilter, PiiPolicy
from mcp_router.pii.invisible import VisibleText
from tests.pii.support import found

ZWSP, ZWNJ, ZWJ, WJ, BOM, SHY = "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"
INVISIBLE = [ZWSP, ZWNJ, ZWJ, WJ, BOM, SHY]
KEY = "sk-proj-abc123DEF456ghi789JKL012mno345"
VALUES = [
    ("email", "jane.doe@example.com"), ("credit_card", "4111 1111 1111 1111"),
    ("credit_card", "5555-5555-5555-4444"), ("ssn", "123-45-6789"),
    ("secret", KEY), ("secret", "AKIAIOSFODNN7EXAMPLE"),
    ("iban", "DE89 3704 0044 0532 0130 00"), ("ip_address", "10.20.30.40"),
    ("phone", "+44 20 7946 0958"),
]


@pytest.mark.parametrize(("entity", "value"), [
    ("email", f"jane{ZWSP}.doe@example.com"), ("email", f"jane.doe{ZWJ}@example.com"),
    ("email", f"jane.doe@exa{SHY}mple.com"), ("credit_card", f"41{ZWSP}11 1111 1111 1111"),
    ("credit_card", f"4111 1111{SHY} 1111 1111"), ("ssn", f"123{BOM}-45-6789"),
    ("ssn", f"123-45{ZWNJ}-6789"), ("secret", f"sk-proj-abc123DEF{WJ}456ghi789JKL012mno345"),
    ("secret", f"AKIA{ZWSP}IOSFODNN7EXAMPLE"), ("iban", f"DE89 3704{ZWSP} 0044 0532 0130 00"),
    ("ip_address", f"10.20{ZWSP}.30.40"), ("phone", f"+44 20 7946{WJ} 0958"),
])
def test_an_invisible_character_inside_a_value_does_not_hide_it(entity: str, value: str) -> None:
    assert found(f"see {value} please") == [(entity, value)]


@settings(deadline=None, max_examples=200)
@given(st.sampled_from(VALUES), st.data())
def test_invisible_characters_anywhere_inside_a_value_do_not_hide_it(
        case: tuple[str, str], data: st.DataObject) -> None:
    entity, value = case
    cuts = sorted(data.draw(st.sets(st.integers(1, len(value) - 1), min_size=1, max_size=4)))
    pieces = [value[a:b] for a, b in zip([0, *cuts], [*cuts, len(value)], strict=True)]
    hidden = "".join(p + data.draw(st.sampled_from(INVISIBLE)) for p in pieces[:-1]) + pieces[-1]
    assert (entity, hidden) in found(f"see {hidden} please")


def test_what_leaves_the_process_has_the_whole_value_replaced() -> None:
    session = PiiFilter(PiiPolicy()).session()
    text = f"card 4111 11{ZWSP}11 1111 1111, mail jane{SHY}@example.com"
    out, summary = session.filter_text(text)
    assert out == "card <CREDIT_CARD>, mail <EMAIL>"
    assert summary.counts == {"credit_card": 1, "email": 1}


def test_a_pseudonymized_value_comes_back_with_its_invisible_characters() -> None:
    session = PiiFilter(PiiPolicy(action="pseudonymize")).session()
    text = f"mail jane@example.com or ja{ZWSP}ne@example.com"
    masked, _ = session.filter_text(text)
    assert masked == "mail <EMAIL_1> or <EMAIL_1>"  # one address, however it is spelled
    assert session.restore("<EMAIL_1>") == "jane@example.com"
    other = PiiFilter(PiiPolicy(action="pseudonymize")).session()
    masked, _ = other.filter_text(f"mail ja{ZWSP}ne@example.com")
    assert other.restore(masked) == f"mail ja{ZWSP}ne@example.com"


def test_a_key_the_model_hides_with_invisible_characters_is_redacted_in_the_answer() -> None:
    session = PiiFilter(PiiPolicy()).session()
    hidden = KEY[:10] + ZWSP + KEY[10:]
    answer, summary = session.redact_answer(f"Use {hidden} here.")
    assert answer == "Use <SECRET> here."
    assert summary.counts == {"secret": 1}
    stream = session.stream_filter()
    streamed = "".join(stream.feed(ch) for ch in f"Use {hidden} here.") + stream.flush()
    assert streamed == "Use <SECRET> here."


@pytest.mark.parametrize(("entity", "value"), [
    ("credit_card", f"4111 1111{ZWSP}1111 1111"), ("credit_card", f"4111 1111 1111{WJ}1111"),
    ("credit_card", f"5555-5555{SHY}5555-4444"), ("ssn", f"123-45{ZWNJ}6789"),
    ("iban", f"DE89 3704{ZWSP}0044 0532 0130 00"), ("phone", f"+44 20{BOM}7946 0958"),
])
def test_an_invisible_character_in_place_of_a_separator_does_not_hide_a_value(
        entity: str, value: str) -> None:
    assert found(f"see {value} please") == [(entity, value)]


def digit_separators(value: str) -> list[int]:
    """Where a space or hyphen sets two digits apart in `value`."""
    return [i for i in range(1, len(value) - 1) if value[i] in " -"
            and value[i - 1].isdigit() and value[i + 1].isdigit()]


@settings(deadline=None, max_examples=200)
@given(st.sampled_from([(e, v) for e, v in VALUES if digit_separators(v)]), st.data())
def test_invisible_characters_in_place_of_any_separators_do_not_hide_a_value(
        case: tuple[str, str], data: st.DataObject) -> None:
    entity, value = case
    chosen = data.draw(st.sets(st.sampled_from(digit_separators(value)), min_size=1))
    hidden = "".join(data.draw(st.sampled_from(INVISIBLE)) if i in chosen else c
                     for i, c in enumerate(value))
    assert (entity, hidden) in found(f"see {hidden} please")


@pytest.mark.parametrize("text", [
    f"ticket 4711{ZWSP}0815 is closed", f"versions 1.2{ZWSP}3 and 10.0{ZWJ}1",
    f"request id 3f2a9c1e-8b7d{ZWSP}-4c6e-9f01-23456789abcd",
    f"upgraded to version 1.2{ZWSP}.3.4 today", f"at 2024-01-15T10:{ZWSP}00:00Z it failed",
    f"push to git{ZWJ}@github.com:acme/api.git", f"card 4111 1111{SHY} 1111 1112 was declined",
    f"order 4111{ZWSP}111111111111 shipped", f"ssn 000-12{ZWSP}-3456 is not issuable",
])
def test_decoys_with_invisible_characters_are_still_not_flagged(text: str) -> None:
    assert found(text) == []


def test_a_value_set_off_from_a_word_only_by_an_invisible_character_is_still_found() -> None:
    # Read as a reader sees it the card joins the word; the text as sent keeps it apart.
    assert found(f"ref abc{ZWSP}4111111111111111 ok") == [("credit_card", "4111111111111111")]


def test_text_without_invisible_characters_has_no_visible_form() -> None:
    assert VisibleText.of("plain ascii") is None
    assert VisibleText.of("café, naïve") is None


@settings(deadline=None, max_examples=300)
@given(st.lists(st.sampled_from(["a", " ", "7", "8", *INVISIBLE]), min_size=1, max_size=40),
       st.data())
def test_a_span_of_a_separated_reading_maps_to_the_same_characters_of_the_original(
        chars: list[str], data: st.DataObject) -> None:
    text = "".join(chars)
    reading = VisibleText.separated(text, "-")
    if reading is None:
        return
    inside = [i for i, c in enumerate(reading.text) if c != "-"]
    start = data.draw(st.sampled_from(inside))
    end = data.draw(st.sampled_from([i + 1 for i in inside if i >= start]))
    back = reading.original(Finding("x", start, end))
    runs = re.sub(f"[{''.join(INVISIBLE)}]+", lambda m: "-" if m.string[m.start() - 1:m.start()]
                  .isdigit() and m.string[m.end():m.end() + 1].isdigit() else "",
                  text[back.start:back.end])
    assert runs == reading.text[start:end]
    assert text[back.start] not in INVISIBLE and text[back.end - 1] not in INVISIBLE


@settings(deadline=None, max_examples=300)
@given(st.lists(st.sampled_from(["a", "b", " ", "7", *INVISIBLE]), min_size=1, max_size=40),
       st.data())
def test_a_span_of_the_visible_text_maps_to_the_same_characters_of_the_original(
        chars: list[str], data: st.DataObject) -> None:
    text = "".join(chars)
    visible = VisibleText.of(text)
    shown = visible.text if visible is not None else text
    if not shown:
        return
    start = data.draw(st.integers(0, len(shown) - 1))
    end = data.draw(st.integers(start + 1, len(shown)))
    span = Finding("x", start, end)
    back = visible.original(span) if visible is not None else span
    assert "".join(c for c in text[back.start:back.end] if c not in INVISIBLE) == shown[start:end]
    assert text[back.start] not in INVISIBLE and text[back.end - 1] not in INVISIBLE
