"""Probes ask only list-models endpoints with the key, never for a completion."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from mcp_router.config import Kind, ProviderConfig
from mcp_router.errors import ProviderNotConfigured, ProviderStatusError
from mcp_router.health import HealthBook, ProbeResult
from mcp_router.messages import Adapter
from mcp_router.probes import Prober
from mcp_router.providers import make_provider
from mcp_router.routing.circuits import BreakerBoard
from tests.fixtures.scripted import HANG, ScriptedAdapter, completion, status_error
from tests.health.support import CLOCK, at
from tests.providers.fakes import KEY, FakeUpstream, json_response, sent_headers

pytestmark = pytest.mark.anyio

# kind, base_url, the probe's URL, the headers it must carry
WIRES: list[tuple[Kind, str, str, dict[str, str]]] = [
    ("openai", "https://openrouter.test/api/v1/", "https://openrouter.test/api/v1/models",
     {"authorization": f"Bearer {KEY}"}),
    ("anthropic", "https://anthropic.test", "https://anthropic.test/v1/models",
     {"x-api-key": KEY, "anthropic-version": "2023-06-01"}),
    ("gemini", "https://gemini.test/v1beta", "https://gemini.test/v1beta/models",
     {"x-goog-api-key": KEY}),
]


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[FakeUpstream, httpx.AsyncClient]]:
    upstream = FakeUpstream()
    upstream.answer(json_response({"data": [{"id": "some-model"}]}))
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream.handle)) as http:
        yield upstream, http


def adapter(kind: Kind, base_url: str, http: httpx.AsyncClient, *, name: str | None = None,
            env: dict[str, str] | None = None) -> Adapter:
    cfg = ProviderConfig(kind=kind, base_url=base_url, api_key_env="KEY")
    return make_provider(name or kind, cfg, http, KEY if env is None else env.get("KEY"))


@pytest.mark.parametrize(("kind", "base_url", "url", "headers"), WIRES, ids=[w[0] for w in WIRES])
async def test_a_probe_is_one_get_of_the_list_models_endpoint_with_the_key(
        kind: Kind, base_url: str, url: str, headers: dict[str, str],
        recorder: tuple[FakeUpstream, httpx.AsyncClient]) -> None:
    upstream, http = recorder

    await adapter(kind, base_url, http).probe()

    request = upstream.request
    assert (request.method, str(request.url), request.content) == ("GET", url, b"")
    assert sent_headers(request) == headers


@pytest.mark.parametrize(("kind", "base_url", "url", "headers"), WIRES, ids=[w[0] for w in WIRES])
async def test_a_refused_probe_raises_the_status_error_a_call_would(
        kind: Kind, base_url: str, url: str, headers: dict[str, str],
        recorder: tuple[FakeUpstream, httpx.AsyncClient]) -> None:
    upstream, http = recorder
    upstream.answer(json_response({"error": {"message": f"bad key {KEY}"}}, status=401))

    with pytest.raises(ProviderStatusError) as info:
        await adapter(kind, base_url, http).probe()

    assert (info.value.provider, info.value.model, info.value.status) == (kind, "models", 401)
    assert KEY not in str(info.value)


async def test_an_unconfigured_provider_is_not_probed(
        recorder: tuple[FakeUpstream, httpx.AsyncClient]) -> None:
    upstream, http = recorder

    with pytest.raises(ProviderNotConfigured):
        await adapter("openai", "https://x.test/v1", http, env={}).probe()

    assert upstream.requests == []


async def test_probing_every_provider_sends_only_metadata_gets_and_never_a_completion(
        recorder: tuple[FakeUpstream, httpx.AsyncClient]) -> None:
    upstream, http = recorder
    adapters = {kind: adapter(kind, base, http) for kind, base, _, _ in WIRES}
    adapters["unset"] = adapter("openai", "https://unset.test/v1", http, name="unset", env={})
    board = BreakerBoard(CLOCK)
    health = HealthBook(CLOCK, board)

    results = await Prober(adapters, board, health, CLOCK).probe_all()

    assert [(r.provider, r.ok) for r in results] == [
        ("openai", True), ("anthropic", True), ("gemini", True)]
    assert sorted((r.method, str(r.url)) for r in upstream.requests) == sorted(
        ("GET", url) for _, _, url, _ in WIRES)
    assert health.report("anthropic", True).last_probe == results[1]


@pytest.mark.virtual_time
async def test_a_probe_that_hangs_is_given_up_and_reported_as_a_timeout() -> None:
    adapter = ScriptedAdapter("a", [completion()], probe_script=[HANG])
    board = BreakerBoard(CLOCK)
    health = HealthBook(CLOCK, board)

    result = await Prober({"a": adapter}, board, health, CLOCK, timeout_s=5).probe("a")

    assert result == ProbeResult(provider="a", ok=False, at=at(5), latency_ms=5000.0,
                                 error="no answer within 5 s")
    report = health.report("a", True)
    assert (report.last_error, report.last_error_at) == ("probe: no answer within 5 s", at(5))
    assert report.state == "degraded"


@pytest.mark.virtual_time
async def test_probes_on_an_interval_run_at_start_and_then_every_interval() -> None:
    adapters = {"a": ScriptedAdapter("a", [completion()]),
                "b": ScriptedAdapter("b", [completion()], probe_script=[status_error("b", 503)]),
                "c": ScriptedAdapter("c", [completion()], configured=False)}
    prober = Prober(adapters, None, HealthBook(CLOCK), CLOCK)

    with anyio.move_on_after(150):
        await prober.run_every(60)

    assert adapters["a"].probes == adapters["b"].probes == [0, 60, 120]
    assert adapters["c"].probes == []
