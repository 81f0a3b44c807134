"""Tool arguments as hosts send them: the forms a parameter takes, and errors a model can read.

Hosts differ in how they fill in arguments: some send "" or null for the ones they leave
out, OpenAI-style clients send one string where a list is declared, and the SDK itself
decodes a string that looks like JSON unless the parameter is declared exactly `str`.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from difflib import get_close_matches
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

__all__ = ["Label", "LeftOut", "NotBool", "Verbatim", "argument_errors", "listed",
           "unknown_arguments"]


def _as_text(value: object) -> object:
    """null as not given; any other JSON value that is no string as its JSON text."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


Verbatim = Annotated[str, BeforeValidator(_as_text),
                     WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]})]
"""A text argument that reaches the tool exactly as sent; null or "" reads as not given.

The SDK decodes a string argument that parses as a JSON object or list into that value,
unless the parameter is declared exactly `str`: as `str | None`, a prompt that is itself
JSON (agents send such prompts all the time) arrived as a dict and was refused. A client
that decodes it itself (MCP Inspector's CLI parses every `--tool-arg` value as JSON:
`prompt=42`, `prompt={"task": "x"}`) sends a number or an object: it is taken as its JSON
text, as the user typed it.
"""


@dataclass(frozen=True)
class LeftOut:
    """Marks an optional argument whose "" or null reads as left out: it takes `default`.
    Any other value is checked as before, so a wrong one is still refused with the values
    allowed; the published schema admits "" and null beside them. Constraints go on the
    inner type, where they apply to the values checked:

    `Annotated[Literal["use", "skip"], LeftOut("use")] = "use"`
    `Annotated[Annotated[int, Field(gt=0)] | None, LeftOut(None)] = None`
    """

    default: object

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self._read, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        inner = handler(schema)
        branches = inner["anyOf"] if set(inner) == {"anyOf"} else [inner]
        return {"anyOf": [*branches, {"enum": ["", None]}]}

    def _read(self, value: object) -> object:
        return self.default if value is None or value == "" else value


def _string_or_number(value: object) -> object:
    # Said here: pydantic would name only the string form, as if a number were wrong too.
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("must be a string or a number")
    return value


def _not_bool(value: object) -> object:
    # JSON true and false are no numbers, though pydantic would take them as 1 and 0.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


NotBool = BeforeValidator(_not_bool)
"""Refuses true and false for a number argument, which pydantic takes as 1 and 0 otherwise
(`max_tokens: true` bought a one-token answer): `max_tokens: must be a number, not true or
false`. It goes after the number's constraints, so the published schema stays as it was:
`Annotated[int, Field(gt=0), NotBool]`."""


Label = Annotated[str, Field(coerce_numbers_to_str=True), BeforeValidator(_string_or_number),
                  WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}]})]
"""A metadata value: a string, or a number taken as its text (`{"run": 7}`); any other
value is refused as `metadata.<name>: must be a string or a number`."""


def listed(value: list[str] | str | None) -> tuple[str, ...]:
    """A list argument that clients may also give as one string (as OpenAI's `stop`); an
    empty string, as hosts that fill in every argument send, is an empty list."""
    if isinstance(value, str):
        return (value,) if value else ()
    return tuple(value or ())


# What pydantic names the branches of a union argument (`fallbacks: list[str] | str`), as said
# to whoever sent it.
_BRANCHES = {"list[str]": "a list of strings", "str": "a string", "int": "an integer",
             "float": "a number", "bool": "true or false"}


def argument_errors(error: ValidationError) -> str:
    """One `field: problem` per invalid argument, in the order pydantic found them.

    The values sent are not repeated (a prompt can be long, or personal), nor are pydantic's
    error codes and links: a model reading the error needs the field and what it must be.
    A value that fits no form of an argument taking several is one problem naming the forms
    (`stop: must be a list of strings or a string`), not one per form in pydantic's words.
    """
    problems: dict[str, list[str]] = {}
    forms: dict[str, list[str]] = {}
    for e in error.errors():
        path = [str(part) for part in e["loc"]]
        branch = next((i for i, part in enumerate(path) if i and part in _BRANCHES), None)
        if branch is None:
            problems.setdefault(".".join(path) or "arguments", []).append(
                e["msg"].removeprefix("Value error, "))
            continue
        field = ".".join(path[:branch])
        problems.setdefault(field, [])
        if _BRANCHES[path[branch]] not in forms.setdefault(field, []):
            forms[field].append(_BRANCHES[path[branch]])
    return "; ".join(
        f"{field}: {problem}" for field, found in problems.items()
        for problem in (found or [f"must be {' or '.join(forms[field])}"]))


def unknown_arguments(unknown: Collection[str], known: Collection[str]) -> str:
    """One `name: problem` per argument the tool does not take, with the name meant when
    one is close (`modle` → `model`), else the names it takes."""
    def problem(name: str) -> str:
        close = get_close_matches(name, known, n=1)
        if close:
            return f"{name}: unknown argument; did you mean {close[0]}?"
        if not known:
            return f"{name}: unknown argument; this tool takes no arguments"
        return f"{name}: unknown argument; this tool takes {', '.join(sorted(known))}"

    return "; ".join(problem(name) for name in sorted(unknown))
