"""IBANs, profanity, custom patterns, the entity allow-list and the overlap rule."""

from __future__ import annotations

import re

import pytest

from mcp_router.pii import Finding, PiiFilter, PiiPolicy, resolve_overlaps
from mcp_router.pii.alphabet import digits_and
from mcp_router.pii.registry import builtin_detectors, detect
from tests.pii.support import entities, found

IBANS = [
    "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32",
    "GB82WEST12345698765432", "FR14 2004 1010 0505 0001 3M02 606", "ES91 2100 0418 4502 0005 1332",
    "IT60 X054 2811 1010 0000 0123 456", "NL91 ABNA 0417 1643 00", "BE68 5390 0754 7034",
    "CH93 0076 2011 6238 5295 7", "NO93 8601 1117 947", "PL61 1090 1014 0000 0712 1981 2874",
    "SE45 5000 0000 0583 9825 7466", "AT61 1904 3002 3457 3201",
]


@pytest.mark.parametrize("iban", IBANS)
def test_an_iban_from_any_country_compact_or_grouped_is_found(iban: str) -> None:
    assert found(f"pay to {iban}.") == [("iban", iban)]


@pytest.mark.parametrize("text", [
    "DE89 3704 0044 0532 0130 01",  # check digits do not match
    "DE8937040044053201300",  # one character short for Germany
    "XX89370400440532013000",  # no such country
    "SHA256 and ISO8601 and UTF8",
    "GB82WEST12345698765432X",
])
def test_iban_look_alikes_are_not_ibans(text: str) -> None:
    assert "iban" not in entities(text)


@pytest.mark.parametrize("iban", [iban.lower() for iban in IBANS])
def test_an_iban_written_in_lower_case_is_found(iban: str) -> None:
    assert found(f"pay to {iban}.") == [("iban", iban)]


@pytest.mark.parametrize("text", [
    "de89 3704 0044 0532 0130 01",  # check digits do not match
    "de8937040044053201300",  # one character short for Germany
    "commit de89370400440532013000f4c1a2b3c4d5e6f7a8b9c0",  # a hash: too long for Germany
    "gb82 WEST 1234 5698 7654 32",  # neither in capitals nor in lower case
    "be12 and nl34 and at56 were the shelves",
])
def test_lower_case_iban_look_alikes_are_not_ibans(text: str) -> None:
    assert "iban" not in entities(text)


@pytest.mark.parametrize("word", ["fuck", "Fucking", "SHIT", "bullshit", "asshole", "bastards"])
def test_a_listed_profanity_is_found_as_a_whole_word(word: str) -> None:
    assert found(f"this {word} build") == [("profanity", word)]


@pytest.mark.parametrize("text", ["Scunthorpe United", "shiitake", "a bassoon class", "Dickens",
                                  "mississippi", "cocktail"])
def test_words_containing_a_profanity_are_not_flagged(text: str) -> None:
    assert found(text) == []


def test_profanity_can_be_switched_off() -> None:
    assert found("this fucking build", PiiFilter(PiiPolicy(profanity=False))) == []


def test_a_custom_pattern_reports_its_own_entity_type() -> None:
    pii = PiiFilter(PiiPolicy(custom=(("employee_id", r"\bEMP-\d{6}\b"),)))
    assert found("assign EMP-004211 to it", pii) == [("employee_id", "EMP-004211")]


def test_custom_patterns_named_like_built_ins_keep_their_checks_and_count_once() -> None:
    team = PiiFilter(PiiPolicy(custom=(("ssn", r"\b\d{3}-\d{2}-\d{4}\b"),
                                       ("credit_card", r"\b\d{16}\b"))))
    text = "ssn 123-45-6789 card 4111111111111111 bad 666-12-3456 1234567812345678"
    assert found(text, team) == [("ssn", "123-45-6789"), ("credit_card", "4111111111111111")]


def test_a_custom_pattern_named_like_a_built_in_widens_where_it_looks() -> None:
    # The built-in does not read "ORD-…" as a card; the team's own pattern says to.
    team = PiiFilter(PiiPolicy(custom=(("credit_card", r"(?<=ORD-)\d{16}"),)))
    assert found("ORD-4111111111111111", team) == [("credit_card", "4111111111111111")]


def test_the_entity_allow_list_limits_what_is_looked_for() -> None:
    only_email = PiiFilter(PiiPolicy(entities=frozenset({"email"})))
    assert found("jane@example.com 4111111111111111 10.1.2.3", only_email) == [
        ("email", "jane@example.com")]


def test_overlapping_findings_are_typed_by_the_longest_then_the_most_specific() -> None:
    kept = resolve_overlaps([Finding("phone", 0, 10), Finding("credit_card", 0, 16),
                             Finding("ssn", 20, 31), Finding("custom", 20, 31),
                             Finding("email", 40, 50), Finding("ip_address", 45, 49)])
    assert kept == [Finding("credit_card", 0, 16), Finding("ssn", 20, 31),
                    Finding("email", 40, 50)]


def test_overlapping_findings_cover_their_union_so_nothing_is_left_in_clear() -> None:
    assert resolve_overlaps([Finding("secret", 0, 30), Finding("secret", 20, 60),
                             Finding("email", 55, 70)]) == [Finding("secret", 0, 70)]


def test_a_key_block_run_into_by_a_token_is_still_covered_whole() -> None:
    text = ("sk-proj-abc123DEF456ghi789JKL012mno345-----BEGIN PRIVATE KEY-----\n"
            "MIIEvQIBADANBg\n-----END PRIVATE KEY----- done")
    assert found(text) == [("secret", text[:-5])]


def test_a_url_password_beats_the_address_like_text_inside_it() -> None:
    assert found("https://bot:pa55word@github.com/acme") == [("secret", "bot:pa55word")]


def test_a_search_for_some_types_asks_only_the_detectors_that_report_them() -> None:
    asked: list[str] = []

    class Recording:
        def __init__(self, name: str) -> None:
            self.name, self.entities = name, frozenset({name})

        def find(self, text: str) -> list[Finding]:
            asked.append(self.name)
            return [Finding(self.name, 0, 1)]

    detectors = [Recording("secret"), Recording("email"), Recording("phone")]
    assert detect("x", detectors, ["secret", "phone"]) == [Finding("secret", 0, 1)]
    assert asked == ["secret", "phone"]


def test_every_built_in_detector_declares_the_types_it_finds() -> None:
    text = ("mail jane.doe@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, "
            "ip 8.8.8.8, iban GB82WEST12345698765432, key sk-proj-abc123DEF456ghi789JKL012mno "
            "and damn")
    for detector in builtin_detectors():
        assert {f.entity for f in detector.find(text)} <= detector.entities, detector.name


@pytest.mark.parametrize(("name", "pattern", "text", "out"), [
    ("ssn", r"\b\d{3}/\d{2}/\d{4}\b", "SSN 123/45/6789 on file", "SSN <SSN> on file"),
    ("ssn", r"\b\d{3}_\d{2}_\d{4}\b", "SSN 123_45_6789 on file", "SSN <SSN> on file"),
    ("ssn", r"\b\d{3}\s\d{2}\s\d{4}\b", "ssn\n123\t45\t6789", "ssn\n<SSN>"),
    ("credit_card", r"\b\d{4}(?:\t\d{4}){3}\b", "card\t4111\t1111\t1111\t1111\tVisa",
     "card\t<CREDIT_CARD>\tVisa"),
    ("credit_card", r"(?<=card:)\d{4}(?:/\d{4}){3}", "card:4111/1111/1111/1111",
     "card:<CREDIT_CARD>"),
])
def test_a_custom_pattern_named_like_a_numeric_type_finds_other_separators(
        name: str, pattern: str, text: str, out: str) -> None:
    session = PiiFilter(PiiPolicy(custom=((name, pattern),))).session()
    assert session.filter_text(text)[0] == out


@pytest.mark.parametrize(("name", "pattern", "text"), [
    ("ssn", r"\b\d{3}/\d{2}/\d{4}\b", "SSN 666/45/6789 on file"),  # never issued
    ("ssn", r"\b\d{3}/\d{2}/\d{4}\b", "due 123/45/0000"),
    ("credit_card", r"\b\d{4}(?:\t\d{4}){3}\b", "card\t4111\t1111\t1111\t1112"),  # Luhn fails
])
def test_such_a_pattern_still_passes_its_matches_through_the_types_check(
        name: str, pattern: str, text: str) -> None:
    out, summary = PiiFilter(PiiPolicy(custom=((name, pattern),))).session().filter_text(text)
    assert out == text and summary.counts == {}


@pytest.mark.parametrize(("pattern", "in_runs"), [
    (r"\b\d{3}-\d{2}-\d{4}\b", True), (r"\b\d{16}\b", True), (r"(?<=ORD-)\d{16}", True),
    (r"\(?\d{3}\)?[ .-]\d{4}", True), (r"[0-9]{4}(?: [0-9]{4}){3}", True),
    (r"\b\d{3}/\d{2}/\d{4}\b", False), (r"\d{3}\s\d{6}", False), (r"SSN \d{9}", False),
    (r"\d{3}.\d{6}", False), (r"[^a-z]{11}", False), (r"\d{3}(?:x|-)\d{6}", False),
])
def test_only_a_pattern_of_digits_and_run_separators_is_left_to_the_digit_runs(
        pattern: str, in_runs: bool) -> None:
    assert digits_and(re.compile(pattern), " -.()") is in_runs
