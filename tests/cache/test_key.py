"""The cache key: same answer-changing data gives the same key, any change gives another."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mcp_router.cache import cache_key
from mcp_router.messages import ChatRequest, Message
from tests.cache.support import request

SCOPE, TENANT = "route:default", "team-a"

messages = st.lists(st.builds(Message, role=st.sampled_from(["system", "user", "assistant"]),
                              content=st.text(max_size=40)),
                    min_size=1, max_size=4).map(tuple)
# One strategy per ChatRequest field: the mutation property draws a new value from it.
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "messages": messages,
    "max_tokens": st.none() | st.integers(min_value=1, max_value=200_000),
    "temperature": st.none() | st.floats(min_value=0, max_value=2),
    "top_p": st.none() | st.floats(min_value=0, max_value=1, exclude_min=True),
    "stop": st.none() | st.lists(st.text(max_size=8), max_size=3).map(tuple),
}
requests = st.builds(ChatRequest, **FIELD_VALUES)
tenants = st.text(max_size=20)


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same data with every object's keys in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: _shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


@given(requests, st.randoms(use_true_random=False), st.sampled_from([None, 0, 2, "\t"]),
       st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]), st.booleans())
def test_key_ignores_key_order_and_json_formatting(
        req: ChatRequest, rng: random.Random, indent: int | str | None,
        separators: tuple[str, str], ascii_only: bool) -> None:
    data = _shuffled(req.model_dump(mode="json"), rng)
    text = json.dumps(data, indent=indent, separators=separators, ensure_ascii=ascii_only)
    reparsed = ChatRequest.model_validate_json(text)
    assert cache_key(reparsed, SCOPE, TENANT) == cache_key(req, SCOPE, TENANT)


@given(requests, st.data())
def test_any_changed_request_field_changes_the_key(req: ChatRequest, data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(sorted(FIELD_VALUES)))
    old = getattr(req, field)
    new = data.draw(FIELD_VALUES[field].filter(lambda value: value != old))
    changed = ChatRequest.model_validate({**req.model_dump(), field: new})
    assert cache_key(changed, SCOPE, TENANT) != cache_key(req, SCOPE, TENANT)


def test_the_mutation_property_covers_every_request_field() -> None:
    # a field added to ChatRequest must get a strategy above, or this fails
    assert set(FIELD_VALUES) == set(ChatRequest.model_fields)


@given(requests, tenants, tenants)
def test_different_tenants_get_different_keys(req: ChatRequest, one: str, two: str) -> None:
    keys_equal = cache_key(req, SCOPE, one) == cache_key(req, SCOPE, two)
    assert keys_equal == (one == two)


@given(requests, st.text(max_size=30), st.text(max_size=30))
def test_different_scopes_get_different_keys(req: ChatRequest, one: str, two: str) -> None:
    keys_equal = cache_key(req, one, TENANT) == cache_key(req, two, TENANT)
    assert keys_equal == (one == two)


@given(requests, st.lists(st.text(max_size=6), min_size=4, max_size=4))
def test_scope_and_tenant_cannot_blur_into_each_other(req: ChatRequest, parts: list[str]) -> None:
    scope_a, tenant_a, scope_b, tenant_b = parts
    keys_equal = cache_key(req, scope_a, tenant_a) == cache_key(req, scope_b, tenant_b)
    assert keys_equal == ((scope_a, tenant_a) == (scope_b, tenant_b))


@given(requests)
def test_key_is_a_sha256_hex_digest(req: ChatRequest) -> None:
    key = cache_key(req, SCOPE, TENANT)
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")


def test_message_order_changes_the_key() -> None:
    first = request("a").messages + request("b").messages
    assert (cache_key(ChatRequest(messages=first), SCOPE, TENANT)
            != cache_key(ChatRequest(messages=first[::-1]), SCOPE, TENANT))


def test_trailing_whitespace_in_content_changes_the_key() -> None:
    assert cache_key(request("hi"), SCOPE, TENANT) != cache_key(request("hi "), SCOPE, TENANT)


def test_numbers_written_differently_give_the_same_key() -> None:
    head = '{"messages":[{"role":"user","content":"x"}],"temperature":'
    texts = [head + temperature + ',"max_tokens":10}'
             for temperature in ("1", "1.0", "1e0", "10E-1", "1.000")]
    keys = {cache_key(ChatRequest.model_validate_json(text), SCOPE, TENANT) for text in texts}
    assert len(keys) == 1


def test_negative_zero_temperature_is_the_same_key_as_zero() -> None:
    assert (cache_key(request(temperature=-0.0), SCOPE, TENANT)
            == cache_key(request(temperature=0.0), SCOPE, TENANT))


def test_a_lone_surrogate_in_content_still_hashes() -> None:
    # A Message makes a lone half U+FFFD; one built without validation must still hash.
    def unchecked(text: str) -> ChatRequest:
        return ChatRequest(messages=(Message.model_construct(role="user", content=text),))

    assert cache_key(unchecked("\ud800"), SCOPE, TENANT) != cache_key(unchecked("\ud801"),
                                                                       SCOPE, TENANT)
