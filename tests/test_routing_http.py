"""The fallback decision table end to end: Router over real adapters and the simulator over HTTP.

Each test builds the router the way the server's lifespan does and drives it through
`Router.complete`; faults are chosen by model-name knobs, and the simulator's hit counters
say how often each model was really asked.
"""

from __future__ import annotations

import random
import socket
import textwrap
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import Config, parse_config
from mcp_router.errors import AllTargetsFailed, InvalidRequest, ProviderStatusError
from mcp_router.messages import Attempt, ChatCall, ChatResult, Message, Usage
from mcp_router.router import Router
from mcp_router.simulator import RunningSimulator
from mcp_router.wiring import open_router

pytestmark = pytest.mark.anyio

PROMPT = "Name three prime numbers greater than ten, please."
STREAMING = ["oa", "an", "ge"]
JSON_ONLY = ["oa_json", "an_json", "ge_json"]
EVERY_WIRE = STREAMING + JSON_ONLY
SHORT_TIMEOUT = {"oa": "oa_short", "an": "an_short", "ge": "ge_short"}


def config_text(sim: RunningSimulator, dead_port: int) -> str:
    """Each wire kind streamed and as JSON, short-timeout twins, keyless, dead and priced ones."""
    urls = sim.base_urls
    return textwrap.dedent(f"""\
        providers:
          oa: {{kind: openai, base_url: "{urls['openai']}"}}
          an: {{kind: anthropic, base_url: "{urls['anthropic']}"}}
          ge: {{kind: gemini, base_url: "{urls['gemini']}", stream: true}}
          oa_json: {{kind: openai, base_url: "{urls['openai']}", stream: false}}
          an_json: {{kind: anthropic, base_url: "{urls['anthropic']}", stream: false}}
          ge_json: {{kind: gemini, base_url: "{urls['gemini']}", stream: false}}
          oa_short: {{kind: openai, base_url: "{urls['openai']}", timeout_s: 0.3}}
          an_short: {{kind: anthropic, base_url: "{urls['anthropic']}", timeout_s: 0.3}}
          ge_short: {{kind: gemini, base_url: "{urls['gemini']}", timeout_s: 0.3}}
          deepseek: {{kind: openai, base_url: "{urls['openai']}"}}
          listed: {{kind: gemini, base_url: "{urls['gemini']}",
                    models: [gemini-2.0-flash, gemini-2.5-pro]}}
          nokey: {{kind: openai, base_url: "{urls['openai']}", api_key_env: SOME_UNSET_VAR}}
          dead: {{kind: openai, base_url: "http://127.0.0.1:{dead_port}/v1"}}
        routes:
          default:
            targets:
              - {{provider: oa, model: route-default}}
          chain:
            targets:
              - {{provider: oa, model: first+fail-500}}
              - {{route: backup}}
          backup:
            targets:
              - {{provider: an, model: second+fail-503}}
              - {{provider: ge, model: third}}
          strict:
            targets:
              - {{route: refuses}}
              - {{provider: ge, model: never-asked}}
          refuses:
            targets:
              - {{provider: an, model: inner+fail-400}}
              - {{provider: oa, model: inner-next}}
        default_route: default
        retry: {{attempts: 3, backoff_initial_s: 0.01, backoff_max_s: 0.05}}
        timeouts: {{request_s: 10, connect_s: 2, deadline_s: 10}}
        """)


@pytest.fixture(scope="module")
def dead_port() -> int:
    """A loopback port nothing listens on: bound for a moment to pick it, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def config(simulator: RunningSimulator, dead_port: int) -> Config:
    """Parsed once per module: configs are frozen, so sharing one cannot leak state."""
    return parse_config(config_text(simulator, dead_port), env={})


@pytest.fixture
async def router(sim: RunningSimulator, config: Config, tmp_path: Path
                 ) -> AsyncIterator[Router]:
    """The router as the server's lifespan assembles it (`open_router`), with a seeded rng."""
    timeout = httpx.Timeout(config.timeouts.request_s, connect=config.timeouts.connect_s)
    async with httpx.AsyncClient(timeout=timeout) as http:
        with open_router(config, http=http, keys={}, home=tmp_path / "home", clock=LoopClock(),
                         rng=random.Random(0)) as router:
            yield router


async def ask(router: Router, **fields: Any) -> ChatResult:
    """One call with PROMPT unless told otherwise, bounded so a regression cannot hang the run."""
    if "messages" not in fields:
        fields.setdefault("prompt", PROMPT)
    with anyio.fail_after(10):
        return await router.complete(ChatCall(**fields))


def tried(attempts: list[Attempt]) -> list[tuple[str, str, str, int | None]]:
    return [(a.provider, a.model, a.outcome, a.status) for a in attempts]


def answer_of(model: str, prompt: str = PROMPT) -> str:
    return f"Simulated answer from {model}: {prompt}"


# --- 429 and 5xx: retried up to retry.attempts, then the next target -------------------------

RETRIED_STATUS = ["fail-429+retry-after-0", "fail-500", "fail-502", "fail-503", "fail-504",
                  "fail-529"]


@pytest.mark.parametrize("knob", RETRIED_STATUS)
@pytest.mark.parametrize("provider", STREAMING)
async def test_transient_status_is_retried_three_times_then_the_next_target_answers(
        router: Router, sim: RunningSimulator, provider: str, knob: str) -> None:
    primary = f"primary+{knob}"
    status = int(knob.split("+")[0].removeprefix("fail-"))

    result = await ask(router, model=f"{provider}/{primary}", fallbacks=["oa/backup"])

    assert tried(result.attempts) == [(provider, primary, "error", status)] * 3 + [
        ("oa", "backup", "ok", None)]
    assert (sim.state.hits[primary], sim.state.hits["backup"]) == (3, 1)
    assert (result.provider, result.model, result.content) == ("oa", "backup",
                                                               answer_of("backup"))


@pytest.mark.parametrize("provider", STREAMING)
async def test_two_503s_then_success_is_answered_by_the_same_target_without_fallback(
        router: Router, sim: RunningSimulator, provider: str) -> None:
    primary = "primary+fail-503x2"

    result = await ask(router, model=f"{provider}/{primary}", fallbacks=["oa/backup"])

    assert tried(result.attempts) == [(provider, primary, "error", 503)] * 2 + [
        (provider, primary, "ok", None)]
    assert (sim.state.hits[primary], sim.state.hits["backup"]) == (3, 0)
    assert (result.provider, result.content) == (provider, answer_of(primary))


async def test_a_retry_after_over_the_backoff_cap_moves_on_without_retrying(
        router: Router, sim: RunningSimulator) -> None:
    # A bare 429 from the simulator carries Retry-After: 1, twenty times backoff_max_s.
    result = await ask(router, model="an/primary+fail-429", fallbacks=["ge/backup"])

    assert tried(result.attempts) == [("an", "primary+fail-429", "error", 429),
                                      ("ge", "backup", "ok", None)]
    error = result.attempts[0].error
    assert error is not None and "Retry-After 1 s is over the 0.05 s cap" in error
    assert (sim.state.hits["primary+fail-429"], sim.state.hits["backup"]) == (1, 1)


async def test_a_target_that_said_retry_after_is_not_asked_again_before_then(
        router: Router, sim: RunningSimulator) -> None:
    primary = "primary+fail-429+retry-after-30"
    await ask(router, model=f"an/{primary}", fallbacks=["ge/backup"])

    again = await ask(router, model=f"an/{primary}", fallbacks=["ge/backup"], cache="skip")

    assert tried(again.attempts) == [("an", primary, "skipped", None), ("ge", "backup", "ok", None)]
    reason = again.attempts[0].error
    assert reason is not None and reason.startswith("circuit open until ")
    assert reason.endswith(" (HTTP 429 with Retry-After 30 s)")
    assert sim.state.hits[primary] == 1  # the provider asked for 30 s of quiet


# --- timeouts and connection errors: retried within attempts, then the next target -----------

@pytest.mark.parametrize("kind", STREAMING)
async def test_a_hanging_target_times_out_three_times_then_the_next_target_answers(
        router: Router, sim: RunningSimulator, kind: str) -> None:
    provider = SHORT_TIMEOUT[kind]

    result = await ask(router, model=f"{provider}/stuck+hang", fallbacks=["oa/backup"])

    assert tried(result.attempts) == [(provider, "stuck+hang", "error", None)] * 3 + [
        ("oa", "backup", "ok", None)]
    assert all("no answer within 0.3 s" in (a.error or "") for a in result.attempts[:3])
    assert (sim.state.hits["stuck+hang"], sim.state.hits["backup"]) == (3, 1)


async def test_a_refused_connection_is_retried_three_times_then_the_next_target_answers(
        router: Router, sim: RunningSimulator) -> None:
    result = await ask(router, model="dead/anything", fallbacks=["ge/backup"])

    assert tried(result.attempts) == [("dead", "anything", "error", None)] * 3 + [
        ("ge", "backup", "ok", None)]
    assert all("cannot reach upstream" in (a.error or "") for a in result.attempts[:3])
    assert sim.state.hits["backup"] == 1


# --- 408, malformed body, cut stream: retried once, then the next target ---------------------

@pytest.mark.parametrize("provider", STREAMING)
async def test_a_408_is_retried_once_then_the_next_target_answers(
        router: Router, sim: RunningSimulator, provider: str) -> None:
    result = await ask(router, model=f"{provider}/primary+fail-408", fallbacks=["oa/backup"])

    assert tried(result.attempts) == [(provider, "primary+fail-408", "error", 408)] * 2 + [
        ("oa", "backup", "ok", None)]
    assert (sim.state.hits["primary+fail-408"], sim.state.hits["backup"]) == (2, 1)


@pytest.mark.parametrize("knob", ["malformed", "cut"])
@pytest.mark.parametrize("provider", EVERY_WIRE)
async def test_a_malformed_or_cut_answer_is_retried_once_then_the_next_target_answers(
        router: Router, sim: RunningSimulator, provider: str, knob: str) -> None:
    primary = f"primary+{knob}"

    result = await ask(router, model=f"{provider}/{primary}", fallbacks=["oa/backup"])

    assert tried(result.attempts) == [(provider, primary, "error", None)] * 2 + [
        ("oa", "backup", "ok", None)]
    assert (sim.state.hits[primary], sim.state.hits["backup"]) == (2, 1)


# --- 400, 422: the request is wrong, so no retry and no fallback -----------------------------

@pytest.mark.parametrize("status", [400, 422])
@pytest.mark.parametrize("provider", STREAMING)
async def test_a_request_the_upstream_calls_wrong_is_raised_without_retry_or_fallback(
        router: Router, sim: RunningSimulator, provider: str, status: int) -> None:
    primary = f"primary+fail-{status}"

    with pytest.raises(ProviderStatusError) as caught:
        await ask(router, model=f"{provider}/{primary}", fallbacks=["oa/backup"])

    assert (caught.value.status, caught.value.provider, caught.value.model) == (
        status, provider, primary)
    assert (sim.state.hits[primary], sim.state.hits["backup"]) == (1, 0)


async def test_a_400_inside_a_nested_route_also_ends_the_outer_route(
        router: Router, sim: RunningSimulator) -> None:
    with pytest.raises(ProviderStatusError) as caught:
        await ask(router, route="strict")

    assert (caught.value.status, caught.value.provider) == (400, "an")
    assert sim.state.hits["inner+fail-400"] == 1
    assert (sim.state.hits["inner-next"], sim.state.hits["never-asked"]) == (0, 0)


# --- 401, 403, 404: not retried, the next target is asked ------------------------------------

@pytest.mark.parametrize("knob", ["fail-401", "fail-403", "grok-beta"])
@pytest.mark.parametrize("provider", STREAMING)
async def test_a_key_or_model_the_upstream_refuses_is_not_retried_and_the_next_target_answers(
        router: Router, sim: RunningSimulator, provider: str, knob: str) -> None:
    primary = f"primary+{knob}"
    status = 404 if knob == "grok-beta" else int(knob.removeprefix("fail-"))
    other = "an" if provider == "oa" else "oa"  # a 401 marks the whole provider

    result = await ask(router, model=f"{provider}/{primary}", fallbacks=[f"{other}/backup"])

    assert tried(result.attempts) == [(provider, primary, "error", status),
                                      (other, "backup", "ok", None)]
    assert (sim.state.hits[primary], sim.state.hits["backup"]) == (1, 1)


async def test_the_retired_grok_beta_model_falls_through_to_the_next_target(
        router: Router, sim: RunningSimulator) -> None:
    result = await ask(router, model="oa/grok-beta", fallbacks=["an/backup"])

    assert tried(result.attempts) == [("oa", "grok-beta", "error", 404),
                                      ("an", "backup", "ok", None)]
    assert sim.state.hits["grok-beta"] == 1


# --- unconfigured providers, all-failed, explicit fallbacks, nested routes -------------------

async def test_a_provider_without_its_key_is_skipped_unasked_and_the_next_target_answers(
        router: Router, sim: RunningSimulator) -> None:
    result = await ask(router, model="nokey/keyless", fallbacks=["ge/backup"])

    assert tried(result.attempts) == [("nokey", "keyless", "skipped", None),
                                      ("ge", "backup", "ok", None)]
    assert result.attempts[0].error == "no API key configured"
    assert (sim.state.hits["keyless"], sim.state.hits["backup"]) == (0, 1)


async def test_when_every_target_fails_all_targets_failed_lists_every_attempt_and_why(
        router: Router, sim: RunningSimulator) -> None:
    with pytest.raises(AllTargetsFailed) as caught:
        await ask(router, model="oa/one+fail-500",
                  fallbacks=["nokey/two", "an/three+fail-401", "ge/four+malformed"])

    failed = caught.value
    assert tried(failed.attempts) == (
        [("oa", "one+fail-500", "error", 500)] * 3
        + [("nokey", "two", "skipped", None), ("an", "three+fail-401", "error", 401)]
        + [("ge", "four+malformed", "error", None)] * 2)
    assert all(a.error for a in failed.attempts)
    for label in ("oa/one+fail-500", "nokey/two", "an/three+fail-401", "ge/four+malformed"):
        assert label in str(failed)
    assert dict(sim.state.hits) == {"one+fail-500": 3, "three+fail-401": 1,
                                    "four+malformed": 2}


async def test_explicit_fallbacks_are_asked_in_the_order_given(
        router: Router, sim: RunningSimulator) -> None:
    result = await ask(router, model="ge/first+fail-403",
                       fallbacks=["an/second+grok-beta", "oa_json/third"])

    assert tried(result.attempts) == [("ge", "first+fail-403", "error", 403),
                                      ("an", "second+grok-beta", "error", 404),
                                      ("oa_json", "third", "ok", None)]
    assert (result.provider, result.model, result.route) == ("oa_json", "third", None)


async def test_a_route_whose_target_is_another_route_falls_through_into_it(
        router: Router, sim: RunningSimulator) -> None:
    result = await ask(router, route="chain")

    assert tried(result.attempts) == ([("oa", "first+fail-500", "error", 500)] * 3
                                      + [("an", "second+fail-503", "error", 503)] * 3
                                      + [("ge", "third", "ok", None)])
    assert (result.provider, result.model, result.route) == ("ge", "third", "chain")
    assert dict(sim.state.hits) == {"first+fail-500": 3, "second+fail-503": 3, "third": 1}


async def test_a_call_without_route_or_model_takes_the_default_route_then_its_fallbacks(
        router: Router, sim: RunningSimulator) -> None:
    result = await ask(router, fallbacks=["an/extra"])

    assert tried(result.attempts) == [("oa", "route-default", "ok", None)]
    assert (result.route, sim.state.hits["extra"]) == ("default", 0)


# --- the overall deadline, on a real clock ----------------------------------------------------

async def test_a_hanging_primary_gets_half_the_deadline_and_the_next_target_answers_in_time(
        router: Router, sim: RunningSimulator) -> None:
    started = time.monotonic()

    result = await ask(router, model="oa/stuck+hang", fallbacks=["an/quick"], timeout_s=1.0)

    elapsed = time.monotonic() - started
    assert tried(result.attempts) == [("oa", "stuck+hang", "error", None),
                                      ("an", "quick", "ok", None)]
    assert 0.45 <= elapsed < 1.0
    assert 0.45 <= result.attempts[0].latency_ms / 1000 < 0.75
    assert (sim.state.hits["stuck+hang"], sim.state.hits["quick"]) == (1, 1)


# --- bad input: refused before any upstream is asked -----------------------------------------

async def test_an_unknown_route_is_refused_with_the_valid_route_names(
        router: Router, sim: RunningSimulator) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await ask(router, route="nope")

    assert caught.value.field == "route"
    assert "'nope'" in str(caught.value)
    assert "default, chain, backup, strict, refuses" in str(caught.value)
    assert not sim.state.hits


async def test_an_unknown_provider_is_refused_with_the_valid_provider_names(
        router: Router, sim: RunningSimulator) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await ask(router, model="mystery/model-x")

    assert caught.value.field == "model"
    assert "providers are: oa, an, ge, oa_json" in str(caught.value)
    assert not sim.state.hits


async def test_a_model_outside_a_providers_list_is_refused_with_its_models(
        router: Router, sim: RunningSimulator) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await ask(router, model="listed/gemini-9-ultra")

    assert caught.value.field == "model"
    assert "its models are: gemini-2.0-flash, gemini-2.5-pro" in str(caught.value)
    assert not sim.state.hits


async def test_an_unknown_fallback_is_refused_naming_its_position(
        router: Router, sim: RunningSimulator) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await ask(router, model="oa/fine", fallbacks=["an/ok", "ghost/model"])

    assert caught.value.field == "fallbacks[1]"
    assert not sim.state.hits


@pytest.mark.parametrize("fields", [
    {"prompt": PROMPT, "messages": (Message(role="user", content=PROMPT),)},
    {"prompt": None},
], ids=["both", "neither"])
async def test_exactly_one_of_messages_and_prompt_is_required(
        router: Router, sim: RunningSimulator, fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await ask(router, model="oa/fine", **fields)

    assert caught.value.field == "messages"
    assert "exactly one" in str(caught.value)
    assert not sim.state.hits


async def test_an_empty_message_list_is_refused(router: Router, sim: RunningSimulator) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await ask(router, model="oa/fine", messages=())

    assert caught.value.field == "messages"
    assert "at least one message" in str(caught.value)
    assert not sim.state.hits


async def test_route_and_model_together_are_refused(
        router: Router, sim: RunningSimulator) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await ask(router, route="default", model="oa/fine")

    assert caught.value.field == "route"
    assert "not both" in str(caught.value)
    assert not sim.state.hits


# --- usage, cost and the ledger ---------------------------------------------------------------

@pytest.mark.parametrize("provider", ["oa", "oa_json", "an", "ge"])
async def test_cached_input_tokens_reported_by_the_upstream_reach_the_result(
        router: Router, provider: str) -> None:
    result = await ask(router, model=f"{provider}/model+cached-5")

    assert result.usage.cached_input_tokens == 5
    assert result.usage.input_tokens == len(PROMPT) // 4


async def test_a_priced_model_costs_a_positive_decimal_and_is_in_the_ledger(
        router: Router) -> None:
    result = await ask(router, model="deepseek/deepseek-chat+cached-5", metadata={"team": "qa"})

    assert isinstance(result.cost_usd, Decimal) and result.cost_usd > 0
    assert result.cost_note is None
    rows = [r for r in router.spend.ledger.recent() if r.trace_id == result.trace_id]
    assert [(r.provider, r.model, r.outcome) for r in rows] == [
        ("deepseek", "deepseek-chat+cached-5", "ok")]
    assert (rows[0].cost_usd, rows[0].usage, dict(rows[0].metadata)) == (
        result.cost_usd, result.usage, {"team": "qa"})


async def test_an_unpriced_model_has_no_cost_and_a_note_saying_why(router: Router) -> None:
    result = await ask(router, model="oa/mystery-model")

    assert result.cost_usd is None
    assert result.cost_note is not None and "no price for oa/mystery-model" in result.cost_note
    rows = [r for r in router.spend.ledger.recent() if r.trace_id == result.trace_id]
    assert [(r.provider, r.outcome, r.cost_usd) for r in rows] == [("oa", "ok", None)]


async def test_the_ledger_keeps_the_answer_and_the_failed_tries_that_may_have_been_billed(
        router: Router) -> None:
    result = await ask(router, model="deepseek/deepseek-chat+cut",
                       fallbacks=["deepseek/deepseek-chat"])

    rows = [r for r in router.spend.ledger.recent() if r.trace_id == result.trace_id]
    assert [(r.model, r.outcome) for r in reversed(rows)] == [
        ("deepseek-chat+cut", "error"), ("deepseek-chat+cut", "error"), ("deepseek-chat", "ok")]
    # the text streamed before each cut was generated and billed: charged at an estimate
    for cut in rows[1:]:
        assert cut.usage.output_tokens > 0 and cut.cost_usd is not None and cut.cost_usd > 0
    assert result.cost_usd == sum(r.cost_usd or 0 for r in rows)


async def test_an_answer_without_a_usage_report_is_charged_at_an_estimate_never_zero(
        router: Router) -> None:
    # An OpenAI-compatible server that ignores stream_options sends no usage at all.
    result = await ask(router, model="deepseek/deepseek-chat+no-usage")

    assert result.content == answer_of("deepseek-chat+no-usage")
    assert isinstance(result.cost_usd, Decimal) and result.cost_usd > 0
    assert result.cost_note == (
        "estimated: deepseek/deepseek-chat+no-usage sent no usage report, so the cost is for "
        "the request's input and the answer, counted high (a token per 3 ASCII characters, up "
        "to 7/3 per other character)")
    (row,) = [r for r in router.spend.ledger.recent() if r.trace_id == result.trace_id]
    assert (row.outcome, row.cost_usd, row.estimated) == ("ok", result.cost_usd, True)
    assert result.content.isascii() and row.usage.output_tokens == -(-len(result.content) // 3)
    assert result.usage == row.usage != Usage()  # the tokens charged, as the ledger has them
    alerts = router.spend.ledger.report("today", "model", router.config.budgets).alerts
    assert ("1 answer(s) from deepseek/deepseek-chat+no-usage came without a usage report: each "
            "is charged at an estimate set high, the request's input and the answer (a token "
            "per 3 ASCII characters, up to 7/3 per other character)") in alerts


# --- streaming and plain JSON, for each wire kind --------------------------------------------

def asked_to_stream(seen: dict[str, Any]) -> bool:
    if seen["format"] == "gemini":
        return str(seen["path"]).endswith(":streamGenerateContent")
    return bool(seen["body"].get("stream"))


@pytest.mark.parametrize("provider", EVERY_WIRE)
async def test_every_wire_kind_answers_both_streamed_and_as_plain_json(
        router: Router, sim: RunningSimulator, provider: str) -> None:
    result = await ask(router, messages=(Message(role="system", content="Be brief."),
                                         Message(role="user", content=PROMPT)),
                       model=f"{provider}/echo")

    assert (result.content, result.finish_reason) == (answer_of("echo"), "stop")
    assert result.usage.output_tokens == len(answer_of("echo")) // 4
    assert tried(result.attempts) == [(provider, "echo", "ok", None)]
    (seen,) = sim.state.requests
    assert asked_to_stream(seen) is (provider in STREAMING)
