"""A stream cut at a stop string the router applies (o3-mini takes no `stop`) is complete at
the stop, as an upstream's own stop would end it: the router reads no further and closes the
stream, so whatever the upstream, which never saw the stop, does next cannot fail the answer."""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.errors import AllTargetsFailed
from mcp_router.messages import ChatCall, ChatResult
from mcp_router.wiring import open_router
from tests.providers.fakes import HTTPX_ON_TRIO

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time,
              pytest.mark.filterwarnings(HTTPX_ON_TRIO)]

CONFIG = textwrap.dedent("""\
    providers:
      openai: {kind: openai, base_url: "https://openai.test/v1", api_key_env: OPENAI_KEY,
               stream: true, timeout_s: 1.5}
    routes:
      default:
        targets:
          - {provider: openai, model: o3-mini}
    default_route: default
    retry: {attempts: 3, backoff_initial_s: 0.1, backoff_max_s: 0.2}
    """)


def chunk(text: str) -> bytes:
    data = {"model": "o3-mini",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(data)}\n\n".encode()


DONE = b"data: [DONE]\n\n"
IN_BAND_ERROR = b'data: {"error": {"message": "upstream overloaded", "code": 502}}\n\n'


class Generating:
    """A MockTransport handler: an upstream that streams "Paris." and "\\nEND\\n" (the caller's
    stop), then keeps going with `tail`: bytes to send, seconds to wait, or an error to die of.
    Counts the requests and how many byte chunks of the body were read."""

    def __init__(self, *tail: bytes | float | Exception) -> None:
        self.parts: tuple[bytes | float | Exception, ...] = (chunk("Paris."), chunk("\nEND\n"),
                                                             *tail)
        self.hits = 0
        self.read = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert "stop" not in json.loads(request.content)  # a reasoning model takes none
        self.hits += 1
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=self._body())

    async def _body(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            if isinstance(part, float):
                await anyio.sleep(part)
            elif isinstance(part, Exception):
                raise part
            else:
                self.read += 1
                yield part


async def ask(upstream: Generating, tmp_path: Path) -> ChatResult:
    config = parse_config(CONFIG, env={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        with open_router(config, http=http, keys={"openai": "k"}, home=tmp_path / "home",
                         clock=LoopClock(), rng=random.Random(0)) as router:
            with anyio.fail_after(300):  # virtual time: no real wait
                return await router.complete(ChatCall(prompt="Capital of France?",
                                                      stop=("END",), cache="skip"))


RUNS_ON = tuple(part for _ in range(40) for part in (0.1, chunk(" more text")))
TAILS = {
    "runs past the timeout": (*RUNS_ON, DONE),
    "ends without [DONE] or a finish_reason": (chunk(" more text"),),
    "breaks off": (chunk(" more"), httpx.RemoteProtocolError("peer closed connection")),
    "sends a malformed chunk": (b"data: {not json\n\n", DONE),
    "reports an error in band": (chunk(" more"), IN_BAND_ERROR),
}


@pytest.mark.parametrize("tail", TAILS.values(), ids=TAILS.keys())
async def test_an_answer_complete_at_a_local_stop_is_kept_whatever_the_stream_does_after(
        tmp_path: Path, tail: tuple[bytes | float | Exception, ...]) -> None:
    upstream = Generating(*tail)

    result = await ask(upstream, tmp_path)

    assert (result.content, result.finish_reason) == ("Paris.\n", "stop")
    assert [(a.provider, a.outcome) for a in result.attempts] == [("openai", "ok")]
    assert upstream.hits == 1  # no retry paying for the same answer again
    assert upstream.read == 2  # nothing after the chunk with the stop was read


async def test_an_answer_cut_before_its_local_stop_still_fails_as_cut(tmp_path: Path) -> None:
    # Reading ends early only once the stop is found: a stream cut before it is still cut.
    upstream = Generating()
    upstream.parts = (chunk("Paris."), chunk(" and more"))

    with pytest.raises(AllTargetsFailed) as info:
        await ask(upstream, tmp_path)

    assert {(a.outcome, a.error) for a in info.value.attempts} == {
        ("error", "stream cut: it ended before [DONE] and without a finish_reason")}
