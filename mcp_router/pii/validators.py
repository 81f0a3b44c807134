"""Pure checks that turn pattern matches into findings: checksums, number ranges, assigned codes."""

from __future__ import annotations

import re
import string

_HEX = frozenset("0123456789abcdefABCDEF")
_DOUBLED = str.maketrans("0123456789", "0246813579")
# Letters as the mod-97 check reads them: A (or a) = 10 … Z = 35.
_LETTER_VALUES = str.maketrans({c: str(int(c, 36)) for c in string.ascii_letters})
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

# ITU calling codes are prefix-free, so the first digits of an international number decide
# how long its country code is.  Three-digit codes are matched by their first two digits.
_CC_ONE = frozenset("17")
_CC_TWO = frozenset((
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
    "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
    "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98"))
_CC_THREE_PREFIX = frozenset((
    "21", "22", "23", "24", "25", "26", "29", "35", "37", "38", "42", "50", "59", "67", "68",
    "69", "80", "85", "87", "88", "96", "97", "99"))
# National significant number lengths where the numbering plan fixes them.
_NATIONAL_LENGTHS: dict[str, tuple[int, ...]] = {
    "1": (10,), "7": (10,), "33": (9,), "34": (9,), "39": (9, 10, 11), "44": (9, 10),
    "61": (9,), "81": (9, 10), "86": (10, 11), "91": (10,), "55": (10, 11), "52": (10,),
}


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    # Every second digit from the right doubled, written as the sum of its digits (7 → 5).
    summed = digits[-1::-2] + digits[-2::-2].translate(_DOUBLED)
    if summed.isascii():  # the sum of the digits is the sum of the bytes, less 48 each
        return (sum(summed.encode()) - 48 * len(summed)) % 10 == 0
    return sum(map(int, summed)) % 10 == 0


def card_brand(digits: str) -> str | None:
    """The card network whose number ranges and lengths fit `digits` (12 to 19), or None."""
    n, p6 = len(digits), int(digits[:6])  # one parse: the 2- and 4-digit prefixes follow
    p2, p4 = p6 // 10_000, p6 // 100
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (p4 == 6011 or 644 <= p4 // 10 <= 649 or p2 == 65 or 622126 <= p6 <= 622925) \
            and 16 <= n <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= p4 // 10 <= 305 or p2 in (36, 38, 39)) and 14 <= n <= 19:
        return "diners"
    if 2200 <= p4 <= 2204 and n == 16:
        return "mir"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    if (p2 == 50 or 56 <= p2 <= 69) and 13 <= n <= 19:
        return "maestro"
    return None


def card_ok(digits: str) -> bool:
    """A payment card number: a known network's range and length, and a valid Luhn digit."""
    return 12 <= len(digits) <= 19 and card_brand(digits) is not None and luhn_ok(digits)


def iban_ok(compact: str) -> bool:
    """An IBAN without spaces: the country's length and the ISO 7064 mod-97 check."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    if not rearranged.isalnum():  # `int` would take "_", a sign or spaces
        return False
    try:
        number = int(rearranged.translate(_LETTER_VALUES))
    except ValueError:  # a letter outside A-Z
        return False
    return number % 97 == 1


def iban_length(country: str) -> int | None:
    """The fixed IBAN length of a country, or None when the country issues no IBANs."""
    return _IBAN_LENGTHS.get(country)


def ssn_ok(digits: str) -> bool:
    """A US SSN the SSA could issue: area not 000/666/9xx, group not 00, serial not 0000."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return not (area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000")


def nanp_ok(ten: str, *, strict: bool = True) -> bool:
    """A North American number: the area code starts 2-9 and is not an N11 service code.

    `strict` also requires a dialable exchange (2-9, not N11). Formatted numbers are checked
    leniently because fictional ones like (555) 123-4567 are still what a person wrote as a
    phone number; bare digit runs are checked strictly because they are usually something else.
    """
    if len(ten) != 10 or not ten.isdigit():
        return False
    area, exchange = ten[:3], ten[3:6]
    if area[0] < "2" or area[1:] == "11":
        return False
    return not strict or (exchange[0] > "1" and exchange[1:] != "11")


def international_ok(digits: str) -> bool:
    """Digits after `+`/`00`: an assigned country code and a plausible national number length."""
    if not 8 <= len(digits) <= 15 or digits[0] == "0":
        return False
    if digits[0] in _CC_ONE:
        cc = digits[0]
    elif digits[:2] in _CC_TWO:
        cc = digits[:2]
    elif digits[:2] in _CC_THREE_PREFIX:
        cc = digits[:3]
    else:
        return False
    national = digits[len(cc):]
    if cc == "1":
        return nanp_ok(national, strict=False)
    allowed = _NATIONAL_LENGTHS.get(cc)
    return len(national) in allowed if allowed else 6 <= len(national) <= 12


def ipv4_valid(text: str) -> bool:
    """A dotted quad of decimal octets 0-255 without leading zeros (ASCII digits, as
    `ipaddress` reads them)."""
    return _IPV4.fullmatch(text) is not None


def ipv4_sensitive(text: str) -> bool:
    """An IPv4 address that identifies a host: not unspecified, loopback, broadcast or a mask."""
    return ipv4_valid(text) and text.split(".", 1)[0] not in ("0", "127", "255")


def ipv6_sensitive(text: str) -> bool:
    """An IPv6 address that identifies a host (zone suffix allowed): not `::` or `::1`.

    Parsed by hand: `ipaddress` is several times slower, and logs are full of candidates.
    """
    halves = text.split("%", 1)[0].split("::")
    if len(halves) > 2:
        return False
    groups: list[str] = []
    for half in halves:
        groups.extend(half.split(":") if half else [])
    if groups and "." in groups[-1]:  # an embedded IPv4 address counts as two groups
        if not ipv4_valid(groups[-1]):
            return False
        groups[-1:] = ["1", "1"]
    if len(groups) != 8 if len(halves) == 1 else len(groups) > 7:
        return False
    if not all(1 <= len(g) <= 4 and all(c in _HEX for c in g) for g in groups):
        return False
    return any(int(g, 16) for g in groups[:-1]) or (bool(groups) and int(groups[-1], 16) > 1)
