"""The store policy: complete, successful answers only; sampled answers only on opt-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_router.cache import ResponseCache
from mcp_router.config import CacheConfig
from tests.cache.support import FakeClock, request, response


@pytest.mark.parametrize("finish_reason", ["stop", "length"])
def test_a_finished_answer_is_stored(store: ResponseCache, finish_reason: str) -> None:
    assert store.should_store(request(), response(finish_reason=finish_reason))


@pytest.mark.parametrize("finish_reason", [None, "content_filter", "tool_calls", "safety",
                                           "error", "recitation"])
def test_an_answer_not_known_to_be_complete_is_not_stored(store: ResponseCache,
                                                          finish_reason: str | None) -> None:
    assert not store.should_store(request(), response(finish_reason=finish_reason))


@pytest.mark.parametrize("content", ["", "   ", "\n\t"])
def test_an_empty_answer_is_never_stored(store: ResponseCache, content: str) -> None:
    assert not store.should_store(request(), response(content))


@pytest.mark.parametrize("temperature", [None, 0.0])
def test_an_unsampled_request_is_cacheable(store: ResponseCache,
                                           temperature: float | None) -> None:
    req = request(temperature=temperature)
    assert store.may_cache(req)
    assert store.should_store(req, response())


@pytest.mark.parametrize("temperature", [0.01, 0.7, 2.0])
def test_a_sampled_request_skips_the_cache_unless_the_call_opts_in(
        store: ResponseCache, temperature: float) -> None:
    req = request(temperature=temperature)
    assert not store.may_cache(req)
    assert not store.should_store(req, response())
    assert store.may_cache(req, call_opt_in=True)
    assert store.should_store(req, response(), call_opt_in=True)


def test_opting_in_does_not_make_an_incomplete_answer_storable(store: ResponseCache) -> None:
    req = request(temperature=0.7)
    assert not store.should_store(req, response(finish_reason=None), call_opt_in=True)


def test_a_disabled_cache_holds_nothing(tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(enabled=False), clock) as store:
        assert not store.may_cache(request())
