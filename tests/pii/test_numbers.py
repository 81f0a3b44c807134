"""Cards, SSNs and phone numbers: valid values in every common style are found, decoys are not."""

from __future__ import annotations

import pytest

from mcp_router.pii import PiiFilter, PiiPolicy
from tests.pii.support import entities, found

CARDS = [
    "4111111111111111",  # Visa
    "4012 8888 8888 1881",
    "4222222222222",  # Visa, 13 digits
    "5555-5555-5555-4444",  # Mastercard 51-55
    "5105 1051 0510 5100",
    "2223003122003222",  # Mastercard 2-series
    "2221 0000 0000 0009",
    "2720-9999-9999-9996",
    "378282246310005",  # American Express
    "3782 822463 10005",
    "3714-496353-98431",
    "6011111111111117",  # Discover
    "6445 6445 6445 6445",
    "3530111333300000",  # JCB
    "3566 0020 2036 0505",
    "30569309025904",  # Diners Club
    "3852 000002 3237",
    "6200000000000005",  # UnionPay, 16 and 19 digits
    "6212 3456 7890 1234 569",
    "2200000000000004",  # Mir
    "6759649826438453",  # Maestro
]


@pytest.mark.parametrize("card", CARDS)
def test_a_card_of_any_brand_and_grouping_is_found(card: str) -> None:
    assert found(f"charge {card} today") == [("credit_card", card)]


@pytest.mark.parametrize("text", [
    "card 4111111111111112",  # Luhn digit wrong
    "4111 1111 1111 1112",
    "card 1234567890123452",  # passes Luhn, but no network issues 1xxx numbers
    "order 4716234567890125",  # Luhn-valid, but introduced as an order number
    "invoice #5555555555554444",
    "ts=1709640896123",  # epoch milliseconds
    "nanos 1709640896123456789",
    "ref 4111 1111 1111 1111 0000",  # a longer grouped number, not a card inside it
    "ORD-4111111111111111",
    "EAN 4006381333931",
    "IMEI 356938035643809",
])
def test_card_like_decoys_are_not_cards(text: str) -> None:
    assert "credit_card" not in entities(text)


SSNS = [
    ("123-45-6789", "ssn 123-45-6789"),
    ("078-05-1120", "the number 078-05-1120 on file"),
    ("123 45 6789", "SSN 123 45 6789"),
    ("123.45.6789", "SSN 123.45.6789"),
    ("123456789", "SSN: 123456789"),
    ("219099999", "social security number 219099999"),
    ("123-45-6789", "SSN#123-45-6789"),
    ("899-99-9999", "max area 899-99-9999"),
]


@pytest.mark.parametrize(("ssn", "text"), SSNS)
def test_an_ssn_in_any_style_is_found(ssn: str, text: str) -> None:
    assert ("ssn", ssn) in found(text)


@pytest.mark.parametrize("text", [
    "000-12-3456",  # area 000 is never issued
    "666-12-3456",  # area 666 is never issued
    "900-12-3456",  # 9xx areas are ITINs, not SSNs
    "987-65-4321",
    "123-00-4567",  # group 00
    "123-45-0000",  # serial 0000
    "id 123456789",  # nine bare digits without an SSN context
    "ORD-123-45-6789",
    "123-45-6789-01",
])
def test_unissuable_or_unintroduced_ssns_are_not_flagged(text: str) -> None:
    assert "ssn" not in entities(text)


PHONES = [
    "(415) 555-2671", "415-555-2671", "415.555.2671", "415 555 2671", "1-800-555-0199",
    "+1 415 555 2671", "+1-415-555-2671", "+14155552671", "+1 (415) 555-2671", "(555) 123-4567",
    "+44 20 7946 0958", "+44 7700 900123", "+44 (0)20 7946 0958", "020 7946 0958",
    "07700 900123", "+33 1 42 68 53 00", "01 42 68 53 00", "+49 30 901820",
    "+49 151 23456789", "0049 30 901820", "+81 3-1234-5678", "+91 98765 43210",
    "+61 2 9876 5432", "+55 11 91234-5678", "+86 138 0013 8000", "+34 612 345 678",
    "+353 87 123 4567",
]


@pytest.mark.parametrize("phone", PHONES)
def test_a_phone_number_in_international_or_national_format_is_found(phone: str) -> None:
    assert found(f"call me on {phone} tomorrow") == [("phone", phone)]


@pytest.mark.parametrize(("text", "phone"), [
    ("tel:+14155552671", "+14155552671"),
    ("tel:02079460958", "02079460958"),
    ("call me at 4155552671", "4155552671"),
    ("mobile: 14155552671", "14155552671"),
])
def test_bare_digits_are_a_phone_when_the_text_says_so(text: str, phone: str) -> None:
    assert found(text) == [("phone", phone)]


@pytest.mark.parametrize("text", [
    "123-456-7890",  # area codes never start with 1
    "(012) 345-6789",
    "911-555-1234",  # N11 service codes are not area codes
    "user_id 4155552671",  # ten digits, but nothing says phone
    "2024-01-15 10:23:45",
    "1709640896",
    "555-0123",
    "v1.2.3 and 10.4.2",
    "ISBN 978-0-306-40615-7",
    "zip 94103-1234",
    "+12",
    "01 02 03 04 05 06",  # a list of numbers, longer than a French number
])
def test_phone_like_decoys_are_not_phones(text: str) -> None:
    assert "phone" not in entities(text)


@pytest.mark.parametrize(("text", "card"), [
    ("4111 1111 1111 1111 12/26 cvv 123", "4111 1111 1111 1111"),
    ("3782 822463 10005 04/27", "3782 822463 10005"),
    ("5555-5555-5555-4444-11/2027", "5555-5555-5555-4444"),
    # Written without spaces, then the expiry, the CVV or an address in the same run.
    ("charge card 4111111111111111 12/26 cvv 123", "4111111111111111"),
    ("card 4111111111111111 1226", "4111111111111111"),
    ("card 4111111111111111 123", "4111111111111111"),
    ("card 4111111111111111 192.168.1.20", "4111111111111111"),
    ("amex 378282246310005 12/26", "378282246310005"),
    ("4111111111111111 5555555555554444 12 26", "5555555555554444"),
    # In groups, then the CVV, an expiry without its slash or an address.
    ("4111 1111 1111 1111 123", "4111 1111 1111 1111"),
    ("4111 1111 1111 1111 1226", "4111 1111 1111 1111"),
    ("4111 1111 1111 1111 12 26", "4111 1111 1111 1111"),
    ("4111 1111 1111 1111 192.168.1.20", "4111 1111 1111 1111"),
    ("3782 822463 10005 1234", "3782 822463 10005"),
    ("5555 5555 5555 4444 4111111111111111", "5555 5555 5555 4444"),
])
def test_a_card_followed_by_more_digits_is_still_found(text: str, card: str) -> None:
    assert ("credit_card", card) in found(text)


@pytest.mark.parametrize(("text", "card"), [
    ("call 555 123 4567 card 4111111111111111", "4111111111111111"),
    ("555-123-4567 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("ssn 123-45-6789 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("cvv 123 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("exp 12/26 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("exp 12/26 4111111111111111", "4111111111111111"),
    ("2026 4111111111111111 123", "4111111111111111"),
])
def test_a_card_after_other_digits_in_the_same_run_is_found(text: str, card: str) -> None:
    assert ("credit_card", card) in found(text)


@pytest.mark.parametrize("text", [
    "6212 3456 7890 1234 560",  # 19 digits, bad check
    "ref=6271 2803 9079 5067 375",  # a mistyped 19-digit UnionPay card, not one and its CVV
    "ref 4012 8888 8888 1881 2026",  # a fifth group of four that is no expiry
])
def test_a_valid_prefix_of_a_longer_grouped_number_is_not_a_card(text: str) -> None:
    assert "credit_card" not in entities(text)


def test_several_numbers_in_one_run_of_digits_are_told_apart() -> None:
    text = "2024-05-17 415-555-2671 123-45-6789"
    assert found(text) == [("phone", "415-555-2671"), ("ssn", "123-45-6789")]


def test_an_iso_timestamp_hides_nothing_that_follows_it() -> None:
    assert found("2024-05-17T10:11:12Z card=4111111111111111") == [
        ("credit_card", "4111111111111111")]


DASHES = {"hyphen": "\u2010", "non-breaking hyphen": "\u2011", "figure dash": "\u2012",
          "en dash": "\u2013", "em dash": "\u2014", "minus sign": "\u2212",
          "full-width hyphen": "\uff0d"}


@pytest.mark.parametrize("dash", DASHES.values(), ids=DASHES.keys())
@pytest.mark.parametrize(("entity", "value"), [
    ("credit_card", "4111{d}1111{d}1111{d}1111"), ("ssn", "123{d}45{d}6789"),
    ("phone", "415{d}555{d}2671"), ("phone", "+1{d}415{d}555{d}2671"),
    ("phone", "020{d}7946{d}0958"),
])
def test_a_number_written_with_a_typographic_dash_is_found(entity: str, value: str,
                                                           dash: str) -> None:
    written = value.format(d=dash)
    assert found(f"refund {written} today") == [(entity, written)]


@pytest.mark.parametrize(("entity", "value"), [
    ("credit_card", "４１１１ １１１１ １１１１ １１１１"),
    ("credit_card", "４１１１１１１１１１１１１１１１"),
    ("ssn", "１２３－４５－６７８９"),
    ("phone", "（４１５） ５５５－２６７１"),
    ("credit_card", "4111\u00a01111\u00a01111\u00a01111"),
    ("credit_card", "4111\u202f1111\u202f1111\u202f1111"),
])
def test_a_number_in_full_width_digits_or_with_no_break_spaces_is_found(entity: str,
                                                                       value: str) -> None:
    assert found(f"refund {value} today") == [(entity, value)]


@pytest.mark.parametrize("card", ["4111.1111.1111.1111", "3782.822463.10005",
                                  "5555.5555.5555.4444", "4000.0000.0000.0000.006"])
def test_a_card_with_dots_between_its_groups_is_found(card: str) -> None:
    assert found(f"card {card} exp 12/27") == [("credit_card", card)]


@pytest.mark.parametrize("text", [
    "4111.1111.1111.1112",  # Luhn digit wrong
    "version 4111.1111.1111.1111.2",  # a longer dotted number
    "Upgrade to version 1.2.3.4 of the lib",
    "kernel 5.15.0.1051 and 6.8.0.1012",
    "Chrome/120.0.6099.109 Safari/537.36",
    "Meeting on 2024\u201303\u201315 and 15.03.2024 at 14:30:00",
    "pages 1200\u20131300, years 1999\u20132005",
    "ratio 3.14159265358979 and 2.71828182845904",
    "request id 123e4567\u2013e89b\u201312d3\u2013a456\u2013426614174000",
    "sha 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    "1.2.3.4\u20135.6.7.8 is the range",
])
def test_dotted_and_dashed_numbers_that_are_not_cards_stay(text: str) -> None:
    assert entities(text) <= {"ip_address"}


def test_an_em_dash_used_as_punctuation_does_not_hide_a_card() -> None:
    assert found("my card\u20144111 1111 1111 1111\u2014expires soon") == [
        ("credit_card", "4111 1111 1111 1111")]


NATIONAL_PHONES = [
    "030 12345678",  # Berlin landline, no +49
    "030-12345678",
    "(030) 1234567",
    "0151 23456789",  # German mobile
    "0151 2345 678",
    "0151/23456789",
    "030/1234567",
    "06-12345678",  # Dutch mobile
    "612 34 56 78",  # Spanish mobile, which has no trunk zero
    "138 0013 8000",  # Chinese mobile
]


@pytest.mark.parametrize("phone", NATIONAL_PHONES)
def test_a_national_number_without_a_country_code_is_found(phone: str) -> None:
    assert found(f"ruf mich an: {phone} morgen") == [("phone", phone)]


@pytest.mark.parametrize(("text", "phone"), [
    ("mobile: 13800138000", "13800138000"),
    ("call me on 13800138000", "13800138000"),
    ("手机：13800138000", "13800138000"),
    ("tel 0612345678", "0612345678"),
])
def test_a_chinese_or_dutch_mobile_in_bare_digits_is_a_phone_when_the_text_says_so(
        text: str, phone: str) -> None:
    assert found(text) == [("phone", phone)]


@pytest.mark.parametrize("text", [
    "user_id 13800138000",  # eleven bare digits and nothing says phone
    "order 0612345678",
    "zip 02139-4307",
    "id 0001 23456789",
    "tracking 01234 567890123",
    "01 02 03 04 05 06 07",
    "612 34 56 78 90",  # a longer list of numbers
    "412 34 56 78",  # Spanish mobiles start with 6 or 7
    "Total: 612 345 678 units",
    "backup/2024/0151/23456789",
    "see 03/15/2024 at 10:00",
    "0.5 12345678",
    "patch 0151-2345-6789-0001",
    "ref 0319 0032 7157",  # twelve digits in fours: a reference, not a German mobile
])
def test_national_number_decoys_are_not_phones(text: str) -> None:
    assert "phone" not in entities(text)


TEAM = PiiFilter(PiiPolicy(custom=(("ssn", r"\b\d{3}-\d{2}-\d{4}\b"),
                                   ("credit_card", r"\b\d{16}\b"))))


@pytest.mark.parametrize("text", ["model ABC-123-45-6789 in stock", "part 123-45-6789-01"])
def test_an_ssn_shape_inside_a_longer_hyphenated_code_is_not_an_ssn(text: str) -> None:
    assert "ssn" not in entities(text, TEAM)


def test_an_ssn_after_its_own_label_is_still_an_ssn_under_the_team_policy() -> None:
    assert found("SSN-123-45-6789", TEAM) == [("ssn", "123-45-6789")]
