"""Probes ask only list-models endpoints with the key, never for a completion."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from mcp_router.config import Kind, ProviderConfig
from mcp_router.errors import ProviderNotConfigured, ProviderStatusError
from mcp_router.health import HealthBook, ProbeResult
from mcp_router.messages import Adapter, Attempt
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
    ("anthropic", "https://anthropic.test", "https://anthropic.test/v1/models?limit=1000",
     {"x-api-key": KEY, "anthropic-version": "2023-06-01"}),
    ("gemini", "https://gemini.test/v1beta", "https://gemini.test/v1beta/models?pageSize=1000",
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


def openrouter_with_a_revoked_key(request: httpx.Request) -> httpx.Response:
    """OpenRouter's list is a public catalogue, answered whatever the key; /key checks it."""
    if request.url.path == "/api/v1/models":
        return json_response({"data": [{"id": "openai/gpt-4o-mini"}]})
    return json_response({"error": {"message": "User not found.", "code": 401}}, status=401)


async def test_an_openrouter_probe_checks_the_key_before_reading_the_public_model_list(
        recorder: tuple[FakeUpstream, httpx.AsyncClient]) -> None:
    upstream, http = recorder

    listed = await adapter("openai", "https://openrouter.ai/api/v1", http).probe()

    assert [(r.method, str(r.url), sent_headers(r)) for r in upstream.requests] == [
        ("GET", url, {"authorization": f"Bearer {KEY}"}) for url in (
            "https://openrouter.ai/api/v1/key", "https://openrouter.ai/api/v1/models")]
    assert listed is not None and set(listed.ids) == {"some-model"}  # the list is still read


async def test_a_stand_in_for_openrouter_on_another_host_is_probed_at_its_list_only(
        recorder: tuple[FakeUpstream, httpx.AsyncClient]) -> None:
    upstream, http = recorder  # as configs/demo.yaml points "openrouter" at the simulator

    await adapter("openai", "http://127.0.0.1:8765/v1", http, name="openrouter").probe()

    assert str(upstream.request.url) == "http://127.0.0.1:8765/v1/models"


async def test_a_probe_does_not_vouch_for_an_openrouter_key_its_calls_were_refused_with(
        recorder: tuple[FakeUpstream, httpx.AsyncClient]) -> None:
    upstream, http = recorder
    upstream.answer(openrouter_with_a_revoked_key)
    board = BreakerBoard(CLOCK)
    key = "openrouter/openai/gpt-4o-mini"
    board.pin([key])
    board.settle(key, board.admit(key), [Attempt(  # a call's 401 marks the provider
        provider="openrouter", model="openai/gpt-4o-mini", outcome="error", status=401,
        error="HTTP 401: User not found.")])
    health = HealthBook(CLOCK, board)
    openrouter = adapter("openai", "https://openrouter.ai/api/v1", http, name="openrouter")

    result = await Prober({"openrouter": openrouter}, board, health, CLOCK).probe("openrouter")

    assert (result.ok, result.status, result.error) == (False, 401, "HTTP 401: User not found.")
    assert board.circuit(key).state == "misconfigured"
    assert health.report("openrouter", True).state != "healthy"
    assert [r.url.path for r in upstream.requests] == ["/api/v1/key"]


# kind, what its list-models endpoint answered, the models read, whether that is the whole list
LISTS: list[tuple[Kind, object, set[str] | None, bool]] = [
    ("openai", {"object": "list", "data": [{"id": "gpt-4o"}, {"id": "openai/gpt-4o-mini"}]},
     {"gpt-4o", "openai/gpt-4o-mini"}, True),
    ("openai", [{"id": "meta-llama/Llama-3.3-70B-Instruct-Turbo", "type": "chat"}],  # Together
     {"meta-llama/Llama-3.3-70B-Instruct-Turbo"}, True),
    ("openai", {"models": "not the shape"}, None, True),
    ("anthropic", {"data": [{"id": "claude-sonnet-4-5"}], "has_more": False},
     {"claude-sonnet-4-5"}, True),
    ("anthropic", {"data": [{"id": "claude-sonnet-4-5"}], "has_more": True},
     {"claude-sonnet-4-5"}, False),
    ("gemini", {"models": [{"name": "models/gemini-2.5-pro"}]}, {"gemini-2.5-pro"}, True),
    ("gemini", {"models": [{"name": "models/gemini-2.5-pro"}], "nextPageToken": "p2"},
     {"gemini-2.5-pro"}, False),
]


@pytest.mark.parametrize(("kind", "body", "ids", "complete"), LISTS)
async def test_a_probe_reads_the_models_each_wire_lists(
        kind: Kind, body: object, ids: set[str] | None, complete: bool,
        recorder: tuple[FakeUpstream, httpx.AsyncClient]) -> None:
    upstream, http = recorder
    upstream.answer(json_response(body))

    listed = await adapter(kind, "https://x.test/v1", http).probe()

    assert (None if listed is None else (set(listed.ids), listed.complete)) == (
        None if ids is None else (ids, complete))


@pytest.mark.parametrize(("body", "unlisted"), [
    ({"data": [{"id": "claude-sonnet-4-5"}], "has_more": False}, ["claude-3-opus-20240229"]),
    ({"data": [{"id": "claude-sonnet-4-5"}], "has_more": True}, []),  # a page proves nothing
])
async def test_a_probe_reports_the_routes_models_a_whole_list_does_not_name(
        body: object, unlisted: list[str],
        recorder: tuple[FakeUpstream, httpx.AsyncClient]) -> None:
    upstream, http = recorder
    upstream.answer(json_response(body))
    board = BreakerBoard(CLOCK)
    for model in ("claude-sonnet-4-5", "claude-3-opus-20240229"):
        board.register(f"anthropic/{model}")

    result = await Prober({"anthropic": adapter("anthropic", "https://a.test", http)}, board,
                          HealthBook(CLOCK, board), CLOCK).probe("anthropic")

    assert (result.ok, result.models_listed, result.unlisted) == (True, 1, unlisted)


async def test_a_provider_without_a_list_models_endpoint_is_unknown_until_calls_tell(
        recorder: tuple[FakeUpstream, httpx.AsyncClient]) -> None:
    upstream, http = recorder  # Perplexity answers GET /models with 404
    upstream.answer(json_response({"error": {"message": "Not Found"}}, status=404))
    board = BreakerBoard(CLOCK)
    board.register("perplexity/sonar")
    health = HealthBook(CLOCK, board)

    result = await Prober({"perplexity": adapter("openai", "https://pplx.test", http,
                                                 name="perplexity")},
                          board, health, CLOCK).probe("perplexity")

    report = health.report("perplexity", True)
    assert (result.ok, result.status, report.state) == (False, 404, "unknown")
    assert report.reason == ("HTTP 404: Not Found: no list-models endpoint here, so the probe says "
                             "nothing; calls will tell (if they fail too, check base_url)")
    assert board.circuit("perplexity/sonar").state == "closed"


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
