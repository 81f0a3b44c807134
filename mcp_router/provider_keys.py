"""Provider keys: read from the environment or a private key file, and scrubbed from any text."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

from mcp_router.config_yaml import PLACEHOLDER, header_problem
from mcp_router.errors import ConfigError

__all__ = ["MIN_SECRET_CHARS", "KeySource", "ScrubFilter", "Scrubber", "config_secrets",
           "install_log_scrubber", "load_key_file", "provider_keys",
           "provider_secrets", "shown_url"]

log = logging.getLogger("mcp_router")

MASK = "***"
MIN_SECRET_CHARS = 6
"""Shorter values are not scrubbed: masking every "abc" would wreck logs and protect nothing."""


class KeySource(Protocol):
    """Where a provider's key comes from (a `ProviderConfig`)."""

    @property
    def api_key_env(self) -> str | None: ...

    @property
    def api_key_file(self) -> str | None: ...


def load_key_file(path: str | os.PathLike[str]) -> str:
    """The key in `path`, whitespace stripped; refused if group or others may read or write it."""
    try:
        return _read_key_file(path)
    except _KeyFileProblem as exc:
        raise ConfigError(str(exc), file=str(path)) from exc.__cause__


class _KeyFileProblem(Exception):
    """Why a key file cannot be used; told where the config names the file."""


def _read_key_file(path: str | os.PathLike[str]) -> str:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _KeyFileProblem(f"cannot read key file: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise _KeyFileProblem("key file is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    # Windows has no group/other bits to check; its ACLs are the user's business.
    if os.name != "nt" and mode & 0o077:
        raise _KeyFileProblem(f"key file is readable or writable by group or others (mode "
                              f"{mode:04o}); run: chmod 600 {path}")
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise _KeyFileProblem(f"cannot read key file: {exc}") from exc
    if not key:
        raise _KeyFileProblem("key file is empty")
    if problem := header_problem(key):
        raise _KeyFileProblem(f"the key in the key file holds {problem}, which an HTTP "
                              "header cannot carry: write the key again by hand")
    return key


def provider_keys(providers: Mapping[str, KeySource], env: Mapping[str, str], *,
                  base: Path) -> dict[str, str]:
    """Each provider's key, from its key file (relative to `base`) or its variable, when set.

    A variable's value is stripped (a pasted key often ends in a newline, which no HTTP
    header can carry). A value in angle brackets is a placeholder left from a host's config
    snippet (`mcp-router config` writes `<your ..._API_KEY>`), and one with a character no
    header can carry (`header_problem`) could never be sent: either way that provider counts
    as unconfigured, and the log says so (naming the variable, never the value), instead of
    every call spending an attempt on a 401 or failing inside httpx.
    A key file that cannot be used is a `ConfigError` naming the config's file, line and
    key (`api_key_file_at`, where the source has it) and the key file's path.
    """
    keys: dict[str, str] = {}
    for name, source in providers.items():
        if source.api_key_file:
            path = base / Path(source.api_key_file).expanduser()
            try:
                keys[name] = _read_key_file(path)
            except _KeyFileProblem as exc:
                file, line = getattr(source, "api_key_file_at", (None, None))
                raise ConfigError(f"{path}: {exc}", file=file, line=line,
                                  key=f"providers.{name}.api_key_file") from exc.__cause__
        elif source.api_key_env and (value := env.get(source.api_key_env, "").strip()):
            if PLACEHOLDER.fullmatch(value):
                log.warning("%s holds a placeholder in angle brackets, not a key: provider %s "
                            "counts as unconfigured until it is set", source.api_key_env, name)
                continue
            if problem := header_problem(value):
                log.warning("%s holds %s, which an HTTP header cannot carry (a pasted "
                            "typographic quote or dash?): provider %s counts as unconfigured "
                            "until it is set again", source.api_key_env, problem, name)
                continue
            keys[name] = value
    return keys


SECRET_NAME = re.compile(r"key|token|auth|secret|passw|cookie|session|sig|credential|code",
                         re.IGNORECASE)
"""A header or query parameter whose name says its value is a credential (x-portkey-api-key,
Authorization, ?key= as Gemini takes it, Azure's ?code= and a SAS ?sig=)."""


class SecretSource(Protocol):
    """Where else a provider's config may carry a credential (a `ProviderConfig`)."""

    @property
    def base_url(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


def provider_secrets(source: SecretSource) -> list[str]:
    """The credentials a provider's config carries besides its key, decoded and as written:

    - the values of headers named like credentials (a gateway's virtual key), and the
      credential after an auth scheme word in them (`Bearer pk-...`, `Basic dXNlcjpw...`
      with the `user:password` and the password it decodes to): an upstream that refuses a
      token names the token alone;
    - the value of every `${VAR}` a header refers to when the header or the variable is
      named like a credential (`header_values`, kept by the config): a template (`Bearer
      ${TOKEN}`, `org ${ORG_TOKEN}`) hides where it sits; `X-Title: ${APP_NAME}` or a
      version is plain text, which masking would cut out of every path and date;
    - its base URL's password, and the `Authorization: Basic` credential httpx makes of the
      URL's `user:password` (an upstream or a proxy echoing its request headers shows it);
    - its base URL's credential-named query values.

    A token in a URL's path cannot be told from a path; keep such tokens in a header."""
    found = [value for header, var, value in getattr(source, "header_values", ())
             if SECRET_NAME.search(header) or SECRET_NAME.search(var)]
    for name, value in source.headers.items():
        if SECRET_NAME.search(name):
            found += [value, *_scheme_credentials(value)]
    url = urlsplit(source.base_url)
    if url.password:
        found += _decoded_and_written(unquote(url.password), url.password)
        user = unquote(url.username or "")
        found.append(_basic(f"{user}:{unquote(url.password)}"))
        if f"{url.username}:{url.password}" != f"{user}:{unquote(url.password)}":
            found.append(_basic(f"{url.username}:{url.password}"))
    for name, written in _query_pairs(url.query):
        if SECRET_NAME.search(unquote_plus(name)):
            found += _decoded_and_written(unquote_plus(written), written)
    return found


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)[ \t]+(\S+)[ \t]*")
"""A credential header's `scheme credential` (`Bearer pk-...`, `Basic dXNl...`, `Token ...`)."""


def _scheme_credentials(value: str) -> list[str]:
    """The credential after an auth scheme word, and for `Basic` the `user:password` it
    decodes to and the password (nothing for a value that is no `scheme credential`)."""
    if not (match := _SCHEME.fullmatch(value)):
        return []
    scheme, credential = match.groups()
    if scheme.lower() != "basic":
        return [credential]
    try:
        decoded = base64.b64decode(credential, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return [credential]
    _, colon, password = decoded.partition(":")
    return [credential, decoded, *([password] if colon else [])]


def _basic(userinfo: str) -> str:
    """`user:password` as HTTP Basic auth sends it (httpx encodes it so from a URL)."""
    return base64.b64encode(userinfo.encode("utf-8")).decode("ascii")


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """A query's names and values exactly as written: not decoded, so escapes keep their case."""
    return [(name, value) for name, _, value in (p.partition("=") for p in query.split("&"))]


def _decoded_and_written(decoded: str, written: str) -> list[str]:
    # As written, `%2f` spells what `quote` would spell `%2F`; counted only when the value
    # itself is long enough to scrub, so a short one is not masked through its escapes.
    return [decoded, written] if len(decoded) >= MIN_SECRET_CHARS else [decoded]


def shown_url(source: SecretSource) -> str:
    """The base URL as it may be shown (list_providers, check-config): credentials masked.

    A credential-named query value is masked by its name, whatever its length or spelling;
    the rest of the URL stays as written, with any other credential scrubbed."""
    head, mark, rest = source.base_url.partition("?")
    query, hash_mark, fragment = rest.partition("#")
    if mark:
        query = "&".join(f"{name}={MASK}" if value and SECRET_NAME.search(unquote_plus(name))
                         else f"{name}{eq}{value}"
                         for name, eq, value in (p.partition("=") for p in query.split("&")))
    shown = f"{head}{mark}{query}{hash_mark}{fragment}"
    return Scrubber(provider_secrets(source)).scrub(shown)


def config_secrets(providers: Mapping[str, SecretSource], keys: Mapping[str, str]) -> list[str]:
    """Every credential the config gives the providers, keys included, for the scrubber."""
    return [*keys.values(), *(s for source in providers.values()
                              for s in provider_secrets(source))]


def _forms(value: str) -> set[str]:
    """The spellings a key takes in URLs, query strings and JSON."""
    return {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}


_ESCAPE = re.compile(r"%([0-9A-Fa-f])([0-9A-Fa-f])")


def _pattern(form: str) -> str:
    """`form` as a regex in which each percent-escape matches in either case: `%2f` and
    `%2F` are one character (RFC 3986), and an upstream may echo either."""
    return _ESCAPE.sub(lambda m: "%" + "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha()
                                               else c for c in m.groups()), re.escape(form))


class Scrubber:
    """Replaces every known secret value, raw or encoded (escapes in either case), with `***`."""

    def __init__(self, values: Iterable[str]) -> None:
        forms = {form for v in values if len(v) >= MIN_SECRET_CHARS for form in _forms(v)}
        # Longest first, so a key that contains another is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(_pattern, ordered))) if ordered else None

    def scrub(self, text: str) -> str:
        """`text` with every secret masked."""
        return self._pattern.sub(MASK, text) if self._pattern else text

    def __bool__(self) -> bool:
        return self._pattern is not None


class ScrubFilter(logging.Filter):
    """A handler filter that masks secrets in a record's message, arguments and traceback."""

    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self._scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = self._scrubber.scrub
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        # Arguments are cleaned one by one, not pre-rendered: some formatters (uvicorn's
        # access log) unpack record.args themselves.
        if isinstance(record.args, Mapping):
            record.args = {k: self._arg(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(self._arg(a) for a in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True

    def _arg(self, value: Any) -> Any:
        if value is None or isinstance(value, int | float):
            return value
        text, shown = str(value), repr(value)
        if self._scrubber.scrub(text) == text and self._scrubber.scrub(shown) == shown:
            return value
        return self._scrubber.scrub(text)


def install_log_scrubber(scrubber: Scrubber,
                         loggers: Iterable[str] = ("", "uvicorn", "uvicorn.error",
                                                   "uvicorn.access", "mcp")) -> ScrubFilter:
    """Add one ScrubFilter to every handler of `loggers` (the root logger is "").

    Filters go on handlers because a logger's own filters skip records propagated from its
    children. Call it again after anything (uvicorn.Config) installs new handlers.
    """
    filt = ScrubFilter(scrubber)
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, ScrubFilter) for f in handler.filters):
                handler.addFilter(filt)
    return filt
