"""The canonical cache key: a stable hash of everything that changes an answer, plus the tenant."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mcp_router.messages import ChatRequest

__all__ = ["KEY_VERSION", "cache_key", "canonical_json"]

KEY_VERSION = 1
"""Bumped whenever what goes into the key changes meaning, so old entries are never misread."""


def cache_key(request: ChatRequest, scope: str, tenant: str) -> str:
    """The sha256 hex key of `request` (after the PII filter) asked of `scope` by `tenant`.

    Every field of the request goes in, so a field added to ChatRequest later changes the key
    without anyone remembering to add it here. Message content is kept byte for byte: a
    trailing space can change an answer. `scope` is the resolved target spec the router ran
    (a route name, or a model plus its fallbacks); `tenant` keeps one client's answers from
    ever being served to another.
    """
    document = {
        "v": KEY_VERSION,
        "request": request.model_dump(mode="json"),
        "scope": scope,
        "tenant": tenant,
    }
    # surrogatepass: a lone surrogate in content must hash, not crash the call
    return hashlib.sha256(canonical_json(document).encode("utf-8", "surrogatepass")).hexdigest()


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
