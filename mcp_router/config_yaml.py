"""Config YAML with the line of every key, and `${VAR}` in provider URLs and headers.

Kept apart from the models so `mcp_router.config` reads as the policy's shape: this is how
its errors come to name the line.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from difflib import get_close_matches
from typing import Any

import yaml

from mcp_router.errors import ConfigError

__all__ = ["ENV_REF", "Lines", "describe", "expand_env", "nearest_line", "read_yaml"]

Lines = dict[tuple[str | int, ...], int]
"""The line of each key path in the file: `("providers", "openai", "base_url") -> 12`."""

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def read_yaml(text: str, file: str) -> tuple[dict[str, Any], Lines]:
    """The top-level mapping of `text` as plain data, and the line of every key path."""
    lines: Lines = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            raise ConfigError("the file is empty", file=file)
        # Building can fail too: a value the safe loader will not make (a custom tag).
        data = _to_python(node, (), lines)
    except _ComplexKey as exc:
        raise ConfigError("a key must be a plain name, not a list or a mapping", file=file,
                          line=exc.line, key=".".join(map(str, exc.path)) or None) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=file,
                          line=mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", file=file, line=1)
    return data, lines


def describe(err: Any, keys: Collection[str] = ()) -> str:
    """A pydantic validation error in the words a config author reads; `keys` are those the
    mapping holding an unknown key may have, to name the one meant."""
    if err["type"] == "extra_forbidden":
        close = get_close_matches(str(err["loc"][-1]), keys, n=1)
        if close:
            return f"unknown key; did you mean {close[0]}?"
        return f"unknown key; keys here are {', '.join(keys)}" if keys else "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _to_python(node: yaml.Node, path: tuple[str | int, ...], lines: Lines) -> Any:
    """Build plain data from a YAML node, recording the line of every path (a key's own line)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _ComplexKey(path, key_node.start_mark.line + 1)
            key = _scalar(key_node)
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _to_python(value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return _scalar(node)


class _ComplexKey(Exception):
    """A mapping key that is a list or a mapping, which no config key can be."""

    def __init__(self, path: tuple[str | int, ...], line: int) -> None:
        super().__init__(path, line)
        self.path, self.line = path, line


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def nearest_line(loc: tuple[Any, ...], lines: Lines) -> int | None:
    """The line of `loc`, or of its closest parent that has one (a missing key's mapping)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def expand_env(data: dict[str, Any], env: Any, file: str, lines: Lines) -> dict[str, Any]:
    """Replace ${VAR} in providers' base_url and headers, and nowhere else."""
    for name, provider in (data.get("providers") or {}).items():
        if not isinstance(provider, dict):
            continue
        for key in ("base_url", "headers"):
            value = provider.get(key)
            path = ("providers", name, key)
            if isinstance(value, str):
                provider[key] = _substitute(value, env, file, lines, path)
            elif isinstance(value, dict):
                provider[key] = {k: _substitute(v, env, file, lines, (*path, k))
                                 if isinstance(v, str) else v for k, v in value.items()}
    return data


def _substitute(value: str, env: Any, file: str, lines: Lines,
                path: tuple[str | int, ...]) -> str:
    def fail(message: str) -> ConfigError:
        return ConfigError(message, file=file, line=nearest_line(path, lines),
                           key=".".join(map(str, path)))

    def one(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in env:
            raise fail(f"environment variable {var} is not set")
        return str(env[var])

    if "${" in ENV_REF.sub("", value):  # `${A:-x}` or `${A` would be sent as written
        raise fail("only ${NAME} is expanded (no defaults or other shell forms)")
    return ENV_REF.sub(one, value)
