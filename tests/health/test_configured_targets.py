"""provider_health knows every target the config names from start-up, and judges a provider by
all of them: one open target of several leaves it degraded, not open."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_router.config import Config, load_config, parse_config
from mcp_router.errors import ProviderError
from mcp_router.health import HealthBook
from mcp_router.messages import ChatRequest, Completion, TextFn
from mcp_router.routing.build import TreeBuilder, configured_targets
from mcp_router.routing.circuits import BreakerBoard
from mcp_router.routing.roster import KEEP_NAMED
from mcp_router.server import create_server
from tests.fixtures.scripted import ScriptedAdapter, completion, request, status_error
from tests.health.support import CLOCK, at
from tests.routing.support import call_for

pytestmark = pytest.mark.anyio
ORCHESTRA = Path(__file__).resolve().parents[2] / "configs" / "orchestra.yaml"
CONFIG = parse_config("""\
providers:
  cloud: {kind: openai, base_url: "http://127.0.0.1:9/v1", models: [listed, routed, other]}
  local: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
routes:
  default:
    targets:
      - {provider: cloud, model: routed}
      - {provider: local, model: routed}
retry: {attempts: 1}
""", env={})


class PartlyDown(ScriptedAdapter):
    """Answers every model but those of `down`, which get a 503."""

    def __init__(self, provider: str, down: tuple[str, ...]) -> None:
        super().__init__(provider, [completion()])
        self._down = {spec.partition("/")[2] for spec in down if spec.startswith(f"{provider}/")}

    async def send(self, request: ChatRequest, model: str,
                   on_text: TextFn | None = None) -> Completion:
        if model in self._down:
            self.calls.append((request, model))
            raise status_error(self.provider, 503, model=model)
        return await super().send(request, model, on_text)


def assembled(config: Config = CONFIG, *, keep: int = KEEP_NAMED,
              down: tuple[str, ...] = ()) -> tuple[TreeBuilder, HealthBook]:
    """The builder and health book as `wiring.open_router` assembles them; every model in
    `down` answers 503, the others answer."""
    board = BreakerBoard(CLOCK, keep=keep)
    adapters = {name: ScriptedAdapter(name, [completion()]) for name in config.providers}
    for spec in down:
        provider = spec.partition("/")[0]
        adapters[provider] = PartlyDown(provider, down)
    return TreeBuilder(config, adapters, CLOCK, random.Random(1), board), HealthBook(CLOCK, board)


async def ask(tree: TreeBuilder, health: HealthBook, spec: str, times: int = 1) -> None:
    """`times` calls naming `spec`, each recorded in the health book as the router does."""
    for _ in range(times):
        call = call_for(60)
        try:
            await tree.with_fallbacks(tree.model(spec), ()).complete(request(), call)
        except ProviderError:
            pass
        finally:
            health.record(call.attempts)


@pytest.mark.virtual_time
async def test_every_target_the_config_names_is_reported_as_unknown_before_any_call() -> None:
    _, health = assembled()

    cloud, local = health.report("cloud", True), health.report("local", True)

    assert [(t.target, t.state, t.circuit, t.requests) for t in cloud.targets] == [
        ("cloud/routed", "unknown", "closed", 0), ("cloud/listed", "unknown", "closed", 0),
        ("cloud/other", "unknown", "closed", 0)]
    assert [t.target for t in local.targets] == ["local/routed"]
    assert (cloud.state, local.state) == ("unknown", "unknown")


@pytest.mark.virtual_time
async def test_one_open_target_leaves_its_provider_degraded_and_all_open_make_it_open() -> None:
    tree, health = assembled(down=("cloud/listed", "cloud/routed", "cloud/other"))

    await ask(tree, health, "cloud/listed", times=5)  # five 503s in a row: its circuit opens

    report = health.report("cloud", True)
    assert (report.state, report.open_until) == ("degraded", at(30))
    assert report.reason is not None and report.reason.startswith("cloud/listed: circuit open")
    assert [t.state for t in report.targets] == ["unknown", "open", "unknown"]

    await ask(tree, health, "cloud/routed", times=5)
    assert health.report("cloud", True).state == "degraded"  # cloud/other is still untried
    await ask(tree, health, "cloud/other", times=5)
    assert health.report("cloud", True).state == "open"


@pytest.mark.virtual_time
async def test_the_configs_targets_stay_reported_however_many_models_callers_name() -> None:
    tree, health = assembled(keep=2)

    for i in range(10):
        await ask(tree, health, f"local/named-{i}")

    report = health.report("local", True)
    assert [t.target for t in report.targets] == [
        "local/routed", "local/named-8", "local/named-9"]
    assert report.targets[0].state == "unknown"
    assert tree.board.tracks("local/routed") and not tree.board.tracks("local/named-0")


@pytest.mark.virtual_time
async def test_start_up_with_orchestra_knows_each_configured_target_once_and_asks_nothing(
        ) -> None:
    config = load_config(ORCHESTRA)
    tree, health = assembled(config)

    known = [key for name in config.providers for key in tree.board.keys(name)]

    assert sorted(known) == sorted(configured_targets(config))
    assert [t.target for t in health.report("openrouter", True).targets] == [
        "openrouter/openai/gpt-3.5-turbo", "openrouter/openai/gpt-4o-mini",
        "openrouter/anthropic/claude-3.5-sonnet", "openrouter/deepseek/deepseek-chat"]
    assert health.report("openrouter", True).state == "unknown"


# demo.yaml's `default` and `degraded` routes, reduced.
SERVED = """\
providers:
  openrouter: {{kind: openai, base_url: "{url}/v1"}}
  deepseek: {{kind: openai, base_url: "{url}/v1"}}
routes:
  default:
    targets:
      - {{provider: openrouter, model: openai/gpt-3.5-turbo}}
      - {{provider: deepseek, model: deepseek-chat}}
  degraded:
    targets:
      - {{provider: openrouter, model: openai/gpt-3.5-turbo+fail-503}}
      - {{provider: deepseek, model: deepseek-chat}}
default_route: default
retry: {{attempts: 3, backoff_initial_s: 0.001, backoff_max_s: 0.002}}
cache: {{enabled: false}}
"""


async def openrouter_health(client: Client) -> dict[str, Any]:
    result = await client.call_tool("provider_health", {"provider": "openrouter"})
    assert result.structured_content is not None
    [provider] = result.structured_content["providers"]
    return dict(provider)


async def test_provider_health_lists_untried_targets_and_one_open_target_does_not_open_the_provider(
        sim: Any, tmp_path: Path) -> None:
    server = create_server(parse_config(SERVED.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    async with Client(server) as client:
        fresh = await openrouter_health(client)
        for _ in range(2):  # six 503s: the +fail-503 target's circuit opens
            await client.call_tool("chat_completion", {"prompt": "hi", "route": "degraded"})
        after = await openrouter_health(client)
        answered = await client.call_tool("chat_completion", {"prompt": "hi"})

    assert [(t["target"], t["state"]) for t in fresh["targets"]] == [
        ("openrouter/openai/gpt-3.5-turbo", "unknown"),
        ("openrouter/openai/gpt-3.5-turbo+fail-503", "unknown")]
    assert [(t["target"], t["state"]) for t in after["targets"]] == [
        ("openrouter/openai/gpt-3.5-turbo", "unknown"),
        ("openrouter/openai/gpt-3.5-turbo+fail-503", "open")]
    assert after["state"] == "degraded"
    assert sim.state.hits["openai/gpt-3.5-turbo+fail-503"] == 6
    assert answered.structured_content is not None
    assert answered.structured_content["provider"] == "openrouter"
