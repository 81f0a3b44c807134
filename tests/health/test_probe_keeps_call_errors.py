"""A probe that finds no list-models endpoint says nothing: the error calls met stays shown."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client

from mcp_router.config import parse_config
from mcp_router.health import HealthBook
from mcp_router.messages import Attempt
from mcp_router.probes import Prober
from mcp_router.server import create_server
from tests.fixtures.scripted import ScriptedAdapter, completion, status_error
from tests.health.support import CLOCK, at

pytestmark = pytest.mark.anyio

CONFIG = """\
providers:
  perplexity: {kind: openai, base_url: "https://pplx.test", stream: false}
routes:
  default: {targets: [{provider: perplexity, model: sonar}]}
retry: {attempts: 1}
"""


def perplexity(request: httpx.Request) -> httpx.Response:
    """No list-models endpoint (GET /models is a 404, as Perplexity's is); calls meet a 503."""
    if request.method == "GET" and request.url.path.endswith("/models"):
        return httpx.Response(404, json={"error": {"message": "Not Found"}})
    return httpx.Response(503, json={"error": {"message": "overloaded"}})


async def test_provider_health_keeps_the_call_error_after_a_probe_finds_no_list_endpoint(
        tmp_path: Path) -> None:
    server = create_server(parse_config(CONFIG, env={}), home=tmp_path, env={},
                           transport=httpx.MockTransport(perplexity))
    async with Client(server) as client:
        assert (await client.call_tool("chat_completion", {"prompt": "hi"})).is_error
        before = await client.call_tool("provider_health", {})
        after = await client.call_tool("provider_health", {"probe": True})
    assert before.structured_content is not None and after.structured_content is not None
    was, now = before.structured_content["providers"][0], after.structured_content["providers"][0]
    assert was["last_error"].startswith("HTTP 503")
    assert (now["last_error"], now["last_error_at"]) == (was["last_error"], was["last_error_at"])
    assert (now["last_probe"]["ok"], now["last_probe"]["status"]) == (False, 404)
    assert "the probe says nothing" in now["last_probe"]["error"]
    assert "probe:" not in after.content[0].text  # type: ignore[union-attr]


@pytest.mark.virtual_time
async def test_interval_probes_without_a_list_endpoint_leave_last_error_to_calls() -> None:
    health = HealthBook(CLOCK)
    adapter = ScriptedAdapter("p", [completion()], probe_script=[status_error("p", 404)])
    health.record([Attempt(provider="p", model="m", outcome="error", status=503,
                           error="HTTP 503: overloaded")])
    start = CLOCK.now()

    with anyio.move_on_after(150):
        await Prober({"p": adapter}, None, health, CLOCK).run_every(60)

    report = health.report("p", True)
    assert len(adapter.probes) == 3 and report.last_probe is not None
    assert report.last_probe.status == 404
    assert (report.last_error, report.last_error_at) == ("HTTP 503: overloaded", at(start))


@pytest.mark.parametrize("status", [401, 503])
async def test_a_probe_refused_or_failing_for_real_is_still_the_last_error(status: int) -> None:
    health = HealthBook(CLOCK)
    adapter = ScriptedAdapter("p", [completion()], probe_script=[status_error("p", status)])
    health.record([Attempt(provider="p", model="m", outcome="error", status=503,
                           error="HTTP 503: overloaded")])

    result = await Prober({"p": adapter}, None, health, CLOCK).probe("p")

    assert health.report("p", True).last_error == f"probe: {result.error}"
    assert str(status) in (result.error or "")
