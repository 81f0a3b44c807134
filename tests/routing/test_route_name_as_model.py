"""A route name given where a model goes is refused, saying it is a route and where it goes."""

from __future__ import annotations

import random
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from mcp_router.clock import LoopClock
from mcp_router.config import Config, parse_config
from mcp_router.errors import InvalidRequest
from mcp_router.messages import ChatCall
from mcp_router.router import Router
from mcp_router.server import create_server
from mcp_router.simulator import RunningSimulator
from mcp_router.wiring import open_router

pytestmark = pytest.mark.anyio


def config_of(sim: RunningSimulator) -> Config:
    return parse_config(textwrap.dedent(f"""\
        providers:
          p1: {{kind: openai, base_url: "{sim.base_urls['openai']}", models: [a, b]}}
        routes:
          coding:
            targets:
              - {{provider: p1, model: a}}
        default_route: coding
        cache: {{enabled: false}}
        """), env={})


@pytest.fixture
async def router(sim: RunningSimulator, tmp_path: Path) -> AsyncIterator[Router]:
    async with httpx.AsyncClient() as http:
        with open_router(config_of(sim), http=http, keys={}, home=tmp_path / "home",
                         clock=LoopClock(), rng=random.Random(0)) as router:
            yield router


async def refusal(router: Router, **fields: Any) -> InvalidRequest:
    with anyio.fail_after(10), pytest.raises(InvalidRequest) as caught:
        await router.complete(ChatCall(prompt="hi", **fields))
    return caught.value


async def test_a_route_name_as_model_is_refused_pointing_at_route(
        router: Router, sim: RunningSimulator) -> None:
    error = await refusal(router, model="coding")

    assert error.field == "model"
    assert str(error) == "model: 'coding' is a route, not a model; pass it as route: coding"
    assert not sim.state.hits


async def test_a_route_name_in_fallbacks_is_refused_saying_fallbacks_take_provider_model(
        router: Router, sim: RunningSimulator) -> None:
    error = await refusal(router, model="p1/a", fallbacks=["p1/b", "coding"])

    assert error.field == "fallbacks[1]"
    assert str(error) == ("fallbacks[1]: 'coding' is a route; fallbacks take provider/model, "
                          "not routes (to use the route, pass it as route: coding)")
    assert not sim.state.hits


async def test_a_name_that_is_neither_route_nor_model_keeps_the_provider_list(
        router: Router) -> None:
    error = await refusal(router, model="cooking")

    assert str(error) == ("model: 'cooking' is not provider/model with a known provider, nor "
                          "a model a provider lists; providers are: p1")


async def test_the_tool_says_a_route_name_given_as_model_is_a_route(
        sim: RunningSimulator, tmp_path: Path) -> None:
    server = create_server(config_of(sim), home=tmp_path, env={}, keys={})
    async with Client(server) as client:
        result = await client.call_tool("chat_completion", {"prompt": "hi", "model": "coding"})

    assert result.is_error
    assert "'coding' is a route, not a model; pass it as route: coding" in \
        result.content[0].text  # type: ignore[union-attr]
