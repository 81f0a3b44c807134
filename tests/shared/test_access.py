"""Client tokens, per-client allow-lists and the rate limiter."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from mcp_router.access import (
    Access,
    AccessDenied,
    RateLimited,
    RateLimiter,
    find_client,
    hash_token,
    new_token,
    token_instructions,
    token_line,
)
from mcp_router.shared_config import ClientConfig
from tests.shared.support import FakeClock


def client(token: str, **kwargs: object) -> ClientConfig:
    return ClientConfig(token_sha256=hash_token(token), **kwargs)  # type: ignore[arg-type]


def test_new_tokens_are_prefixed_random_and_url_safe():
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert token.startswith("mcpr_")
        assert len(token) >= 40
        assert all(c.isalnum() or c in "-_" for c in token)


def test_hash_is_sha256_hex_of_the_token():
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()


def test_find_client_matches_only_the_right_token():
    alice, bob = new_token(), new_token()
    hashes = {"alice": hash_token(alice), "bob": hash_token(bob)}
    assert find_client(alice, hashes) == "alice"
    assert find_client(bob, hashes) == "bob"
    assert find_client(alice + "x", hashes) is None
    assert find_client("", hashes) is None
    assert find_client(hash_token(alice), hashes) is None  # the stored hash is not a token


def test_token_line_is_the_yaml_to_paste_and_never_holds_the_token():
    import yaml

    token = new_token()
    line = token_line("alice", token)
    assert token not in line
    assert yaml.safe_load("clients:\n" + line) == {
        "clients": {"alice": {"token_sha256": hash_token(token)}}}
    ClientConfig.model_validate(yaml.safe_load(line)["alice"])
    text = token_instructions("alice", token)
    assert text.count(token) == 1 and line in text


def test_token_line_refuses_names_that_would_break_the_yaml():
    with pytest.raises(ValueError, match="client name"):
        token_line("a: b", new_token())


def test_client_config_refuses_a_raw_token_in_place_of_its_hash():
    with pytest.raises(ValidationError, match="64 lowercase hex"):
        ClientConfig(token_sha256=new_token())


POLICY = {
    "coder": client("t1", routes=["coding"]),
    "cheap": client("t2", models=["deepseek/*", "openrouter/openai/gpt-3.5-turbo"]),
    "both": client("t3", routes=["coding"], models=["anthropic/*"]),
    "free": client("t4"),
}


@pytest.mark.parametrize(("name", "route", "model"), [
    ("coder", "coding", None),
    ("cheap", None, "deepseek/deepseek-chat"),
    ("cheap", None, "openrouter/openai/gpt-3.5-turbo"),
    ("both", "coding", None),
    ("both", None, "anthropic/claude-3-haiku-20240307"),
    ("free", "anything", None),
    ("free", None, "any/model"),
    ("stdio-host", "anything", None),  # not a configured client: unrestricted
])
def test_access_allows_what_the_client_lists(name: str, route: str | None, model: str | None):
    Access(POLICY, FakeClock()).check(name, route, model)


def test_a_client_limited_to_one_route_is_refused_another_with_what_it_may_use():
    with pytest.raises(AccessDenied) as caught:
        Access(POLICY, FakeClock()).check("coder", "general_chat", None)
    assert caught.value.client == "coder"
    assert str(caught.value) == ("client 'coder' may not use route 'general_chat'; "
                                 "it may use routes coding and no explicit model")


def test_a_client_given_only_models_is_told_its_policy_allows_no_route():
    # Not "may not use route 'default'": a call naming nothing is given that route unasked.
    with pytest.raises(AccessDenied) as caught:
        Access(POLICY, FakeClock()).check("cheap", "default", None)
    assert str(caught.value) == ("client 'cheap' may use no route, only models deepseek/*, "
                                 "openrouter/openai/gpt-3.5-turbo: give one as model")


def test_listing_routes_closes_explicit_models():
    with pytest.raises(AccessDenied, match="may not use model 'openai/gpt-4'"):
        Access(POLICY, FakeClock()).check("coder", None, "openai/gpt-4")


def test_model_patterns_match_whole_specs_with_star_only():
    access = Access(POLICY, FakeClock())
    for refused in ["openrouter/openai/gpt-4", "xdeepseek/chat", "deepseek",
                    "openrouter/openai/gpt-3.5-turbo-16k", "openrouter/openai/gpt-3X5-turbo"]:
        with pytest.raises(AccessDenied) as caught:
            access.check("cheap", None, refused)
        assert str(caught.value).endswith(
            "it may use no route and models deepseek/*, openrouter/openai/gpt-3.5-turbo")


def test_check_call_checks_every_fallback():
    access = Access(POLICY, FakeClock())
    access.check_call("both", route="coding", model=None,
                      fallbacks=["anthropic/claude-3-haiku-20240307"])
    with pytest.raises(AccessDenied, match="model 'openai/gpt-4'"):
        access.check_call("both", route="coding", model=None, fallbacks=["openai/gpt-4"])
    with pytest.raises(AccessDenied, match="model 'openai/gpt-4'"):
        access.check_call("both", route=None, model="openai/gpt-4")


def test_rate_limiter_allows_a_burst_then_says_when_to_retry():
    clock = FakeClock()
    limiter = RateLimiter(clock, per_min=2)
    limiter.check("alice")
    limiter.check("alice")
    with pytest.raises(RateLimited) as caught:
        limiter.check("alice")
    assert (caught.value.client, caught.value.retry_after_s, caught.value.per_min) == (
        "alice", 30.0, 2)
    assert "rate limit of 2 calls per minute; retry after 30.0 s" in str(caught.value)
    clock.advance(29.9)
    with pytest.raises(RateLimited):
        limiter.check("alice")
    clock.advance(0.1)
    limiter.check("alice")


@pytest.mark.parametrize("per_min", [7, 25, 45, 50, 60, 75, 600])
def test_a_caller_that_waits_the_time_it_was_told_gets_through(per_min: int):
    clock = FakeClock()
    limiter = RateLimiter(clock, per_min=per_min)
    for _ in range(per_min):
        limiter.check("alice")
    for _ in range(5):  # each refusal's wait, waited exactly, lets the next call through
        with pytest.raises(RateLimited) as caught:
            limiter.check("alice")
        clock.advance(caught.value.retry_after_s)
        limiter.check("alice")


def test_rate_limiter_keeps_one_bucket_per_client_and_caps_the_burst():
    clock = FakeClock()
    limiter = RateLimiter(clock, per_min=1)
    limiter.check("alice")
    limiter.check("bob")
    with pytest.raises(RateLimited):
        limiter.check("alice")
    clock.advance(3600)  # an idle hour refills one minute's worth, not sixty
    limiter.check("alice")
    with pytest.raises(RateLimited):
        limiter.check("alice")


def test_access_admits_by_each_clients_own_rate():
    clock = FakeClock()
    access = Access({"slow": client("a", rate_per_min=1), "free": client("b")}, clock)
    access.admit("slow")
    with pytest.raises(RateLimited, match="'slow'"):
        access.admit("slow")
    for _ in range(100):
        access.admit("free")
        access.admit("stdio-host")
