"""The host's model as last resort keeps time of its own: the targets leave it a share of the
deadline (a fifth, at most 10 s), it is asked only with time left, and its attempt says how
long it took, whether it answered, failed or was not asked."""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.errors import AllTargetsFailed, ProviderUnavailable
from mcp_router.last_resort import host_reserve_s
from mcp_router.messages import (
    ChatCall,
    ChatRequest,
    ChatResponse,
    ChatResult,
    Completion,
    HostUnreachable,
    LastResort,
    ProgressFn,
)
from mcp_router.wiring import open_router
from tests.providers.fakes import HTTPX_ON_TRIO

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time,
              pytest.mark.filterwarnings(HTTPX_ON_TRIO)]

CONFIG = textwrap.dedent("""\
    providers:
      openai: {kind: openai, base_url: "https://openai.test/v1", api_key_env: OPENAI_KEY,
               stream: true}
    routes:
      default:
        targets:
          - {provider: openai, model: gpt-4o-mini}
    default_route: default
    retry: {attempts: 1}
    timeouts: {deadline_s: 50}
    cache: {enabled: false}
    """)


async def hanging(request: httpx.Request) -> httpx.Response:
    """An upstream that never answers."""
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


def streaming_forever(request: httpx.Request) -> httpx.Response:
    """An upstream that begins an answer, then sends nothing more."""

    async def body() -> AsyncIterator[bytes]:
        data = {"model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}]}
        yield f"data: {json.dumps(data)}\n\n".encode()
        await anyio.sleep_forever()

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


class Host:
    """The host's model: answers (or fails) after `seconds`, and counts when it was asked."""

    def __init__(self, seconds: float, fail: bool = False) -> None:
        self.seconds, self.fail = seconds, fail
        self.asked_at: list[float] = []

    async def __call__(self, request: ChatRequest, progress: ProgressFn) -> ChatResponse:
        self.asked_at.append(anyio.current_time())
        await anyio.sleep(self.seconds)
        if self.fail:
            raise ProviderUnavailable("host", "sampling", "the host's model: refused")
        return ChatResponse(completion=Completion(content="answered by the host",
                                                  finish_reason="stop"),
                            provider="host", model="host-model-1")


async def call_with_host(handler: Callable[[httpx.Request], Any], host: LastResort,
                         tmp_path: Path) -> ChatResult:
    config = parse_config(CONFIG, env={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with open_router(config, http=http, keys={"openai": "k"}, home=tmp_path / "home",
                         clock=LoopClock(), rng=random.Random(0)) as router:
            with anyio.fail_after(300):
                return await router.complete(ChatCall(prompt="Capital of France?"),
                                             last_resort=host)


def test_the_hosts_share_is_a_fifth_of_the_deadline_and_at_most_10_s() -> None:
    assert (host_reserve_s(2), host_reserve_s(30), host_reserve_s(50)) == (0.4, 6.0, 10.0)


async def test_a_hanging_last_target_leaves_the_host_time_to_answer(tmp_path: Path) -> None:
    host = Host(seconds=3)
    started = anyio.current_time()

    result = await call_with_host(hanging, host, tmp_path)

    assert (result.content, result.provider) == ("answered by the host", "host")
    assert host.asked_at == [pytest.approx(started + 40)]  # the deadline less 10 s
    assert [(a.provider, a.outcome, a.latency_ms) for a in result.attempts] == [
        ("openai", "error", pytest.approx(40000)), ("host", "ok", pytest.approx(3000))]
    assert anyio.current_time() - started == pytest.approx(43)


async def test_a_host_too_slow_for_its_share_ends_the_call_at_the_deadline_with_every_attempt(
        tmp_path: Path) -> None:
    host = Host(seconds=30)
    started = anyio.current_time()

    with pytest.raises(AllTargetsFailed) as info:
        await call_with_host(hanging, host, tmp_path)

    assert anyio.current_time() - started == pytest.approx(50)  # not past the deadline
    [target, asked] = info.value.attempts
    assert (target.provider, target.outcome) == ("openai", "error")
    assert (asked.provider, asked.model, asked.outcome, asked.latency_ms) == (
        "host", "sampling", "error", pytest.approx(10000))
    assert "no answer within the deadline" in (asked.error or "")
    assert "host/sampling: error" in str(info.value)


async def test_a_host_that_fails_is_listed_with_the_time_it_took(tmp_path: Path) -> None:
    host = Host(seconds=2, fail=True)

    with pytest.raises(AllTargetsFailed) as info:
        await call_with_host(hanging, host, tmp_path)

    asked = info.value.attempts[-1]
    assert (asked.provider, asked.outcome, asked.error, asked.latency_ms) == (
        "host", "error", "the host's model: refused", pytest.approx(2000))


async def test_with_no_time_left_the_host_is_not_asked_and_the_error_says_so(
        tmp_path: Path) -> None:
    # An answer that has begun streaming may run on to the deadline: nothing is left after it.
    host = Host(seconds=1)
    started = anyio.current_time()

    with pytest.raises(AllTargetsFailed) as info:
        await call_with_host(streaming_forever, host, tmp_path)

    assert host.asked_at == []
    assert anyio.current_time() - started == pytest.approx(50)
    assert [(a.provider, a.model, a.outcome, a.error) for a in info.value.attempts][-1] == (
        "host", "sampling", "skipped", "no time left before the deadline")
    assert "host/sampling: skipped (no time left before the deadline)" in str(info.value)


async def test_a_host_that_cannot_be_asked_leaves_the_targets_the_whole_deadline(
        tmp_path: Path) -> None:
    started = anyio.current_time()
    unreachable = HostUnreachable("the host does not offer MCP sampling")

    with pytest.raises(AllTargetsFailed) as info:
        await call_with_host(hanging, unreachable, tmp_path)

    [target, host] = info.value.attempts
    assert (target.provider, target.latency_ms) == ("openai", pytest.approx(50000))
    assert (host.provider, host.outcome, host.error) == (
        "host", "skipped", "the host does not offer MCP sampling")
    assert anyio.current_time() - started == pytest.approx(50)
