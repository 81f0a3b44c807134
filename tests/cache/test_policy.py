"""The store policy: complete, successful answers only; sampled answers only on opt-in; a
failure shared with identical waiting calls only when it is the upstream's verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_router.cache import ResponseCache, shared_failure
from mcp_router.config import CacheConfig
from mcp_router.errors import (
    AllTargetsFailed,
    BudgetExceeded,
    DeadlineExceeded,
    ProviderStatusError,
)
from mcp_router.messages import Attempt, Outcome
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


def _attempt(outcome: Outcome, status: int | None, error: str,
             provider: str = "deepseek") -> Attempt:
    return Attempt(provider=provider, model="deepseek-chat", outcome=outcome, status=status,
                   error=error)


def test_waiters_share_a_refusal_of_the_request_itself() -> None:
    refused = ProviderStatusError("deepseek", "deepseek-chat", 400, "bad max_tokens")
    shared = shared_failure(refused)
    assert isinstance(shared, ProviderStatusError) and shared is not refused
    assert (shared.provider, shared.model, shared.status, str(shared)) == (
        "deepseek", "deepseek-chat", 400, str(refused))


def test_waiters_share_a_route_whose_every_target_answered_an_http_error() -> None:
    attempts = [_attempt("error", 503, "HTTP 503: overloaded"),
                _attempt("error", 429, "HTTP 429: slow down", "openrouter")]
    failed = AllTargetsFailed(attempts, "all targets failed")
    shared = shared_failure(failed)
    assert isinstance(shared, AllTargetsFailed) and shared is not failed
    assert (shared.attempts, str(shared)) == (attempts, str(failed))


@pytest.mark.parametrize("attempt", [
    _attempt("error", None, "no answer within 2 s"),
    _attempt("skipped", None, "deadline reached"),
    _attempt("skipped", None, "over budget: daily budget of $1.00 would be exceeded"),
    _attempt("error", None, "connection refused"),
    _attempt("error", None, "the host's model: declined", "host"),
])
def test_waiters_ask_themselves_after_a_failure_of_the_failing_call_itself(
        attempt: Attempt) -> None:
    failed = AllTargetsFailed([_attempt("error", 503, "HTTP 503: overloaded"), attempt])
    assert shared_failure(failed) is None


@pytest.mark.parametrize("error", [AllTargetsFailed([]), BudgetExceeded("over"),
                                   DeadlineExceeded("late"), RuntimeError("a bug")])
def test_waiters_ask_themselves_after_any_other_failure(error: Exception) -> None:
    assert shared_failure(error) is None
