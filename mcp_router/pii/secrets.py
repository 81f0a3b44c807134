"""Credentials: vendor API keys, JWTs, private key blocks and passwords in URLs."""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable

from mcp_router.pii.detectors import Finding, skeleton

# (prefixes, pattern): a vendor's documented token shape and the literal prefixes it starts
# with, which decide which patterns to try at a candidate token; the comment names the vendor.
_VENDOR_TOKENS: tuple[tuple[tuple[str, ...], str], ...] = (
    # OpenAI (incl. proj/svcacct/admin), Anthropic, OpenRouter, DeepSeek and other sk- keys
    (("sk-",), r"sk-(?:ant-(?:api|admin)\d\d-|proj-|svcacct-|admin-|or-v1-)?[A-Za-z0-9_-]{20,}"),
    # Stripe secret and restricted keys, webhook secrets
    (("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"),
     r"(?:[sr]k_(?:live|test)|whsec)_[A-Za-z0-9]{16,}"),
    (("AKIA", "ASIA", "ABIA", "ACCA"), r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"),  # AWS key id
    (("AIza",), r"AIza[0-9A-Za-z_-]{35}"),  # Google API key
    (("ya29.",), r"ya29\.[0-9A-Za-z_-]{20,}"),  # Google OAuth access token
    (("GOCSPX-",), r"GOCSPX-[A-Za-z0-9_-]{20,}"),  # Google OAuth client secret
    (("AccountKey=", "SharedAccessKey="),  # Azure storage / service bus keys
     r"(?:AccountKey|SharedAccessKey)=[A-Za-z0-9+/]{40,}={0,2}"),
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), r"gh[pousr]_[A-Za-z0-9]{36,251}"),  # GitHub
    (("github_pat_",), r"github_pat_[A-Za-z0-9_]{22,}"),  # GitHub fine-grained token
    (("glpat-", "gldt-", "glptt-", "glrt-"), r"gl(?:pat|dt|ptt|rt)-[A-Za-z0-9_-]{20,}"),  # GitLab
    (("ATBB", "ATATT"), r"AT(?:BB|ATT)[A-Za-z0-9_=.-]{28,}"),  # Bitbucket / Atlassian
    (("xox",), r"xox[abposr]-[A-Za-z0-9-]{10,}"),  # Slack tokens
    (("hooks.slack.com/",), r"hooks\.slack\.com/services/[A-Za-z0-9/]{20,}"),  # Slack webhook
    (("hf_",), r"hf_[A-Za-z0-9]{30,}"),  # Hugging Face
    (("gsk_",), r"gsk_[A-Za-z0-9]{40,}"),  # Groq
    (("xai-",), r"xai-[A-Za-z0-9]{40,}"),  # xAI
    (("pplx-",), r"pplx-[A-Za-z0-9]{40,}"),  # Perplexity
    (("r8_",), r"r8_[A-Za-z0-9]{30,}"),  # Replicate
    (("tgp_v1_",), r"tgp_v1_[A-Za-z0-9_-]{30,}"),  # Together
    (("npm_",), r"npm_[A-Za-z0-9]{36}"),  # npm
    (("pypi-",), r"pypi-AgE[A-Za-z0-9_-]{50,}"),  # PyPI
    (("SG.",), r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),  # SendGrid
    (("dop_v1_", "doo_v1_", "dor_v1_"), r"do[opr]_v1_[a-f0-9]{64}"),  # DigitalOcean
    (("shpat_", "shpss_", "shpca_", "shppa_"), r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"),  # Shopify
    (("lin_api_",), r"lin_api_[A-Za-z0-9]{32,}"),  # Linear
    (("eyJ",), r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"),  # JWT
)
# Every vendor token contains a run of at least this many [A-Za-z0-9_-] characters. Mapping
# those characters to "a" turns the search for candidate tokens into a search for "aaa…",
# which is far faster than running a few dozen prefix patterns over the text.
_MIN_RUN = 14
# Every other ASCII character becomes a space, except the dot that joins a JWT's parts.
_RUN_CHARS = str.maketrans({**dict.fromkeys(map(chr, range(128)), " "), ".": ".",
                            **dict.fromkeys(string.ascii_letters + string.digits + "_-", "a")})
_RUN_BYTES = bytes(ord(_RUN_CHARS.get(b, chr(b))) for b in range(256))
# Spelled out rather than `a{14,}`: `re` jumps to a pattern's leading literal text, but tries
# a repeat at every position.
_RUN = re.compile("a" * _MIN_RUN + "a*")
_BY_PREFIX: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (needle, re.compile(pattern)) for needles, pattern in _VENDOR_TOKENS for needle in needles
    if "=" not in needle and "/" not in needle)
_PREFIXES = tuple(prefix for prefix, _ in _BY_PREFIX)
# Their first two characters: a set lookup turns away most runs before `startswith` tries all.
_PREFIX_HEADS = frozenset(prefix[:2] for prefix in _PREFIXES)


def _shared_end(needles: tuple[str, ...]) -> str:
    """The longest text every needle ends with (`Key=` for `AccountKey=`, `SharedAccessKey=`)."""
    return os.path.commonprefix([n[::-1] for n in needles])[::-1]


# Tokens that sit after `=` or inside a URL path, searched for when the end their prefixes
# share occurs: one `in` per pattern, not one per prefix.
_ANCHORED = tuple((_shared_end(needles), re.compile(p)) for needles, p in _VENDOR_TOKENS
                  if any("=" in n or "/" in n for n in needles))
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9]")


class VendorKeyDetector:
    """API keys and tokens of LLM, cloud and code-hosting vendors, and JWTs."""

    name = "secret"
    entities = frozenset({name})

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for hint, regex in _ANCHORED:
            if hint in text:
                found += _tokens(text, regex.finditer(text))
        runs = skeleton(text, _RUN_CHARS, _RUN_BYTES)
        for m in _RUN.finditer(runs):
            run = m.start()
            if text[run:run + 2] in _PREFIX_HEADS and text.startswith(_PREFIXES, run):
                found += _tokens_at(text, run)
            elif runs[run - 1:run] == ".":
                start = _dotted_start(text, runs, run)
                if start is not None:
                    found += _tokens_at(text, start)
        return found


def _dotted_start(text: str, runs: str, run: int) -> int | None:
    """A vendor token that reaches the run at `run` through dots (a JWT's header, `ya29.`,
    `SG.`): where it starts, walking back to the first character outside the token."""
    i = run
    while i > 0 and run - i < 200 and runs[i - 1] in "a.":
        i -= 1
        if (i == 0 or runs[i - 1] not in "a.") and text.startswith(_PREFIXES, i):
            return i
        if runs[i - 1:i] == "." and text.startswith(_PREFIXES, i):
            return i
    return None


def _tokens_at(text: str, start: int) -> list[Finding]:
    matches = (regex.match(text, start) for prefix, regex in _BY_PREFIX
               if text.startswith(prefix, start))
    return _tokens(text, (m for m in matches if m is not None))


def _tokens(text: str, matches: Iterable[re.Match[str]]) -> list[Finding]:
    found: list[Finding] = []
    for m in matches:
        start, end = m.span()
        if start > 0 and _TOKEN_CHAR.match(text[start - 1]):
            continue
        token = m.group()
        if token.startswith("sk-") and not any(c.isdigit() for c in token):
            continue  # hyphenated words such as sk-learn-compatible-wrapper-module
        found.append(Finding("secret", start, end))
    return found


_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = re.compile(r"(?:\s|\\r|\\n)*-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
# A line break inside a block: real, JSON-escaped, and with blank or indented lines around it.
_BREAK = r"(?:[ \t]*(?:\r?\n|\\r\\n|\\n))+[ \t]*"
# A base64 character; some JSON encoders write "/" as "\/".
_B64 = r"(?:[A-Za-z0-9+/]|\\/)"
# What a block's body is made of, piece by piece: a header line of encrypted PEM or PGP armor
# (`Proc-Type: 4,ENCRYPTED`); a line of base64 that ends where its line does (the short last
# one, a PGP checksum, a `...` where the writer cut lines out); or a long run of base64 that
# may end anywhere, as a pasted key cut off mid-line does, after a break or a space (a key
# pasted with spaces for line breaks). Words never end a line of a block, so prose after a
# header is not taken for its body.
_KEY_PIECE = re.compile(
    rf"{_BREAK}(?P<header>(?:Proc-Type|DEK-Info|Version|Comment|Hash|Charset|MessageID): "
    r"[^\r\n\\]*)"
    rf"|{_BREAK}(?:{_B64}|[=.\u2026])+(?=[ \t]*(?:\r?\n|\\r\\n|\\n|-----END|\Z))"
    rf"|(?:[ \t]+|{_BREAK})(?P<run>{_B64}{{16,}}={{0,2}})(?:\.\.\.|\u2026)?"
    rf"|[ \t]+{_B64}+={{0,2}}(?=[ \t]*-----END)")
# The user may be empty, as in redis://:password@cache:6379.
_URL_USERINFO = re.compile(r"://([^\s:/?#@\[\]\"'<>]*):([^\s/?#@\"'<>]+)@")
# A value that stands for a secret rather than being one: `${VAR}`, `{{ … }}`, `<…>`, `***`.
TEMPLATE = re.compile(r"^(?:\$\{?\w+\}?|\{\{.*\}\}|<[^>]*>|%s|\*+|x+|\.\.\.)$", re.IGNORECASE)


class PrivateKeyDetector:
    """PEM, OpenSSH and PGP private key blocks, also cut short, JSON-escaped, encrypted with
    header lines, or pasted with spaces for line breaks.

    A block is its BEGIN line and the key material after it, up to an END line if one
    follows: a header mentioned in prose ("the file starts with -----BEGIN PRIVATE KEY-----
    but…") is redacted alone, and the question about it still reaches the model.
    """

    name = "secret"
    entities = frozenset({name})

    def find(self, text: str) -> list[Finding]:
        if "PRIVATE KEY" not in text:
            return []
        found: list[Finding] = []
        for begin in _KEY_BEGIN.finditer(text):
            if found and begin.start() < found[-1].end:
                continue  # a BEGIN line inside the block before it
            found.append(Finding("secret", begin.start(), _block_end(text, begin.end())))
        return found


def _block_end(text: str, pos: int) -> int:
    """Where the key material that starts at `pos`, after a BEGIN line, ends."""
    while (piece := _KEY_PIECE.match(text, pos)) is not None and piece.end() > pos:
        run = piece.group("run")
        if run is not None and _a_word(run):
            break
        pos = piece.end()
    end = _KEY_END.match(text, pos)
    return pos if end is None else end.end()


def _a_word(run: str) -> bool:
    """A long run that reads as a word (`Internationalization`) or a path of words
    (`/etc/ssl/private/server`), not as base64."""
    parts = [part for part in run.split("/") if part]
    return bool(parts) and all(part.isalpha() and (part.islower() or part.isupper()
                                                    or part.istitle()) for part in parts)


class UrlCredentialDetector:
    """`user:password@` inside URLs; template references like `${DB_PASSWORD}` are not secrets."""

    name = "secret"
    entities = frozenset({name})

    def find(self, text: str) -> list[Finding]:
        if "://" not in text:
            return []
        return [Finding("secret", m.start(1), m.end(2)) for m in _URL_USERINFO.finditer(text)
                if not TEMPLATE.match(m.group(2))]
