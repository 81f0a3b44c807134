"""The four tools through the SDK's in-memory client, against the simulated upstream."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_router.access import hash_token, new_token
from mcp_router.config import parse_config
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio
SECRET = "sk-test-THIS-MUST-NEVER-LEAK-1234567890"

CONFIG = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1", api_key_env: DS_KEY}}
  anthropic: {{kind: anthropic, base_url: "{url}", api_key_env: AN_KEY}}
  google: {{kind: gemini, base_url: "{url}/v1beta"}}
  openai: {{kind: openai, base_url: "{url}/v1", api_key_env: UNSET_KEY}}
routes:
  default:
    targets:
      - {{provider: deepseek, model: deepseek-chat}}
      - {{provider: anthropic, model: claude-3-haiku-20240307}}
  flaky:
    targets:
      - {{provider: deepseek, model: deepseek-chat+fail-503}}
      - {{provider: google, model: gemini-1.5-flash}}
  broken:
    targets:
      - {{provider: deepseek, model: deepseek-chat+fail-500}}
      - {{provider: openai, model: gpt-4o-mini}}
      - {{provider: google, model: gemini-1.5-flash+fail-403}}
retry: {{attempts: 2, backoff_initial_s: 0.01, backoff_max_s: 0.02}}
"""


@pytest.fixture
async def client(sim: Any, tmp_path: Path) -> AsyncIterator[Client]:
    config = parse_config(CONFIG.format(url=sim.url), env={})
    env = {"DS_KEY": SECRET, "AN_KEY": SECRET + "-an"}
    server = create_server(config, home=tmp_path / "home", env=env)
    async with Client(server) as c:
        yield c


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def error_text(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr]


async def test_lists_four_tools_with_output_schemas_and_read_only_hints(client: Client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"chat_completion", "list_providers", "cost_report", "provider_health"}
    for tool in tools.values():
        assert tool.output_schema and tool.output_schema["type"] == "object"
        assert tool.description
        assert tool.title and tool.title != tool.name  # what hosts show people
    assert {n for n, t in tools.items() if t.annotations and t.annotations.read_only_hint} == {
        "list_providers", "cost_report", "provider_health"}
    props = tools["chat_completion"].input_schema["properties"]
    assert {"messages", "prompt", "route", "model", "fallbacks", "max_tokens", "temperature",
            "top_p", "stop", "cache", "timeout_s", "metadata"} <= set(props)


async def test_a_prompt_is_answered_with_full_provenance(client: Client, sim: Any):
    result = await call(client, "chat_completion", prompt="hello there", max_tokens=50)
    assert result["content"].startswith("Simulated answer from deepseek-chat")
    assert (result["provider"], result["model"], result["route"]) == (
        "deepseek", "deepseek-chat", "default")
    assert result["finish_reason"] == "stop"
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    assert result["cost_usd"] > 0 and result["cached"] is False
    assert len(result["trace_id"]) == 32 and result["latency_ms"] > 0
    assert [(a["provider"], a["outcome"]) for a in result["attempts"]] == [("deepseek", "ok")]
    assert sim.state.hits["deepseek-chat"] == 1


async def test_a_plain_answer_carries_the_contract_and_leaves_out_unset_extras(client: Client):
    result = await client.call_tool("chat_completion", {"prompt": "hello there"})
    data = result.structured_content
    assert data is not None
    contract = {"content", "provider", "model", "route", "finish_reason", "usage", "cost_usd",
                "cached", "latency_ms", "attempts", "pii", "trace_id"}
    assert set(data) == contract  # no dry_run, late, truncated, … while they do not apply
    assert set(data["attempts"][0]) >= {"provider", "model", "outcome", "status", "error",
                                        "latency_ms"}
    assert json.loads(result.content[0].text) == data  # type: ignore[union-attr]


async def test_the_answer_schema_has_no_references_to_resolve(client: Client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    schema = tools["chat_completion"].output_schema
    assert schema is not None and "$ref" not in json.dumps(schema)
    attempt = schema["properties"]["attempts"]["items"]
    assert attempt["required"] == ["provider", "model", "outcome"]
    assert set(schema["required"]) >= {"content", "provider", "model", "attempts", "trace_id"}


def _defaults(schema: Any) -> list[tuple[Any, Any]]:
    """Every (declared type, default) pair in a JSON schema, at any depth."""
    found: list[tuple[Any, Any]] = []
    if isinstance(schema, dict):
        if "default" in schema and "type" in schema:
            found.append((schema["type"], schema["default"]))
        for value in schema.values():
            found += _defaults(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _defaults(value)
    return found


async def test_every_schema_default_is_of_its_declared_type(client: Client):
    """Clients generated from a schema take its defaults as they are: "0" on a number field
    would be a string where a number is promised."""
    json_types = {"number": (int, float), "integer": int, "string": str, "boolean": bool,
                  "array": list, "object": dict, "null": type(None)}
    tools = (await client.list_tools()).tools
    pairs = [pair for t in tools for pair in _defaults([t.input_schema, t.output_schema])]
    assert pairs
    for declared, default in pairs:
        names = declared if isinstance(declared, list) else [declared]
        assert any(isinstance(default, json_types[n]) and not (
            n in ("number", "integer") and isinstance(default, bool)) for n in names), (
            declared, default)


async def test_the_input_schema_admits_the_openai_style_forms_the_tool_takes(client: Client):
    from jsonschema import Draft202012Validator

    tools = {t.name: t for t in (await client.list_tools()).tools}
    validator = Draft202012Validator(tools["chat_completion"].input_schema)
    openai_style = {"messages": [{"role": "developer", "content": "be brief"},
                                 {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                    "stop": "END", "metadata": {"run": 7}}
    assert list(validator.iter_errors(openai_style)) == []
    assert not validator.is_valid({"messages": [{"role": "robot", "content": "x"}]})
    result = await call(client, "chat_completion", **openai_style)  # and the tool takes them
    assert result["finish_reason"] == "stop"


async def test_messages_reach_the_upstream_in_its_wire_format(client: Client, sim: Any):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    result = await call(client, "chat_completion", messages=messages,
                        model="anthropic/claude-3-haiku-20240307")
    assert result["provider"] == "anthropic"
    sent = sim.state.requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["system"] == "be brief"
    assert sent["body"]["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("prompt", ['{"task": "summarise", "text": "hi"}', '["a", "b"]', "null"])
async def test_a_prompt_that_is_json_reaches_the_upstream_as_sent(client: Client, sim: Any,
                                                                  prompt: str):
    result = await call(client, "chat_completion", prompt=prompt)
    assert result["content"].endswith(prompt)
    assert sim.state.requests[-1]["body"]["messages"] == [{"role": "user", "content": prompt}]


async def test_a_null_prompt_beside_messages_is_not_given(client: Client):
    from jsonschema import Draft202012Validator

    tools = {t.name: t for t in (await client.list_tools()).tools}
    prompt = Draft202012Validator(tools["chat_completion"].input_schema["properties"]["prompt"])
    assert prompt.is_valid(None) and prompt.is_valid("hi") and not prompt.is_valid(3)
    result = await call(client, "chat_completion", prompt=None,
                        messages=[{"role": "user", "content": "hi"}])
    assert result["content"].endswith("hi")


async def test_openai_style_messages_are_taken_as_clients_send_them(client: Client, sim: Any):
    messages = [{"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "two "},
                                             {"type": "text", "text": "parts"}]}]
    await call(client, "chat_completion", messages=messages, stop="END",
               model="anthropic/claude-3-haiku-20240307")
    sent = sim.state.requests[-1]["body"]
    assert sent["system"] == "be brief"
    assert sent["messages"] == [{"role": "user", "content": "two parts"}]
    assert sent["stop_sequences"] == ["END"]


async def test_one_string_stands_for_a_list_and_an_empty_one_for_none(client: Client):
    result = await call(client, "chat_completion", prompt="x", route="broken",
                        fallbacks="anthropic/claude-3-haiku-20240307")
    assert result["provider"] == "anthropic"
    # hosts that fill in every argument send "" for the ones they mean to leave out
    result = await call(client, "chat_completion", prompt="x", fallbacks="", stop="",
                        route="", model="")
    assert (result["provider"], result["route"]) == ("deepseek", "default")


async def test_a_part_that_is_not_text_is_refused_naming_the_message(client: Client, sim: Any):
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    text = await error_text(client, "chat_completion",
                            messages=[{"role": "user", "content": [image]}])
    assert "messages.0.content" in text and "only text parts" in text
    assert "'image_url'" in text
    assert sum(sim.state.hits.values()) == 0


NAMED = """\
providers:
  deepseek: {{kind: openai, base_url: "{url}/v1", models: [deepseek-chat, shared-model]}}
  together: {{kind: openai, base_url: "{url}/v1", models: [meta-llama/Llama-3-8b, shared-model]}}
routes:
  default:
    targets: [{{provider: deepseek, model: deepseek-chat}}]
"""


async def test_a_model_named_without_its_provider_goes_to_the_provider_listing_it(
        sim: Any, tmp_path: Path):
    server = create_server(parse_config(NAMED.format(url=sim.url), env={}), home=tmp_path,
                           env={})
    async with Client(server) as named:
        result = await call(named, "chat_completion", prompt="x", model="meta-llama/Llama-3-8b")
        assert (result["provider"], result["model"]) == ("together", "meta-llama/Llama-3-8b")
        plan = await call(named, "chat_completion", prompt="x", model="deepseek-chat",
                          fallbacks=["meta-llama/Llama-3-8b"], dry_run=True)
        assert [(t["provider"], t["model"]) for t in plan["dry_run"]["targets"]] == [
            ("deepseek", "deepseek-chat"), ("together", "meta-llama/Llama-3-8b")]
        assert ("model: 'shared-model' is a model of several providers; give one of: "
                "deepseek/shared-model, together/shared-model") in await error_text(
            named, "chat_completion", prompt="x", model="shared-model")
        assert ("fallbacks[0]: 'gpt-4o' is not provider/model with a known provider, nor a "
                "model a provider lists") in await error_text(
            named, "chat_completion", prompt="x", fallbacks=["gpt-4o"])
        assert ("model: 'together' names a provider but no model: give together/<model>, one "
                "of: meta-llama/Llama-3-8b, shared-model") in await error_text(
            named, "chat_completion", prompt="x", model="together")


async def test_a_client_s_model_rules_see_the_provider_of_a_bare_model_name(
        sim: Any, tmp_path: Path):
    rules = f"clients:\n  mcp: {{token_sha256: {hash_token(new_token())}, models: [together/*]}}\n"
    config = parse_config(NAMED.format(url=sim.url) + rules, env={})
    async with Client(create_server(config, home=tmp_path, env={})) as named:
        result = await call(named, "chat_completion", prompt="x", model="meta-llama/Llama-3-8b")
        assert result["provider"] == "together"
        assert "may not use model 'deepseek/deepseek-chat'" in await error_text(
            named, "chat_completion", prompt="x", model="deepseek-chat")


async def test_progress_tells_each_attempt_retry_and_fallback_in_order(client: Client):
    messages: list[str] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    result = await client.call_tool("chat_completion", {"prompt": "x", "route": "flaky"},
                                    progress_callback=progress)
    assert not result.is_error
    assert messages[0] == "asking deepseek/deepseek-chat+fail-503"
    assert messages[1].startswith("deepseek 503, retrying in ")
    assert messages[2:] == ["asking deepseek/deepseek-chat+fail-503",
                            "falling back to google/gemini-1.5-flash",
                            "asking google/gemini-1.5-flash"]


async def test_all_targets_failing_is_one_error_listing_every_attempt(client: Client):
    text = await error_text(client, "chat_completion", prompt="x", route="broken")
    assert "all targets failed" in text
    assert text.count("deepseek/deepseek-chat+fail-500: error (HTTP 500") == 2
    assert "openai/gpt-4o-mini: skipped (no API key configured)" in text
    assert "google/gemini-1.5-flash+fail-403: error (HTTP 403" in text


async def test_a_lone_target_that_fails_lists_every_try_but_a_bad_request_stands(
        client: Client):
    text = await error_text(client, "chat_completion", prompt="x",
                            model="deepseek/deepseek-chat+fail-503")
    assert text.startswith("Error executing tool chat_completion: all targets failed:")
    assert text.count("deepseek/deepseek-chat+fail-503: error (HTTP 503") == 2  # retried once
    text = await error_text(client, "chat_completion", prompt="x",
                            model="deepseek/deepseek-chat+fail-400")
    assert text.startswith("Error executing tool chat_completion: deepseek/deepseek-chat+"
                           "fail-400: HTTP 400")
    assert text.endswith("(the provider refused the request itself, so no other target was "
                         "asked: change the request)")


async def test_a_call_no_key_could_answer_says_which_variable_to_set(client: Client):
    text = await error_text(client, "chat_completion", prompt="x", model="openai/gpt-4o-mini")
    assert text.startswith("Error executing tool chat_completion: no provider this call may "
                           "use has an API key: set UNSET_KEY in the server's environment")
    assert "openai/gpt-4o-mini: skipped (no API key configured)" in text


@pytest.mark.parametrize(("arguments", "expected"), [
    ({"prompt": "x", "route": "nope"}, "route: unknown route 'nope'; routes are: default, "
                                       "flaky, broken"),
    ({"prompt": "x", "model": "acme/m1"}, "model: 'acme/m1' is not provider/model with a known "
                                          "provider, nor a model a provider lists; providers "
                                          "are: deepseek, anthropic"),
    ({}, "messages: give either 'messages'"),
    ({"prompt": "x", "messages": [{"role": "user", "content": "y"}]},
     "messages: give either 'messages'"),
    ({"messages": []}, "messages: must hold at least one message"),
    ({"prompt": "   "}, "prompt: must not be empty"),
    ({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": ""}]},
     "messages.1.content: must not be empty"),
    ({"prompt": "x", "route": "default", "model": "google/g"}, "give either 'route' or 'model'"),
    ({"prompt": "x", "fallbacks": ["nobody/m"]}, "fallbacks[0]: 'nobody/m'"),
])
async def test_bad_arguments_get_an_error_naming_the_field(client: Client, sim: Any,
                                                           arguments: dict, expected: str):
    assert expected in await error_text(client, "chat_completion", **arguments)
    assert sum(sim.state.hits.values()) == 0


@pytest.mark.parametrize("arguments", [
    {"messages": [{"role": "robot", "content": "x"}]},
    {"prompt": "x", "max_tokens": 0},
    {"prompt": "x", "temperature": 3},
    {"prompt": "x", "cache": "sometimes"},
])
async def test_schema_violations_are_refused_naming_the_field(client: Client, sim: Any,
                                                             arguments: dict):
    text = await error_text(client, "chat_completion", **arguments)
    assert next(iter(arguments.keys() - {"prompt"})) in text
    assert "input_value" not in text and "errors.pydantic.dev" not in text  # field: problem
    assert sum(sim.state.hits.values()) == 0


async def test_each_wrong_argument_is_named_with_what_it_must_be(client: Client):
    text = await error_text(client, "chat_completion", temperature=5, cache="sometimes",
                            messages=[{"role": "robot", "content": "my SSN is 123-45-6789"}])
    assert text == ("Error executing tool chat_completion: messages.0.role: must be 'system', "
                    "'user', 'assistant' or 'developer'; temperature: Input should be less than "
                    "or equal to 2; cache: Input should be 'use', 'refresh' or 'skip'")


@pytest.mark.parametrize("blank", ["", None])
async def test_blank_choice_arguments_of_every_tool_read_as_left_out(client: Client, sim: Any,
                                                                     blank: str | None):
    # hosts that fill in every argument send "" or null for those they leave out
    first = await call(client, "chat_completion", prompt="x", cache=blank,
                       cache_sampled=blank, dry_run=blank)
    again = await call(client, "chat_completion", prompt="x", cache=blank)
    assert (first["cached"], again["cached"], "dry_run" in first) == (False, True, False)
    assert sim.state.hits["deepseek-chat"] == 1  # cache "use", and not a dry run
    assert await call(client, "cost_report", period=blank, group_by=blank) == await call(
        client, "cost_report", period="today", group_by="provider")
    health = await call(client, "provider_health", provider=blank, probe=blank)
    assert [p["name"] for p in health["providers"]] == [
        "deepseek", "anthropic", "google", "openai"]


@pytest.mark.parametrize(("tool", "arguments", "problem"), [
    ("cost_report", {"period": "week"}, "period: Input should be 'today', 'month' or 'all'"),
    ("cost_report", {"group_by": "team"}, "group_by: Input should be 'provider', 'model', "
                                          "'route', 'client' or 'day'"),
    ("chat_completion", {"prompt": "x", "cache": "Use"},
     "cache: Input should be 'use', 'refresh' or 'skip'"),
    ("provider_health", {"probe": "maybe"}, "probe: Input should be a valid boolean"),
])
async def test_a_wrong_choice_is_still_refused_with_the_values_allowed(
        client: Client, tool: str, arguments: dict[str, Any], problem: str):
    assert (await error_text(client, tool, **arguments)).startswith(
        f"Error executing tool {tool}: {problem}")


async def test_the_published_schemas_admit_blank_choices_but_not_wrong_ones(client: Client):
    from jsonschema import Draft202012Validator

    tools = {t.name: t for t in (await client.list_tools()).tools}
    chat, report, health = (Draft202012Validator(tools[name].input_schema)
                            for name in ("chat_completion", "cost_report", "provider_health"))
    for validator in (chat, report, health):
        Draft202012Validator.check_schema(validator.schema)
    for blank in ("", None):
        assert chat.is_valid({"prompt": "x", "cache": blank, "dry_run": blank,
                              "cache_sampled": blank})
        assert report.is_valid({"period": blank, "group_by": blank})
        assert health.is_valid({"provider": blank, "probe": blank})
    assert not chat.is_valid({"prompt": "x", "cache": "sometimes"})
    assert not report.is_valid({"period": "week"})
    assert report.schema["properties"]["period"]["anyOf"][0]["enum"] == ["today", "month", "all"]


async def test_the_dry_run_argument_says_its_worst_case_is_one_attempt_that_retries_can_pass(
        client: Client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    text = tools["chat_completion"].input_schema["properties"]["dry_run"]["description"]
    assert "worst case of one attempt at the dearest target that would be asked" in text
    assert "retries and fallbacks after a paid failure" in text and "can add to it" in text


async def test_a_misspelt_argument_is_refused_naming_the_one_meant(client: Client, sim: Any):
    text = await error_text(client, "chat_completion", prompt="hi", modle="google/g",
                            temprature=0.2)
    assert text == ("Error executing tool chat_completion: modle: unknown argument; did you "
                    "mean model?; temprature: unknown argument; did you mean temperature?")
    assert sum(sim.state.hits.values()) == 0  # not answered by the default route instead


async def test_an_argument_no_tool_takes_is_refused_listing_those_it_takes(client: Client):
    text = await error_text(client, "cost_report", since="2026-12-01")
    assert text == ("Error executing tool cost_report: since: unknown argument; this tool "
                    "takes group_by, period")


async def test_list_providers_shows_key_status_but_never_the_key(client: Client):
    result = await call(client, "list_providers")
    configured = {p["name"]: p["configured"] for p in result["providers"]}
    assert configured == {"deepseek": True, "anthropic": True, "google": True, "openai": False}
    assert result["default_route"] == "default"
    assert [r["name"] for r in result["routes"]] == ["default", "flaky", "broken"]
    assert SECRET not in json.dumps(result)


async def test_health_and_cost_report_real_figures_from_the_calls_made(client: Client):
    first = await call(client, "chat_completion", prompt="one")
    second = await call(client, "chat_completion", prompt="two", route="flaky")
    health = {p["name"]: p for p in (await call(client, "provider_health"))["providers"]}
    assert (health["deepseek"]["requests"], health["deepseek"]["success_rate"]) == (3, 0.3333)
    assert health["deepseek"]["state"] == "degraded"
    assert "HTTP 503" in health["deepseek"]["last_error"]
    assert (health["google"]["requests"], health["google"]["state"]) == (1, "healthy")
    assert health["openai"]["state"] == "unconfigured"
    assert health["anthropic"]["state"] == "unknown"

    report = await call(client, "cost_report", period="today", group_by="provider")
    assert report["requests"] == 2
    total = Decimal(str(first["cost_usd"])) + Decimal(str(second["cost_usd"]))
    assert Decimal(str(report["total_usd"])) == total
    assert {r["key"] for r in report["rows"]} == {"deepseek", "google"}
    assert report["budgets"]["daily"]["limit_usd"] is None


async def test_provider_health_for_an_unknown_provider_lists_the_known(client: Client):
    text = await error_text(client, "provider_health", provider="acme")
    assert "unknown provider 'acme'; providers are: deepseek, anthropic, google, openai" in text


async def test_metadata_lands_in_the_ledger_by_client(client: Client, tmp_path: Path):
    await call(client, "chat_completion", prompt="x", metadata={"ticket": "T-1", "run": 7})
    report = await call(client, "cost_report", group_by="client")
    assert [r["key"] for r in report["rows"]] == ["mcp"]
    with sqlite3.connect(tmp_path / "home" / "ledger.sqlite3") as db:
        [(labels,)] = db.execute("SELECT metadata FROM calls").fetchall()
    assert json.loads(labels) == {"ticket": "T-1", "run": "7"}


async def test_pii_in_metadata_is_redacted_before_it_reaches_the_ledger(client: Client,
                                                                      tmp_path: Path):
    await call(client, "chat_completion", prompt="x", metadata={
        "user": "jane.doe@example.com", "card": "4111 1111 1111 1111", "ticket": "T-1",
        "carol@corp.example": "reviewer"})
    with sqlite3.connect(tmp_path / "home" / "ledger.sqlite3") as db:
        [(labels,)] = db.execute("SELECT metadata FROM calls").fetchall()
    assert json.loads(labels) == {"user": "<EMAIL>", "card": "<CREDIT_CARD>", "ticket": "T-1",
                                  "<EMAIL>": "reviewer"}


@pytest.mark.skipif(os.name == "nt", reason="no POSIX permission bits")
async def test_the_data_directory_it_makes_is_this_user_s_alone(client: Client, tmp_path: Path):
    await call(client, "chat_completion", prompt="x")
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    async with Client(create_server(parse_config(CONFIG.format(url="http://127.0.0.1:9"),
                                                 env={}), home=shared, env={})) as other:
        await other.call_tool("cost_report", {})
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750  # one that exists keeps its mode


@pytest.mark.skipif(os.name == "nt", reason="no POSIX permission bits")
async def test_the_ledger_and_cache_are_private_whatever_the_embedding_process_s_umask(
        sim: Any, tmp_path: Path):
    old = os.umask(0o022)  # a library caller's usual umask (the CLI sets 077 itself)
    try:
        server = create_server(parse_config(CONFIG.format(url=sim.url), env={}),
                               home=tmp_path / "home", env={"DS_KEY": SECRET})
        async with Client(server) as client:  # a long answer too: ~48 kB, past 32 kB
            await call(client, "chat_completion", prompt="x", max_tokens=13000,
                       model="deepseek/deepseek-chat+tokens-12000")
    finally:
        os.umask(old)
    home = tmp_path / "home"
    files = [p for p in home.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"ledger.sqlite3", "cache.db", "audit.jsonl"}
    assert {p.relative_to(home).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in files} == {
        p.relative_to(home).as_posix(): 0o600 for p in files}
    assert stat.S_IMODE((home / "cache").stat().st_mode) == 0o700


async def test_a_probe_asks_only_metadata_endpoints_and_spends_nothing(client: Client, sim: Any):
    result = await call(client, "provider_health", probe=True)
    assert sim.state.metadata_hits == {"openai": 1, "anthropic": 1, "gemini": 1}
    assert sum(sim.state.hits.values()) == 0 and sim.state.requests == []
    states = {p["name"]: p["state"] for p in result["providers"]}
    assert states["openai"] == "unconfigured"
    # The simulator lists real model names; its fault-knob names are, as a vendor's would be,
    # not in the list, and the probe names them as the routes' models it did not find.
    unlisted = {p["name"]: p["last_probe"]["unlisted"] for p in result["providers"]
                if p["last_probe"]}
    assert unlisted == {"deepseek": ["deepseek-chat+fail-503", "deepseek-chat+fail-500"],
                        "anthropic": [], "google": ["gemini-1.5-flash+fail-403"]}


async def test_a_failing_target_opens_its_circuit_and_is_then_skipped(client: Client, sim: Any):
    for _ in range(3):
        await call(client, "chat_completion", prompt="x", route="flaky", cache="skip")
    # 2 tries, 2 tries, 2 tries: five failures in a row open the circuit
    assert sim.state.hits["deepseek-chat+fail-503"] == 6
    last = await call(client, "chat_completion", prompt="x", route="flaky", cache="skip")
    skipped = last["attempts"][0]
    assert (skipped["outcome"], skipped["provider"]) == ("skipped", "deepseek")
    assert skipped["error"].startswith("circuit open until ")
    health = {p["name"]: p for p in (await call(client, "provider_health"))["providers"]}
    assert health["deepseek"]["open_until"] is not None


async def test_a_dry_run_sends_nothing_and_shows_the_plan(client: Client, sim: Any):
    result = await call(client, "chat_completion", prompt="x", route="broken", dry_run=True,
                        max_tokens=100)
    plan = result["dry_run"]
    assert [(t["provider"], t["would"]) for t in plan["targets"]] == [
        ("deepseek", "ask"), ("openai", "skip"), ("google", "ask")]
    assert plan["targets"][1]["reason"] == "no API key configured"
    assert plan["cache_hit"] is False
    assert plan["worst_case_usd"] is not None and plan["worst_case_usd"] > 0
    assert result["attempts"] == [] and result["cost_usd"] == 0
    assert sum(sim.state.hits.values()) == 0


async def test_a_dry_run_no_target_could_answer_says_the_call_would_fail(client: Client):
    result = await call(client, "chat_completion", prompt="x", model="openai/gpt-4o-mini",
                        dry_run=True)
    assert result["cost_note"] == ("dry run: nothing was sent; the call would fail: every "
                                   "target would be skipped (see dry_run.targets)")
    assert result["dry_run"]["worst_case_usd"] == 0  # nothing would be asked, or spent


async def test_a_dry_run_skips_the_target_the_client_s_own_budget_refuses_for_real(
        sim: Any, tmp_path: Path):
    # the team may spend $100 a day; this host's client ("mcp", its clientInfo name) $0.001
    own = ("budgets: {daily_usd: 100}\nclients:\n  mcp: {token_sha256: "
           f"{hash_token(new_token())}, budgets: {{daily_usd: 0.001}}}}\n")
    config = parse_config(CONFIG.format(url=sim.url) + own, env={})
    opus = {"prompt": "x", "model": "anthropic/claude-3-opus-20240229", "max_tokens": 100}
    async with Client(create_server(config, home=tmp_path, env={"AN_KEY": SECRET})) as mcp:
        refused = await error_text(mcp, "chat_completion", **opus)  # ~$0.0075 worst case
        result = await call(mcp, "chat_completion", **opus, dry_run=True)
    [planned] = result["dry_run"]["targets"]
    assert (planned["would"], result["dry_run"]["worst_case_usd"]) == ("skip", 0)
    assert planned["reason"].startswith(
        "over budget: client mcp's daily budget of $0.001 would be exceeded")
    assert planned["reason"].removeprefix("over budget: ") in refused
    assert result["cost_note"].endswith("the call would fail: every target would be skipped "
                                        "(see dry_run.targets)")
    assert sum(sim.state.hits.values()) == 0


async def test_a_dry_run_predicts_a_cache_hit_and_shows_open_circuits(client: Client, sim: Any):
    await call(client, "chat_completion", prompt="same")
    assert (await call(client, "chat_completion", prompt="same", dry_run=True)
            )["dry_run"]["cache_hit"] is True
    for _ in range(3):
        await call(client, "chat_completion", prompt="x", route="flaky", cache="skip")
    hits = dict(sim.state.hits)
    plan = (await call(client, "chat_completion", prompt="x", route="flaky",
                       dry_run=True))["dry_run"]
    assert plan["targets"][0]["would"] == "skip"
    assert plan["targets"][0]["reason"].startswith("circuit open until ")
    assert dict(sim.state.hits) == hits


@pytest.mark.parametrize("blank", ["", None])
async def test_blank_numbers_messages_and_metadata_read_as_left_out(client: Client, sim: Any,
                                                                    blank: str | None):
    result = await call(client, "chat_completion", prompt="x", messages=blank,
                        max_tokens=blank, temperature=blank, top_p=blank, cache_ttl_s=blank,
                        timeout_s=blank, metadata=blank)
    assert result["provider"] == "deepseek"
    sent = sim.state.requests[-1]["body"]
    assert sent["messages"] == [{"role": "user", "content": "x"}]
    assert "temperature" not in sent and "top_p" not in sent


async def test_a_wrong_number_is_still_refused_naming_the_field(client: Client):
    text = await error_text(client, "chat_completion", prompt="x", max_tokens=0, top_p="x")
    assert text == ("Error executing tool chat_completion: max_tokens: Input should be greater "
                    "than 0; top_p: Input should be a valid number, unable to parse string as a "
                    "number")


@pytest.mark.parametrize(("arguments", "problem"), [
    ({"prompt": "x", "fallbacks": 5}, "fallbacks: must be a list of strings or a string"),
    ({"prompt": "x", "stop": [1]}, "stop: must be a list of strings or a string"),
    ({"messages": [{"role": "tool", "content": "x"}]},
     "messages.0.role: must be 'system', 'user', 'assistant' or 'developer'"),
])
async def test_argument_errors_name_the_forms_an_argument_takes(client: Client,
                                                                arguments: dict[str, Any],
                                                                problem: str):
    assert await error_text(client, "chat_completion", **arguments) == (
        f"Error executing tool chat_completion: {problem}")


@pytest.mark.parametrize("value", [{"b": 1}, True, [1], None])
async def test_a_metadata_value_of_another_type_is_refused_naming_what_it_may_be(
        client: Client, value: object):
    assert await error_text(client, "chat_completion", prompt="x",
                            metadata={"run": 7, "a": value}) == (
        "Error executing tool chat_completion: metadata.a: must be a string or a number")


async def test_an_argument_to_a_tool_that_takes_none_says_so(client: Client):
    assert await error_text(client, "list_providers", x=1) == (
        "Error executing tool list_providers: x: unknown argument; this tool takes no arguments")


async def test_a_bug_met_by_a_call_is_said_as_one_with_its_trace_and_an_audit_line(
        client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture):
    from mcp_router.router import Router

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr(Router, "complete", broken)
    text = await error_text(client, "chat_completion", prompt="x")

    audit = (tmp_path / "home" / "audit.jsonl").read_text().splitlines()
    [line] = [json.loads(line) for line in audit
              if '"chat_completion"' in line]
    assert text == ("Error executing tool chat_completion: mcp-router failed on this call "
                    "(OverflowError); this is a bug: the server's log (stderr) has the details "
                    f"under trace {line['trace_id']}")
    assert (line["outcome"], line["error"]) == ("error", "internal error: OverflowError")
    assert "int too large" in caplog.text  # the traceback, for whoever reads the log


@pytest.mark.parametrize(("sent", "text"), [(42, "42"), (1.5, "1.5"), (True, "true"),
                                            ({"task": "summarise"}, '{"task": "summarise"}')])
async def test_a_prompt_a_client_decoded_from_json_is_taken_as_its_text(
        client: Client, sim: Any, sent: object, text: str):
    """MCP Inspector's CLI parses every --tool-arg value as JSON: `prompt=42` arrives as 42."""
    await call(client, "chat_completion", prompt=sent)
    assert sim.state.requests[-1]["body"]["messages"] == [{"role": "user", "content": text}]
