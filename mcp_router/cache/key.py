"""The canonical cache key: a stable hash of everything that changes an answer, plus the tenant."""

from __future__ import annotations

import hashlib
import json
from typing import Any, get_args

from pydantic_core import PydanticSerializationError

from mcp_router.messages import ChatRequest

__all__ = ["KEY_VERSION", "cache_key", "canonical_json"]

KEY_VERSION = 2
"""Bumped whenever what goes into the key changes meaning, so old entries are never misread."""

_FLOATS = tuple(name for name, field in ChatRequest.model_fields.items()
                if field.annotation is float or float in get_args(field.annotation))


def cache_key(request: ChatRequest, scope: str, tenant: str) -> str:
    """The sha256 hex key of `request` (after the PII filter) asked of `scope` by `tenant`.

    Every field of the request goes in, so a field added to ChatRequest later changes the key
    without anyone remembering to add it here. Message content is kept byte for byte: a
    trailing space can change an answer. `scope` is the resolved target spec the router ran
    (a route name, or a model plus its fallbacks); `tenant` keeps one client's answers from
    ever being served to another.

    The request is written by pydantic's serializer: fields in their declared order, each
    number in one spelling, so equal requests give equal text. The labels go first as one
    JSON line, which cannot hold a raw newline, so no label can run into the request.
    """
    zeros = {name: 0.0 for name in _FLOATS if getattr(request, name) == 0}
    if zeros:  # -0.0 and 0.0: one text
        request = request.model_copy(update=zeros)
    try:
        body = request.__pydantic_serializer__.to_json(request)
    except PydanticSerializationError:  # a lone surrogate in content: must hash, not crash
        body = canonical_json(request.model_dump(mode="json")).encode("utf-8", "surrogatepass")
    labels = json.dumps([KEY_VERSION, scope, tenant])  # ASCII: escapes any surrogate
    return hashlib.sha256(labels.encode() + b"\n" + body).hexdigest()


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no whitespace, no escaping, and -0.0 written as 0.0."""
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(item) for item in value]
    if isinstance(value, float):
        return value + 0.0  # -0.0 + 0.0 == 0.0: equal numbers, equal text
    return value
