"""`provider/model` is read with the first segment as the provider, but a refused spec that another
provider lists whole (orchestra's openrouter lists `anthropic/claude-3.5-sonnet`) says which
reading exists: "did you mean openrouter/anthropic/claude-3.5-sonnet?"."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_router.clock import LoopClock
from mcp_router.config import Config, load_config, parse_config
from mcp_router.errors import InvalidRequest
from mcp_router.routing.build import TreeBuilder
from mcp_router.server import create_server
from tests.fixtures.scripted import ScriptedAdapter, completion

pytestmark = pytest.mark.anyio
ORCHESTRA = Path(__file__).resolve().parents[2] / "configs" / "orchestra.yaml"
ANTHROPICS = "claude-3-haiku-20240307, claude-3-5-sonnet-20241022, claude-3-opus-20240229"


def orchestra_builder(keyed: tuple[str, ...] = ("openrouter",)) -> TreeBuilder:
    config = load_config(ORCHESTRA)
    adapters = {name: ScriptedAdapter(name, [completion()], configured=name in keyed)
                for name in config.providers}
    return TreeBuilder(config, adapters, LoopClock(), random.Random(1))


@pytest.mark.parametrize("field", ["model", "fallbacks[0]"])
def test_a_model_another_provider_lists_whole_is_refused_with_that_reading(field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        orchestra_builder().check("anthropic/claude-3.5-sonnet", field)

    assert str(info.value) == (
        f"{field}: anthropic has no model 'claude-3.5-sonnet'; its models are: {ANTHROPICS}; "
        "did you mean openrouter/anthropic/claude-3.5-sonnet?")


def test_a_model_no_other_provider_lists_is_refused_as_before() -> None:
    with pytest.raises(InvalidRequest) as info:
        orchestra_builder().check("anthropic/claude-9")

    assert str(info.value) == f"model: anthropic has no model 'claude-9'; its models are: " \
                              f"{ANTHROPICS}"


def test_every_provider_listing_the_spec_is_offered() -> None:
    config = parse_config("""\
providers:
  a: {kind: openai, base_url: "http://127.0.0.1:9/v1", models: [m]}
  gw1: {kind: openai, base_url: "http://127.0.0.1:9/v1", models: [a/x]}
  gw2: {kind: openai, base_url: "http://127.0.0.1:9/v1", models: [a/x, other]}
routes:
  default: {targets: [{provider: a, model: m}]}
""", env={})
    adapters = {name: ScriptedAdapter(name, [completion()]) for name in config.providers}

    with pytest.raises(InvalidRequest) as info:
        TreeBuilder(config, adapters, LoopClock(), random.Random(1)).check("a/x")

    assert str(info.value).endswith("; did you mean gw1/a/x or gw2/a/x?")


def orchestra_at(url: str) -> Config:
    return parse_config(re.sub(r"base_url: https://\S+", f"base_url: {url}/v1",
                               ORCHESTRA.read_text()), env={})


async def refusal(config: Config, home: Path, env: dict[str, str], **arguments: Any) -> str:
    async with Client(create_server(config, home=home, env=env)) as client:
        result = await client.call_tool("chat_completion", {"prompt": "hi", **arguments})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


async def test_the_server_offers_the_gateways_reading_of_a_model_it_lists(
        sim: Any, tmp_path: Path) -> None:
    text = await refusal(orchestra_at(sim.url), tmp_path, {"OPENROUTER_API_KEY": "sk-test"},
                         model="anthropic/claude-3.5-sonnet")

    assert text.endswith("did you mean openrouter/anthropic/claude-3.5-sonnet?")
    assert sim.state.stats()["hits"] == {}


async def test_a_keyless_model_a_keyed_gateway_lists_is_refused_with_the_gateways_reading(
        sim: Any, tmp_path: Path) -> None:
    text = await refusal(orchestra_at(sim.url), tmp_path, {"OPENROUTER_API_KEY": "sk-test"},
                         model="openai/gpt-4o-mini")

    assert text.startswith("Error executing tool chat_completion: no provider this call may "
                           "use has an API key: set OPENAI_API_KEY in the server's environment")
    assert ("then restart it; did you mean openrouter/openai/gpt-4o-mini? (listed by a "
            "provider that has its key); attempts:\n") in text
    assert "  - openai/gpt-4o-mini: skipped (no API key configured)" in text
    assert sim.state.stats()["hits"] == {}


async def test_a_gateway_without_its_key_is_not_offered_for_a_keyless_model(
        sim: Any, tmp_path: Path) -> None:
    text = await refusal(orchestra_at(sim.url), tmp_path, {}, model="openai/gpt-4o-mini")

    assert "then restart it:\n" in text
    assert "did you mean" not in text
