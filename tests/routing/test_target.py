"""Target: one try per call, bounded by the adapter timeout and the call's deadline."""

from __future__ import annotations

import anyio
import pytest

from mcp_router.clock import LoopClock
from mcp_router.errors import ProviderNotConfigured, ProviderStatusError, ProviderTimeout
from mcp_router.messages import Attempt, Call, ChatResponse
from mcp_router.routing import Target
from tests.fixtures.scripted import (
    HANG,
    Delay,
    ScriptedAdapter,
    Streamed,
    completion,
    request,
    status_error,
)
from tests.routing.support import Progress, call_for

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]


async def test_target_answers_with_provider_and_model_and_records_one_ok_attempt() -> None:
    adapter = ScriptedAdapter("deepseek", [Delay(0.25, completion("hi there"))])
    call = call_for(10)

    response = await Target(adapter, "deepseek-chat", LoopClock()).complete(request(), call)

    assert response == ChatResponse(completion=completion("hi there"), provider="deepseek",
                                    model="deepseek-chat")
    assert call.attempts == [Attempt(provider="deepseek", model="deepseek-chat", outcome="ok",
                                     latency_ms=250.0)]
    assert adapter.calls == [(request(), "deepseek-chat")]


async def test_target_reports_progress_before_asking() -> None:
    progress = Progress()
    adapter = ScriptedAdapter("deepseek", [completion()])

    await Target(adapter, "deepseek-chat", LoopClock()).complete(request(), call_for(5, progress))

    assert progress.messages == ["asking deepseek/deepseek-chat"]


async def test_unconfigured_target_is_skipped_without_calling_the_adapter() -> None:
    adapter = ScriptedAdapter("openai", [completion()], configured=False)
    call = call_for(10)

    with pytest.raises(ProviderNotConfigured) as raised:
        await Target(adapter, "gpt-4o", LoopClock()).complete(request(), call)

    assert (raised.value.provider, raised.value.model) == ("openai", "gpt-4o")
    assert call.attempts == [Attempt(provider="openai", model="gpt-4o", outcome="skipped",
                                     error="no API key configured")]
    assert adapter.calls == []


async def test_target_gives_up_at_the_adapter_timeout() -> None:
    adapter = ScriptedAdapter("together", [HANG], timeout_s=2)
    call = call_for(30)

    with pytest.raises(ProviderTimeout):
        await Target(adapter, "llama", LoopClock()).complete(request(), call)

    assert anyio.current_time() == 2
    assert call.attempts == [Attempt(provider="together", model="llama", outcome="error",
                                     error="no answer within 2 s", latency_ms=2000.0)]


async def test_an_answer_still_streaming_at_the_timeout_is_told_as_cut_off() -> None:
    adapter = ScriptedAdapter("together", [Delay(0.5, Streamed("x" * 40, HANG))], timeout_s=2)
    call = call_for(30)

    with pytest.raises(ProviderTimeout):
        await Target(adapter, "llama", LoopClock()).complete(request(), call)

    assert call.attempts == [Attempt(
        provider="together", model="llama", outcome="error", latency_ms=2000.0, ttfb_ms=500.0,
        error="still streaming when its 2 s ran out (~10 tokens in): the answer was cut off")]


async def test_target_gives_up_at_the_call_deadline_when_it_comes_before_the_timeout() -> None:
    adapter = ScriptedAdapter("together", [HANG], timeout_s=60)
    call = call_for(1.5)

    with pytest.raises(ProviderTimeout):
        await Target(adapter, "llama", LoopClock()).complete(request(), call)

    assert anyio.current_time() == 1.5
    assert call.attempts[0].error == "no answer within 1.5 s"


async def test_target_does_not_call_the_adapter_once_the_deadline_has_passed() -> None:
    adapter = ScriptedAdapter("together", [completion()])
    call = Call(deadline=anyio.current_time())

    with pytest.raises(ProviderTimeout):
        await Target(adapter, "llama", LoopClock()).complete(request(), call)

    assert adapter.calls == []
    assert call.attempts == [Attempt(provider="together", model="llama", outcome="skipped",
                                     error="deadline reached")]


async def test_target_records_the_status_of_an_http_error_and_reraises_it() -> None:
    error = status_error("anthropic", 503)
    adapter = ScriptedAdapter("anthropic", [Delay(0.1, error)])
    call = call_for(10)

    with pytest.raises(ProviderStatusError) as raised:
        await Target(adapter, "claude", LoopClock()).complete(request(), call)

    assert raised.value is error
    assert call.attempts == [Attempt(provider="anthropic", model="claude", outcome="error",
                                     status=503, error="HTTP 503: Service Unavailable",
                                     latency_ms=100.0)]


def test_target_label_names_provider_and_model() -> None:
    adapter = ScriptedAdapter("openrouter", [completion()])
    assert Target(adapter, "openai/gpt-3.5-turbo", LoopClock()).label == (
        "openrouter/openai/gpt-3.5-turbo")
