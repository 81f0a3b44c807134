"""Literal credentials given to password/secret/token/api-key names, and HTTP credentials
(Bearer and Basic headers, `curl -u user:password`)."""

from __future__ import annotations

import base64
import binascii
import re

from mcp_router.pii.detectors import Finding, lowered, rare_letter_patterns
from mcp_router.pii.secrets import TEMPLATE

# Keyword → what may follow it to end the key's name: `password`, `db_pass`, `client_secret`,
# `secret_key`, `GITHUB_TOKEN`, `api_key`, but not `secretName` or `password_reset_url`.
_KEY_TAILS = {"pass": r"(?:word|wd|phrase)?", "pwd": "", "secret": r"(?:[_-]?key)?",
              "token": "", "key": ""}
# `key` alone is too common: the name must end in one of these.
_KEY_NAMES = ("api_key", "api-key", "apikey", "access_key", "accesskey", "secret_key",
              "secretkey", "auth_key", "private_key")
# After the name: an assignment (`=`, `:`, `=>`, `:=`), then the value, quoted or bare. A
# bare value is read up to a space, a quote, `,` or `;`, then cut where the code or URL
# around the name says it ends (see `_bare_value_end`). Quotes may be escaped, once (`\"`) or
# twice (`\\\"`): tool-call arguments arrive as JSON inside a JSON string, which a log may quote.
_MIN_VALUE = 8
_ASSIGNED_VALUE = (r"(?:\\{0,3}[\"'])?\s*(?P<op>:=|=>|[:=])\s*(?P<q>(?:\\{0,3}[\"'`])?)"
                   rf"(?P<v>[^\s\"'`,;]{{{_MIN_VALUE},200}})(?P=q)")
_KEY_NAMED = "(?:" + "|".join(f"(?<={name})" for name in _KEY_NAMES) + ")"
# Searched for in the lower-cased text, a few keywords per scan, and every occurrence without
# an assignment is turned away inside `re`. The value sits in a lookahead, so it is searched
# for keywords too (`password=token=…`).
_ASSIGNMENTS = rare_letter_patterns({**_KEY_TAILS, "key": _KEY_NAMED}, f"(?={_ASSIGNED_VALUE})")
# RFC 6750 credentials after the Bearer scheme (token68 characters), ending where a quote,
# an escaped one (`\"`) or a bracket does; the look back keeps the pattern's leading literal,
# which `re` finds far faster than a class.
_BEARER = re.compile(r"earer(?<=[Bb]earer) +(?P<v>[A-Za-z0-9\-._~+/]{16,}=*)(?![^\s\"'`,;)\]}\\])")
# RFC 7617 credentials after the Basic scheme: base64 of `user:password`, taken only when it
# decodes so (see `_basic_credentials`), which leaves "basic" in prose alone.
_BASIC = re.compile(r"asic(?<=[Bb]asic) +(?P<v>[A-Za-z0-9+/]{4,}={0,2})(?![^\s\"'`,;)\]}\\])")
# `-u user:password` or `--user user:password` on a command line (curl, wget), the pair bare
# or quoted; the password is the secret. The dashes before it are checked in `_user_options`.
# Both parts are bounded, so a text of `-u=a:-u=a:…` costs no more than its size.
_USER_OPTION = re.compile(r"-u(?P<long>ser)?(?:[ \t]+|=)(?:(?P<q>\\?[\"'])[^\s:\"'\\]{0,64}:"
                          r"(?P<qv>[^\"'\r\n\\]{1,200})(?P=q)|[^\s:\"'\\]{0,64}:"
                          r"(?P<v>[^\s\"'\\]{1,200}))")
# A Unix user or group name: `docker run -u app:appgroup` names a group, not a password.
_UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]*")
_OPTION_BEFORE = ("", " ", "\t", "\n", "\"", "'")
_WORDS = re.compile(r"(?:[A-Z]?[a-z]+)+")
_PLACEHOLDER_WORDS = re.compile(r"your|here|example|xxxx|changeme|placeholder|redacted|dummy",
                                re.IGNORECASE)
# Values that name or fetch a secret rather than being one: variables, templates, calls,
# dotted or plain identifiers, URLs, paths, numbers, nested assignments (`token=…`, but not
# the `=` padding that ends base64).
_REFERENCE = re.compile(r"^\$|\$[({]|[({<\[]|^%\w+%$|://|^\.{0,2}/|^[A-Za-z]*_[A-Za-z_]*$|"
                        r"^[A-Za-z_]\w*(?:\.\w+)+$|^\d+$|^[A-Za-z_]\w*=(?!=|$)")


# A type name in a parameter list (`token: OAuth2Token`): capitalised, and every digit is
# followed by another capitalised word; a password ends in digits or has a lower-case letter
# after one (`Hunter2024`, `Tr0ub4dor`).
_TYPE_NAME = re.compile(r"[A-Z](?:[A-Za-z]|\d+[A-Z])*[a-z]")
# Closing bracket → its opening one, for a value inside a call or a parameter list.
_BRACKETS = {")": "(", "]": "[", "}": "{"}
# How far back on its line a name's brackets are looked for.
_LINE_BACK = 200

# A resource's name rather than its value: lower-case words joined by hyphens and a short
# version or index (`secret: my-app-secret-v2` names a Kubernetes Secret). A person may pick
# a password like that (`summer-time-42`), so a password's name still takes it as one.
_NAME_LIKE = re.compile(r"[a-z]{2,}(?:-[a-z]{2,})+-v?\d{1,3}$")
_PASSWORD_NAME = re.compile(r"pass|pwd")


class AssignmentDetector:
    """Literal values given to password/secret/token/api-key names and Bearer headers."""

    name = "secret"
    entities = frozenset({name})

    def find(self, text: str) -> list[Finding]:
        found = _authorization_schemes(text)
        if "=" not in text and ":" not in text:  # no assignment without one of them
            return found
        found += _user_options(text)
        lower = lowered(text)
        for assignment in _ASSIGNMENTS:
            for m in assignment.finditer(lower):
                name, op = _name_start(lower, m.start()), m.group("op")
                start, end = m.span("v")
                if not m.group("q"):
                    end = _bare_value_end(text, name, op, start, end)
                value = text[start:end]
                if len(value) < _MIN_VALUE or not _literal_secret(value):
                    continue
                if _NAME_LIKE.match(value) and not _PASSWORD_NAME.search(lower, name, m.end()):
                    continue  # names a resource, and the key is not a password's
                if op == ":" and _TYPE_NAME.fullmatch(value) and _in_parameter_list(text, name) \
                        and not _typed_password(lower, name, m.end(), value):
                    continue  # annotates a parameter with its type
                found.append(Finding("secret", start, end))
        return found


def _authorization_schemes(text: str) -> list[Finding]:
    """The credentials of Bearer and Basic authorization headers."""
    found = [Finding("secret", m.start("v"), m.end("v")) for m in _BEARER.finditer(text)
             if _literal_secret(m.group("v"))]
    found += [Finding("secret", m.start("v"), m.end("v")) for m in _BASIC.finditer(text)
              if _basic_credentials(m.group("v"))]
    return found


def _basic_credentials(token: str) -> bool:
    """`token` is base64 of printable `user:password` text, one of them perhaps empty (an API
    key given as the user, as Stripe's is). Eight characters at least: a word after "basic"
    in prose seldom decodes to such text, and a shorter token seldom is a credential."""
    if len(token) < 8:
        return False
    if "=" not in token:
        token += "=" * (-len(token) % 4)  # padding left out
    try:
        decoded = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return ":" in decoded and decoded != ":" and decoded.isprintable()


def _user_options(text: str) -> list[Finding]:
    """The passwords of `-u user:password` / `--user user:password` options. A password is
    one `_literal_secret` takes, or one of 8 characters or more that is not a reference or a
    Unix name (`-u $USER:$PASS`, `-u 1000:1000` and `-u www-data:www-data` are left alone)."""
    found: list[Finding] = []
    for m in _USER_OPTION.finditer(text):
        dash = m.start() - 1 if m.group("long") else m.start()
        if (m.group("long") and text[dash:dash + 1] != "-") or dash < 0 \
                or text[dash - 1:dash] not in _OPTION_BEFORE:
            continue  # part of a word or of another option (`pre-user:`, `-user`)
        group = "qv" if m.group("q") else "v"
        password = m.group(group)
        if _literal_secret(password) or len(password) >= _MIN_VALUE and not (
                _REFERENCE.search(password) or TEMPLATE.match(password)
                or _PLACEHOLDER_WORDS.search(password) or _UNIX_NAME.fullmatch(password)):
            found.append(Finding("secret", m.start(group), m.end(group)))
    return found


def _typed_password(lower: str, name: int, end: int, value: str) -> bool:
    """A password's value that reads like a type name with a digit (`account(password:
    Welcome2Home)`): people pick passwords so, and a password is rarely typed with one."""
    return any(c.isdigit() for c in value) and _PASSWORD_NAME.search(lower, name, end) is not None


def _name_start(lower: str, at: int) -> int:
    """Where the name that the keyword found at `at` is part of begins (`db_password`)."""
    start = at
    while start > 0 and (lower[start - 1].isalnum() or lower[start - 1] in "_-"):
        start -= 1
    return start


def _bare_value_end(text: str, name: int, op: str, start: int, end: int) -> int:
    """Where an unquoted value given to the name at `name` ends, the characters it is read
    up to being `start:end`.

    It ends before the `&` of the next parameter of a URL's query or fragment
    (`?token=…&page=2`, `#access_token=…&state=…`), before the `@host` of a URL's user part
    (`https://x-access-token:ghs_…@github.com`), before a bracket that closes one opened
    before the name on its line (`Client(api_key=…)`), and before the backslashes that
    escape the quote after it in JSON inside JSON (`\\"mysql --password=…\\"`).
    Otherwise these characters are part of it (`password: Tr0ub4dor&3`).
    """
    if text[end:end + 1] in ("\"", "'"):
        while end > start and text[end - 1] == "\\":
            end -= 1  # the backslashes escape the quote that ends the value
    value = text[start:end]
    cut = len(value)
    before = text[name - 1:name]
    if op == "=" and (before in ("?", "&") or before == "#" and _in_url(text, name)):
        cut = min((i for i in (value.find("&"), value.find("#")) if i >= 0), default=cut)
    elif text[name - 3:name] == "://" and op == ":" and "@" in value:
        cut = value.find("@")
    open_ = _open_brackets(text, name)
    for i, ch in enumerate(value[:cut]):
        if ch in _BRACKETS and _BRACKETS[ch] in open_:
            return start + i
    return start + cut


def _in_url(text: str, pos: int) -> bool:
    """`pos` is inside a URL: `://` comes before it in the same word."""
    word = max(text.rfind(" ", 0, pos), text.rfind("\n", 0, pos), pos - _LINE_BACK)
    return text.find("://", word + 1, pos) != -1


def _open_brackets(text: str, pos: int) -> str:
    """The brackets opened and not closed on `pos`'s line before it, innermost last."""
    line = text[max(text.rfind("\n", 0, pos) + 1, pos - _LINE_BACK):pos]
    if not any(ch in line for ch in "([{"):
        return ""
    stack: list[str] = []
    for ch in line:
        if ch in "([{":
            stack.append(ch)
        elif ch in _BRACKETS and stack and stack[-1] == _BRACKETS[ch]:
            stack.pop()
    return "".join(stack)


def _in_parameter_list(text: str, name: int) -> bool:
    """The name is a parameter of a call or a definition (`def refresh(token: …`): the
    innermost open bracket before it is a `(` that follows a function's name."""
    line_start = max(text.rfind("\n", 0, name) + 1, name - _LINE_BACK)
    depth = 0
    for i in range(name - 1, line_start - 1, -1):
        ch = text[i]
        if ch in _BRACKETS:
            depth += 1
        elif ch in "([{":
            if depth == 0:
                return ch == "(" and i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
            depth -= 1
    return False


def _literal_secret(value: str) -> bool:
    """A credential itself: not a reference, template or placeholder, and password-like.

    Password-like means letters with digits, three of lower case, upper case, digits and
    symbols, or random mixed-case letters; that leaves out words, names and slugs such as
    `tls-cert-prod`, `inputPassword` or `sk-your-key-here`.
    """
    if _REFERENCE.search(value) or TEMPLATE.match(value) or _PLACEHOLDER_WORDS.search(value):
        return False
    if value.isalpha():  # random mixed case (iKavOOCrlV), not a word or CamelCase name
        return len(value) >= 10 and not _WORDS.fullmatch(value) and not value.islower() \
            and not value.isupper()
    lower, upper = any(c.islower() for c in value), any(c.isupper() for c in value)
    digit, symbol = any(c.isdigit() for c in value), not value.isalnum()
    return (digit and (lower or upper)) or lower + upper + digit + symbol >= 3
