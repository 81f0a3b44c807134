"""Config YAML with the line of every key, and `${VAR}` in provider URLs and headers.

Kept apart from the models so `mcp_router.config` reads as the policy's shape: this is how
its errors come to name the line.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from difflib import get_close_matches
from typing import Any
from urllib.parse import urlsplit

import yaml

from mcp_router.errors import ConfigError

__all__ = ["ENV_NAME", "ENV_REF", "MAX_DEPTH", "PLACEHOLDER", "Lines", "describe", "header_problem",
           "expand_env", "header_values", "nearest_line", "read_yaml", "url_problem"]

Lines = dict[tuple[str | int, ...], int]
"""The line of each key path in the file: `("providers", "openai", "base_url") -> 12`."""

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""An environment variable's name, as `${NAME}` and `api_key_env` take it."""
ENV_REF = re.compile(rf"\$\{{({ENV_NAME.pattern})\}}")
PLACEHOLDER = re.compile(r"<[^<>]*>")
"""What a variable holds when a host snippet's `<your VAR>` was left in place: refused in a
`${VAR}` of base_url or headers here, and a key variable holding one is no key
(`provider_keys`)."""

MAX_DEPTH = 32
"""How deep lists and mappings may nest. The policy needs seven levels; PyYAML composes
recursively, so a file nested thousands deep would otherwise end in a RecursionError."""

_STD = "tag:yaml.org,2002:"
_PLAIN = {f"{_STD}{name}" for name in ("str", "int", "float", "bool", "null")}
_TIMESTAMP = f"{_STD}timestamp"
_COLLECTION_TAG: dict[type, str] = {yaml.MappingNode: f"{_STD}map", yaml.SequenceNode: f"{_STD}seq"}


def read_yaml(text: str, file: str) -> tuple[dict[str, Any], Lines]:
    """The top-level mapping of `text` as plain data, and the line of every key path."""
    builder = _Builder()
    try:
        node = _compose(text)
        if node is None:
            raise ConfigError("the file is empty", file=file)
        data = builder.build(node, ())
    except _NodeError as exc:
        raise ConfigError(exc.message, file=file, line=exc.line,
                          key=".".join(map(str, exc.path)) or None) from None
    except yaml.reader.ReaderError as exc:
        line, column = _line_and_column(text, exc.position)
        raise ConfigError(f"not valid YAML: {exc.reason}: U+{exc.character:04X} at column "
                          f"{column}", file=file, line=line) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(_syntax_error(exc), file=file,
                          line=mark.line + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=file) from exc
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", file=file, line=1)
    return data, builder.lines


def _syntax_error(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem with its column, and the construct it was reading (with where that
    began, often the line the mistake is on: an unclosed `{` a line above)."""
    message = f"not valid YAML: {exc.problem or exc.context}"
    if exc.problem_mark:
        message += f" at column {exc.problem_mark.column + 1}"
    if exc.problem and exc.context:
        mark = exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        message += f" ({exc.context}{where})"
    return message


def _line_and_column(text: str, position: int) -> tuple[int, int]:
    return text.count("\n", 0, position) + 1, position - text.rfind("\n", 0, position)


class _NodeError(Exception):
    """Something in the file that no config can hold, at `path` (where known) and `line`."""

    def __init__(self, message: str, path: tuple[str | int, ...], line: int) -> None:
        super().__init__(message, path, line)
        self.message, self.path, self.line = message, path, line


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing lists and mappings nested deeper than `MAX_DEPTH`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self._depth >= MAX_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise _NodeError(f"lists and mappings nest more than {MAX_DEPTH} levels deep here",
                             (), line)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _compose(text: str) -> yaml.Node | None:
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class _Builder:
    """Plain data from composed YAML nodes, recording the line of every key path.

    Each list and mapping is built once: an alias to it reuses what was built (a few lines of
    nested aliases would otherwise expand to billions of values), and paths under an alias
    are not recorded again (an error there names the alias's own line).
    """

    def __init__(self) -> None:
        self.lines: Lines = {}
        self._built: dict[int, Any] = {}
        self._open: set[int] = set()
        self._constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: tuple[str | int, ...]) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._built:
            return self._built[id(node)]
        if id(node) in self._open:
            raise _NodeError(f"an alias to the list or mapping that holds it (anchored at line "
                             f"{node.start_mark.line + 1}) would never end", path,
                             self.lines[path])
        if node.tag != _COLLECTION_TAG.get(type(node)):
            raise _unsupported_tag(node, path)
        self._open.add(id(node))
        if isinstance(node, yaml.MappingNode):
            value: Any = self._mapping(node, path)
        else:
            value = [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        self._open.discard(id(node))
        self._built[id(node)] = value
        return value

    def _mapping(self, node: yaml.MappingNode, path: tuple[str | int, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = _key(key_node, path)
            if key in first:  # a later block would silently replace the earlier one
                raise _NodeError(f"duplicate key {key!r} (first at line {first[key]})",
                                 (*path, key), line)
            first[key] = line
            self.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key))
        return out

    def _scalar(self, node: yaml.ScalarNode, path: tuple[str | int, ...]) -> Any:
        if node.tag == _TIMESTAMP:  # no setting is a date: keep what was written (2023-06-01)
            return node.value
        if node.tag not in _PLAIN:
            raise _unsupported_tag(node, path)
        try:
            return self._constructor.construct_object(node)
        except (ValueError, LookupError, ArithmeticError) as exc:  # `!!int abc`, `!!int ""`
            raise _NodeError(f"not a valid {_shown_tag(node.tag)}", path,
                             node.start_mark.line + 1) from exc


def _key(node: yaml.Node, path: tuple[str | int, ...]) -> str:
    """A mapping key as the text written: `yes:` and `on:` stay names, not booleans."""
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.ScalarNode):
        raise _NodeError("a key must be a plain name, not a list or a mapping", path, line)
    if node.tag == f"{_STD}merge":
        raise _NodeError("merge keys (<<) are not supported: write the keys out, or alias the "
                         "whole mapping", path, line)
    if node.tag not in _PLAIN and node.tag != _TIMESTAMP:
        raise _unsupported_tag(node, path)
    return str(node.value)


def _unsupported_tag(node: yaml.Node, path: tuple[str | int, ...]) -> _NodeError:
    return _NodeError(f"the tag {_shown_tag(node.tag)} is not supported: a config is plain "
                      "YAML (${NAME} in base_url and headers reads a variable)", path,
                      node.start_mark.line + 1)


def _shown_tag(tag: str) -> str:
    return f"!!{tag.removeprefix(_STD)}" if tag.startswith(_STD) else tag


def describe(err: Any, keys: Collection[str] = (), missing: Collection[str] = ()) -> str:
    """A pydantic validation error in the words a config author reads; `keys` are those the
    mapping holding an unknown key may have, to name the one meant, and `missing` the
    required ones it lacks (an unknown key beside a missing one is most likely its typo)."""
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        close = (get_close_matches(name, missing, n=1, cutoff=0.4)
                 or get_close_matches(name, keys, n=1))
        if close:
            required = f" ({close[0]} is required)" if close[0] in missing else ""
            return f"unknown key; did you mean {close[0]}?{required}"
        lacking = f" ({', '.join(missing)} is missing)" if missing else ""
        return (f"unknown key{lacking}; keys here are {', '.join(keys)}" if keys
                else f"unknown key{lacking}")
    if kind == "missing":
        return "required key is missing"
    if kind == "dict_type":
        return f"must be a mapping (name: value), not {_what(err['input'])}"
    if kind in ("model_type", "model_attributes_type"):
        settings = f" ({', '.join(keys)})" if keys else ""
        return f"must be a mapping of settings{settings}, not {_what(err['input'])}"
    if kind == "list_type":
        return f"must be a list, not {_what(err['input'])}"
    if kind == "string_type" and isinstance(err["input"], bool | int | float):
        # `provider: yes` or `model: 3.5`: YAML read the text as a boolean or a number.
        return (f"must be a string, not {_what(err['input'])}: put it in quotes (YAML reads "
                "yes, no, on, off and numbers unquoted as values of their own)")
    return str(err["msg"]).removeprefix("Value error, ")


def _what(value: Any) -> str:
    """How a YAML value reads: what was written where something else belongs."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else "a string"


def nearest_line(loc: tuple[Any, ...], lines: Lines) -> int | None:
    """The line of `loc`, or of its closest parent that has one (a missing key's mapping)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def expand_env(data: dict[str, Any], env: Any, file: str, lines: Lines) -> dict[str, Any]:
    """Replace ${VAR} in providers' base_url and headers, and nowhere else. `data` is left as
    it is: a mapping two aliases share is expanded for each, never twice. A variable unset, or
    holding a `PLACEHOLDER`, is a `ConfigError` naming it and the key that refers to it."""
    providers = data.get("providers")
    if not isinstance(providers, dict):
        return data  # validation says what it must be
    expanded = {}
    for name, provider in providers.items():
        if isinstance(provider, dict):
            provider = _expand_provider(provider, env, file, lines, ("providers", name))
        expanded[name] = provider
    return {**data, "providers": expanded}


def _expand_provider(provider: dict[str, Any], env: Any, file: str, lines: Lines,
                     path: tuple[str | int, ...]) -> dict[str, Any]:
    out = dict(provider)
    key_var = provider.get("api_key_env")
    if isinstance(url := provider.get("base_url"), str):
        out["base_url"] = _substitute(url, env, file, lines, (*path, "base_url"), key_var)
    if isinstance(headers := provider.get("headers"), dict):
        out["headers"] = {k: _substitute(v, env, file, lines, (*path, "headers", k), key_var,
                                         header=True)
                          if isinstance(v, str) else v for k, v in headers.items()}
    return out


def header_values(provider: Any, env: Any) -> tuple[tuple[str, str, str], ...]:
    """`(header, variable, value)` for each `${VAR}` a provider's headers (as written) refer
    to, once `expand_env` has accepted them: `provider_secrets` scrubs the values of those
    whose header or variable is named like a credential, wherever they sit in a template
    (`Bearer ${TOKEN}`)."""
    headers = provider.get("headers") if isinstance(provider, dict) else None
    if not isinstance(headers, dict):
        return ()
    return tuple(dict.fromkeys((str(name), var, str(env[var]))
                               for name, value in headers.items() if isinstance(value, str)
                               for var in ENV_REF.findall(value) if var in env))


def _substitute(value: str, env: Any, file: str, lines: Lines,
                path: tuple[str | int, ...], key_var: Any, *, header: bool = False) -> str:
    """`value` with its ${VAR}s expanded. A variable holding a placeholder counts as unset
    (sent as written, a gateway would answer with a 401 the user cannot trace to it), and so
    does, in a `header`, one holding a character no HTTP header can carry (every call would
    fail inside httpx); except the provider's own key variable: `provider_keys` then counts
    the provider unconfigured, so nothing is sent, as for a key variable used nowhere else.
    Errors name the variable, never its value."""
    def fail(message: str) -> ConfigError:
        return ConfigError(message, file=file, line=nearest_line(path, lines),
                           key=".".join(map(str, path)))

    def one(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in env:
            raise fail(f"environment variable {var} is not set")
        got = str(env[var])
        if var == key_var:
            return got
        if PLACEHOLDER.fullmatch(got.strip()):
            raise fail(f"environment variable {var} holds a placeholder in angle brackets, not "
                       "a value: put the value in its place (in the host config's env block, "
                       "if `mcp-router config` printed it)")
        if header and (problem := header_problem(got)):
            raise fail(f"environment variable {var} holds {problem}, which an HTTP header "
                       "cannot carry (a pasted typographic quote or dash?): set it again")
        return got

    if "${" in ENV_REF.sub("", value):  # `${A:-x}` or `${A` would be sent as written
        raise fail("only ${NAME} is expanded (no defaults or other shell forms)")
    if header and (problem := header_problem(value)):
        raise fail(f"holds {problem}, which an HTTP header cannot carry: write it in plain "
                   "ASCII")
    return ENV_REF.sub(one, value)


def header_problem(value: str) -> str | None:
    """Which character of `value` an HTTP header cannot carry (httpx sends ASCII only; a line
    break would end the header), said without the value; None when it can be sent.

    A key pasted from a web page or a chat often carries a typographic quote or dash: sent,
    it fails every call inside httpx, before any upstream could say the key is wrong.
    """
    for i, c in enumerate(value, 1):
        if c in "\r\n":
            return f"a line break at character {i}"
        if not c.isascii() or (not c.isprintable() and c != "\t"):
            return f"U+{ord(c):04X} at character {i}"
    return None


def url_problem(url: str, written: str, env: Mapping[str, str]) -> str | None:
    """Why `url` cannot be a provider's base URL, or None; `written` is the URL as the file
    has it, before its ${VAR}s were expanded (an empty variable is the usual cause)."""
    if ENV_REF.search(url):  # a variable kept as written (snippets load the config so)
        return None
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() in ("http", "https") and parts.hostname:
            return None
    except ValueError:  # a bracketed host that is no IPv6 address
        pass
    # Shown without credentials: a query or a user:password@ may hold a key.
    shown = re.sub(r"^([^/]*//)?[^/@]*@", r"\1", re.split(r"[?#]", url, maxsplit=1)[0])
    names = ENV_REF.findall(written)
    empty = [name for name in names if not str(env.get(name, "")).strip()]
    if empty:
        hint = f"; {empty[0]} is set but empty"
    elif names:
        hint = f", from {', '.join('${' + name + '}' for name in names)}"
    else:
        hint = ""
    return f"must be an absolute http:// or https:// URL (got {shown!r}{hint})"
