"""Email addresses (plain and `name [at] host [dot] com` obfuscations) and IP addresses."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from mcp_router.pii.detectors import Finding, is_word_char, right_ok, word_before
from mcp_router.pii.validators import ipv4_sensitive, ipv6_sensitive

# Letters and digits of any script (`[^\W_]`): internationalised domains (`пример.рф`,
# `münchen.de`) and local parts (`josé@`) are addresses as much as ASCII ones are.
_ALNUM = r"[^\W_]"
# Scripts written without spaces between words (Han, Kana, Hangul, Bopomofo, Thai, Lao, Khmer,
# Myanmar; with their iteration marks and half-width forms). An address runs straight into such
# text (`邮箱是zhang@example.com，`), so where their letters or digits meet another script's the
# address ends. Other scripts may mix within one address (`josé@`, a Cyrillic `а` in `jаne@`):
# the text around them has spaces.
_SPACELESS = (r"\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3005-\u3007"
              r"\u3021-\u3029\u3031-\u3035\u3038-\u303c\u3040-\u30ff\u3100-\u312f"
              r"\u3130-\u318f\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f"
              r"\uac00-\ud7ff\uf900-\ufaff\uff66-\uffdc\U00020000-\U0003ffff")
_SPACELESS_ALNUM = rf"(?:(?=[{_SPACELESS}]){_ALNUM})"
_OTHER_ALNUM = rf"[^\W_{_SPACELESS}]"
_SCRIPT_CHANGE = re.compile(rf"{_OTHER_ALNUM}{_SPACELESS_ALNUM}|{_SPACELESS_ALNUM}{_OTHER_ALNUM}")
# A TLD is letters of one side, and what follows must not continue it: `co.jp|です` ends there.
_TLD_SPACELESS = rf"(?:(?=[{_SPACELESS}])[^\W\d_]){{2,24}}(?!{_SPACELESS_ALNUM}|-)"
_TLD = rf"(?P<tld>[^\W\d_{_SPACELESS}]{{2,24}}(?!{_OTHER_ALNUM}|-)|{_TLD_SPACELESS})"
# Atomic: what may follow a label (a dot, a space, a bracket) can never be inside one, so a
# shorter label cannot help a match, and not trying them spares `re` a lot of backtracking
# at every `@` that starts no address (icon@2x, deploy@ci-runner-7). Inside a label `[\w-]`
# (one class, which `re` repeats fast) lets an underscore in: `_address` turns such a domain
# away.
_LABEL = rf"(?>{_ALNUM}(?:[\w-]{{0,61}}{_ALNUM})?)"
# Obfuscations in brackets may be any case; bare words only in capitals (`jane AT example DOT
# com`), since a lower-case " at " is ordinary English.
_DOT = r"(?:\.|\s*[\[({<]\s*(?i:dot)\s*[\])}>]\s*|\s+DOT\s+)"
# Text after the `@` (or its obfuscated spelling): labels joined by dots, ending in a TLD.
_DOMAIN = re.compile(rf"\s*{_LABEL}(?:{_DOT}{_LABEL})*{_DOT}{_TLD}")
# The plain scan checks in C that a local-part character precedes the `@` and a domain
# follows, and turns away scp-style git remotes (`git@host:org/repo`, see
# `_remote_or_url_user`) without backing off to a shorter domain; the obfuscated spellings get
# scans of their own, because `re` finds a literal far faster than an alternation.
_AT_SIGN = re.compile(rf"@(?<=[\w%+-]@)(?={_ALNUM})(?P<domain>(?>" + _DOMAIN.pattern
                      + r"))(?!:[^ \n\t])")
# `json.dumps` (ensure_ascii, Python's default, which agents serialise tool arguments with)
# writes `josé@münchen.de` as `jos\u00e9@m\u00fcnchen.de`, and JSON inside JSON doubles the
# backslash: such an escape is a letter of the address. The scan that reads them is slower,
# and runs only on a text with a `\u` in it. A TLD in escapes (`.\u0440\u0444`) is not read.
_ESCAPE = r"\\\\?u[0-9A-Fa-f]{4}"
_ESCAPE_REVERSED = re.compile(r"([0-9A-Fa-f]{4})u\\\\?")
_ESCAPED_ALNUM = rf"(?:{_ALNUM}|{_ESCAPE})"
_ESCAPED_LABEL = rf"(?>{_ESCAPED_ALNUM}(?:(?:[\w-]|{_ESCAPE}){{0,61}}{_ESCAPED_ALNUM})?)"
_AT_SIGN_ESCAPED = re.compile(
    rf"@(?<=[\w%+-]@)(?={_ESCAPED_ALNUM})(?P<domain>(?>\s*{_ESCAPED_LABEL}"
    rf"(?:{_DOT}{_ESCAPED_LABEL})*{_DOT}{_TLD}))(?!:[^ \n\t])")
# `john%40example.com`: an address URL-encoded in a query string, as access logs record it.
# The look back comes after the literal, which `re` then finds fast.
_AT_ENCODED = re.compile(r"%40(?<=[\w+.-]%40)(?P<domain>" + _DOMAIN.pattern + ")")
_AT_BRACKETED = re.compile(r"[\[({<]\s*(?i:at)\s*[\])}>]")
# From the "A", the space before it looked back at: `re` finds a pattern's leading literal by
# its first character, and spaces are everywhere.
_AT_WORD = re.compile(r"AT (?<= AT )")
_AT_CLOSING = re.compile(r"at\s*[\])}>]")  # on lower-cased text: a cheap test before the regex
# What ends a URL's authority; searched in place between `://` and the address.
_AUTHORITY_END = re.compile(r"[/ \t\n\"'<>]")
_LOCAL_REVERSED = re.compile(r"[\w%+-](?:[\w.%+-]{0,62}[\w%+-])?")
# Read backwards too: an escape is one character of the local part, tried before its digits.
_LOCAL_ESCAPED_REVERSED = re.compile(
    rf"(?:{_ESCAPE_REVERSED.pattern}|[\w%+-])(?:{_ESCAPE_REVERSED.pattern}|[\w.%+-])*")
# Asset names like icon@2x.png look like addresses; these "TLDs" are file extensions.
_FILE_EXTENSIONS = frozenset((
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "pdf", "js", "mjs", "cjs", "ts",
    "tsx", "jsx", "py", "rb", "go", "rs", "java", "kt", "cpp", "hpp", "css", "scss", "html",
    "json", "yaml", "yml", "toml", "md", "txt", "lock", "log", "zip", "gz", "tar", "so", "dll",
    "exe", "sh", "bin", "map", "vue", "php", "xml", "csv", "ini", "cfg", "conf"))


class EmailDetector:
    """Addresses with `@`, `%40`, `[at]`, `(at)` or ` AT `; git remotes and URL users are not."""

    name = "email"
    entities = frozenset({name})

    def find(self, text: str) -> list[Finding]:
        found: list[Finding | None] = []
        if "@" in text:
            at_sign = _AT_SIGN_ESCAPED if "\\u" in text else _AT_SIGN
            found += [_address(text, m.start(), m.end(), m.group("tld"))
                      for m in at_sign.finditer(text)]
        # Starting with the literal "%40", the scan itself is the fastest test for one.
        found += [_address(text, m.start(), m.end(), m.group("tld"))
                  for m in _AT_ENCODED.finditer(text)]
        if _AT_CLOSING.search(text.lower()):
            found += [_obfuscated(text, *at.span()) for at in _AT_BRACKETED.finditer(text)]
        found += [_obfuscated(text, at.start() - 1, at.end())  # from the space before "AT"
                  for at in _AT_WORD.finditer(text)]
        return [f for f in found if f is not None]


def _obfuscated(text: str, at: int, after: int) -> Finding | None:
    """The address around an obfuscated `at` from `at` to `after` (`jane [at] example [dot]
    com`), if any."""
    if not _plausible_obfuscation(text, at):
        return None
    domain = _DOMAIN.match(text, after)
    if domain is None:
        return None
    local_end = at
    while local_end > 0 and text[local_end - 1].isspace():
        local_end -= 1
    return _address(text, local_end, domain.end(), domain.group("tld"))


def _address(text: str, local_end: int, end: int, tld: str) -> Finding | None:
    """The address whose local part ends at `local_end` and domain at `end`, if it is one."""
    if tld.lower() in _FILE_EXTENSIONS or "_" in text[local_end:end]:
        return None
    start = _local_start(text, local_end)
    if start is None or _remote_or_url_user(text, start, end):
        return None
    return Finding("email", start, end)


def _plausible_obfuscation(text: str, at: int) -> bool:
    """An obfuscated `at` needs a word right before it, as in `jane [at] example [dot] com`."""
    return at > 0 and (text[at - 1].isspace() or is_word_char(text[at - 1]))


def _local_start(text: str, end: int) -> int | None:
    """Start of the local part ending at `end`, read backwards; None when there is none."""
    window = text[max(0, end - 64):end][::-1]
    m = _LOCAL_REVERSED.match(window)
    if m is None:
        return None
    local, ends_at_escape = m.group(), False
    if window[m.end():m.end() + 1] == "\\":  # `jos\u00e9@`: read its escapes as letters
        local, ends_at_escape = _escaped_local(text, end)
        if not local:
            return None
    # Read back, the local part ends where the script changes (`邮箱是|zhang@`). Otherwise a dot
    # before it (`.zhang@`) or a word character (a local part longer than any) means none.
    change = None if local.isascii() else _SCRIPT_CHANGE.search(local)
    start = end - (change.start() + 1 if change else len(local))
    before = text[start - 1:start] if start else ""
    if ends_at_escape:
        return start
    if before == "\\" and text[start] in "ntr" and end - start > 1 and _escapes(text, start - 1):
        # `"x\njane@example.com"`: the `n` is the JSON escape of a line break, not a letter
        # of the address (redacting it would leave `\<EMAIL>`, an escape no JSON reader takes).
        return start + 1
    if before == "." or (is_word_char(before) and not _SCRIPT_CHANGE.match(text, start - 1)):
        return None
    return start


def _escapes(text: str, backslash: int) -> bool:
    """Whether the backslash at `backslash` escapes what follows it: an odd number of them
    ends there. After an escaped backslash (a Windows path in JSON, `Users` then `nora@…`)
    the letter is the address's: under a doubt it is redacted with it rather than sent."""
    count = 0
    while backslash - count >= 0 and text[backslash - count] == "\\":
        count += 1
    return count % 2 == 1


def _escaped_local(text: str, end: int) -> tuple[str, bool]:
    """The local part ending at `end`, escapes and all, reversed; and whether it ends (read
    back) at the escape of something no address holds (a quote, an emoji), which bounds it."""
    window = text[max(0, end - 7 * 64):end][::-1]  # 64 characters, each maybe an escape
    m = _LOCAL_ESCAPED_REVERSED.match(window)
    local = m.group().rstrip(".") if m else ""
    for escape in _ESCAPE_REVERSED.finditer(local):
        if not _address_char(chr(int(escape.group(1)[::-1], 16))):
            return local[:escape.start()].rstrip("."), True
    return local, False


def _address_char(ch: str) -> bool:
    """A letter, digit or mark (`é`, `e` + U+0301), or an invisible format character (U+200B)
    that the visible reading would drop: what an escape in an address may stand for."""
    category = unicodedata.category(ch)
    return category[0] in "LMN" or category == "Cf"


def _remote_or_url_user(text: str, start: int, end: int) -> bool:
    """`git@host:org/repo` (scp syntax) and `scheme://user[:pw]@host` name a user, not a mailbox."""
    if text[end:end + 1] == ":" and text[end + 1:end + 2] not in ("", " ", "\n", "\t"):
        return True
    scheme = text.rfind("://", max(0, start - 200), start)
    if scheme == -1:
        return False
    # Still inside the URL's authority (no path, no whitespace since `://`): userinfo.
    return _AUTHORITY_END.search(text, scheme + 3, start) is None


# The longest run of hex digits and colons an address can hold (eight groups of four).
_V6_RUN = 39
# Where an address may be: a `::`, or a colon that starts at least three groups and is one
# of six or more colons (or meets a `::`). Turned away in the scan already, as `_ipv6_span`
# would: a `::` that a word continues (`std::string`), a `::` that starts a run with at most
# one group (`::1`, `arr[::2]`), and colon runs too short for an address (MACs, times). Every
# look-ahead reads at most an address's length: read to the end of the run from each anchor,
# a long run of `ab::ab::…` costs time quadratic in its length, and `_ipv6_span` turns away
# a run longer than an address anyway.
_V6_ANCHOR = re.compile(
    rf":(?::(?![0-9A-Fa-f:]{{0,{_V6_RUN}}}+[G-Zg-z_])"
    rf"(?!(?<![0-9A-Fa-f:]::)[0-9A-Fa-f]{{0,{_V6_RUN}}}+(?![0-9A-Fa-f:]))"
    r"|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:"
    rf"(?=(?:[0-9A-Fa-f]{{0,4}}:){{2}}|:|[0-9A-Fa-f:]{{0,{_V6_RUN}}}?::))")
_HEX_COLON = re.compile(r"[0-9A-Fa-f:]*")
_EMBEDDED_V4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_ZONE = re.compile(r"%[0-9A-Za-z._-]+")


class Ipv6Detector:
    """IPv6 addresses in full, compressed, IPv4-mapped and zoned forms; `::1` and `::` are not."""

    name = "ip_address"
    entities = frozenset({name})

    def find(self, text: str) -> list[Finding]:
        if ":" not in text:  # one character looked for in C: short texts often have none
            return []
        found: list[Finding] = []
        done = 0
        for anchor in _V6_ANCHOR.finditer(text):
            if anchor.start() < done:
                continue
            span = _ipv6_span(text, anchor.start())
            if span is None:
                # Every anchor in one run of hex digits and colons is judged on the same run,
                # so the rest of this one would fail too: skip it, measured once.
                done = _run_end(text, anchor.start())
            else:
                done = span[1]
                found.append(Finding("ip_address", *span))
        return found


def _run_end(text: str, pos: int) -> int:
    """Where the run of hex digits and colons going on at `pos` ends."""
    run = _HEX_COLON.match(text, pos)
    return run.end() if run else pos


def _ipv6_span(text: str, pos: int) -> tuple[int, int] | None:
    back = _HEX_COLON.match(text[max(0, pos - _V6_RUN):pos][::-1])
    start = pos - (back.end() if back else 0)
    if start > 0 and (is_word_char(text[start - 1]) or text[start - 1] in ".:"):
        return None
    # Read one character more than an address can hold: enough to tell a run too long.
    fwd = _HEX_COLON.match(text, pos, start + _V6_RUN + 1)
    end = fwd.end() if fwd else pos
    if end - start > _V6_RUN:
        return None
    if text[end:end + 1] == ".":
        tail = _EMBEDDED_V4.match(text, text.rfind(":", start, end) + 1)
        end = tail.end() if tail else end
    zone = _ZONE.match(text, end)
    body_end, end = end, zone.end() if zone else end
    after = text[end:end + 2]
    if after and (is_word_char(after[0]) or after[0] in ":." and after[1:].isalnum()):
        return None
    body = text[start:body_end]
    colons = body.count(":")
    if not ("::" in body or colons == 7 or (colons == 6 and "." in body)):
        return None
    parts = [p for p in body.split(":") if p]
    if len(parts) < 2 or max(len(p) for p in parts) < 3 or not any(c.isdigit() for c in body):
        return None
    return (start, end) if ipv6_sensitive(body) else None


_V4_TAIL = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d{1,3}")
# On ASCII text the scan also checks the right boundary (`right_ok`) itself.
_V4_TAIL_BYTES = re.compile(rb"\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![A-Za-z0-9_])(?![-./]\d)")
_VERSION_CONTEXT = re.compile(r"\b(?:version|ver|release|build|firmware|sdk|rev|v)[\s:=]*$")


class Ipv4Detector:
    """Dotted quads that name a host; version strings and loopback/mask values are left alone."""

    name = "ip_address"
    entities = frozenset({name})

    def find(self, text: str) -> list[Finding]:
        if "." not in text:  # one character looked for in C: short texts often have none
            return []
        ascii_only = text.isascii()
        tails: Iterable[re.Match[str] | re.Match[bytes]] = (
            _V4_TAIL_BYTES.finditer(text.encode()) if ascii_only else _V4_TAIL.finditer(text))
        found: list[Finding] = []
        for m in tails:
            tail, end = m.span()
            start = tail
            while start > tail - 3 and start > 0 and text[start - 1].isdigit():
                start -= 1
            if start == tail or not (ascii_only or right_ok(text, end)):
                continue
            before = text[start - 1] if start else " "
            url_host = text[start - 2:start] == "//"
            if is_word_char(before) or before in ".-/~^<>" and not url_host \
                    or text[start - 2:start] == "==":
                continue
            if ipv4_sensitive(text[start:end]) and not (
                    _after_word(text, start)
                    and _VERSION_CONTEXT.search(word_before(text, start, 16))):
                found.append(Finding("ip_address", start, end))
        return found


def _after_word(text: str, start: int) -> bool:
    """A letter comes before `start`, past spaces, `:` and `=` (as in `version 1.2.3.4`)."""
    k = start - 1
    while k >= 0 and text[k] in " :=":
        k -= 1
    return k >= 0 and text[k].isalpha()
