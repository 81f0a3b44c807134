"""A 400 from a fallback still ends the call (the request must change), but the error lists every
attempt the call made before it, as AllTargetsFailed does, and never says no other target was
asked when one was. Router over real adapters and the simulated upstream."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.errors import ProviderStatusError
from mcp_router.messages import ChatCall
from mcp_router.router import Router
from mcp_router.simulator import RunningSimulator
from mcp_router.wiring import open_router

pytestmark = pytest.mark.anyio
CONFIG = """\
providers:
  oa: {{kind: openai, base_url: "{url}/v1"}}
  ds: {{kind: openai, base_url: "{url}/v1"}}
  nokey: {{kind: openai, base_url: "{url}/v1", api_key_env: SOME_UNSET_VAR}}
routes:
  default:
    targets:
      - {{provider: oa, model: primary+fail-503}}
      - {{provider: ds, model: refuses+fail-400}}
      - {{provider: oa, model: never-asked}}
  keyless_first:
    targets:
      - {{provider: nokey, model: keyless}}
      - {{provider: ds, model: refuses+fail-400}}
  lone:
    targets:
      - {{provider: ds, model: refuses+fail-400}}
default_route: default
retry: {{attempts: 3, backoff_initial_s: 0.001, backoff_max_s: 0.002}}
cache: {{enabled: false}}
"""
REFUSED = "Simulated HTTP 400 (refuses+fail-400)"
FAILED = "Simulated HTTP 503 (primary+fail-503)"


@pytest.fixture
async def router(sim: RunningSimulator, tmp_path: Path) -> AsyncIterator[Router]:
    config = parse_config(CONFIG.format(url=sim.url), env={})
    async with httpx.AsyncClient(timeout=10) as http:
        with open_router(config, http=http, keys={}, home=tmp_path, clock=LoopClock(),
                         rng=random.Random(0)) as built:
            yield built


async def refusal(router: Router, route: str) -> ProviderStatusError:
    with anyio.fail_after(10), pytest.raises(ProviderStatusError) as caught:
        await router.complete(ChatCall(prompt="hi", route=route))
    return caught.value


async def test_a_400_after_a_failing_primary_lists_every_attempt_and_asks_no_further_target(
        router: Router, sim: RunningSimulator) -> None:
    error = await refusal(router, "default")

    assert (error.status, error.provider, error.model) == (400, "ds", "refuses+fail-400")
    assert str(error) == (
        f"ds/refuses+fail-400: HTTP 400: {REFUSED} (the provider refused the request itself, "
        "so no further target was asked: change the request); attempts of this call:\n"
        + f"  - oa/primary+fail-503: error (HTTP 503: {FAILED})\n" * 3
        + f"  - ds/refuses+fail-400: error (HTTP 400: {REFUSED})")
    assert (sim.state.hits["primary+fail-503"], sim.state.hits["refuses+fail-400"],
            sim.state.hits["never-asked"]) == (3, 1, 0)


async def test_a_400_after_a_skipped_target_lists_the_skip_too(router: Router) -> None:
    error = await refusal(router, "keyless_first")

    assert str(error).endswith(
        "so no further target was asked: change the request); attempts of this call:\n"
        "  - nokey/keyless: skipped (no API key configured)\n"
        f"  - ds/refuses+fail-400: error (HTTP 400: {REFUSED})")


async def test_a_400_from_the_only_target_asked_keeps_its_one_line(router: Router) -> None:
    error = await refusal(router, "lone")

    assert str(error) == (f"ds/refuses+fail-400: HTTP 400: {REFUSED} (the provider refused "
                          "the request itself, so no other target was asked: change the "
                          "request)")
