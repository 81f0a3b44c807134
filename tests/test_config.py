"""Config loading: the shipped policies are valid, and broken files name file, line and key."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from mcp import Client

from mcp_router.config import load_config, parse_config, shipped_config
from mcp_router.errors import ConfigError
from mcp_router.provider_keys import provider_keys
from mcp_router.server import create_server

GOOD = """\
providers:
  sim:
    kind: openai
    base_url: http://127.0.0.1:9/v1
  other:
    kind: anthropic
    base_url: http://127.0.0.1:9
    api_key_env: OTHER_KEY
routes:
  default:
    targets:
      - {provider: sim, model: m1}
      - {route: spare}
  spare:
    strategy: loadbalance
    targets:
      - {provider: sim, model: m2, weight: 3}
      - {provider: other, model: m3, weight: 1}
"""


def broken(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), file="team.yaml", env={})
    return info.value


def test_a_valid_config_loads_with_defaults():
    config = parse_config(GOOD, env={})
    assert config.default_route == "default"
    assert config.retry.attempts == 3
    assert config.timeouts.deadline_s == 50
    assert config.routes["spare"].targets[0].weight == 3


def test_unknown_key_names_file_line_and_key():
    err = broken(GOOD.replace("    base_url: http://127.0.0.1:9/v1\n",
                              "    base_url: http://127.0.0.1:9/v1\n    tiemout_s: 5\n"))
    assert (err.file, err.line, err.key) == ("team.yaml", 5, "providers.sim.tiemout_s")
    assert str(err) == ("team.yaml:5: providers.sim.tiemout_s: unknown key; did you mean "
                        "timeout_s?")


def test_an_unknown_key_like_none_lists_the_keys_that_may_stand_there():
    err = broken(GOOD + "budget: {daily_usd: 5}\n")
    assert str(err).endswith("budget: unknown key; did you mean budgets?")
    err = broken(GOOD.replace("    base_url: http://127.0.0.1:9/v1\n",
                              "    base_url: http://127.0.0.1:9/v1\n    region: eu\n"))
    assert str(err).endswith("providers.sim.region: unknown key; keys here are kind, base_url, "
                             "api_key_env, api_key_file, headers, models, timeout_s, stream")


def test_unknown_provider_in_a_route_lists_the_known_ones():
    err = broken(GOOD.replace("{provider: sim, model: m1}", "{provider: sym, model: m1}"))
    assert err.key == "routes.default.targets.0.provider"
    assert err.line == 12
    assert "unknown provider 'sym'" in str(err) and "sim, other" in str(err)


def test_bad_kind_is_named():
    err = broken(GOOD.replace("kind: anthropic", "kind: antropic"))
    assert err.key == "providers.other.kind"
    assert err.line == 6
    assert "'openai', 'anthropic' or 'gemini'" in str(err)


@pytest.mark.parametrize("weight", ["0", "-2"])
def test_weight_must_be_positive(weight):
    err = broken(GOOD.replace("weight: 3", f"weight: {weight}"))
    assert err.key == "routes.spare.targets.0.weight"
    assert err.line == 17
    assert "greater than 0" in str(err)


def test_route_cycle_is_refused_and_drawn():
    err = broken(GOOD + "      - {route: default}\n")
    assert "route cycle: default -> spare -> default" in str(err)
    assert err.line == 10


def test_unknown_default_route_lists_routes():
    err = broken(GOOD + "default_route: fast\n")
    assert err.key == "default_route"
    assert "unknown route 'fast'; routes are: default, spare" in str(err)


def test_target_with_both_route_and_provider_is_refused():
    err = broken(GOOD.replace("{route: spare}", "{route: spare, provider: sim, model: x}"))
    assert err.key == "routes.default.targets.1"
    assert "either a route or a provider" in str(err)


def test_model_outside_the_providers_catalogue_is_refused():
    text = GOOD.replace("    base_url: http://127.0.0.1:9/v1\n",
                        "    base_url: http://127.0.0.1:9/v1\n    models: [m1]\n")
    err = broken(text)
    assert err.key == "routes.spare.targets.0.model"
    assert "'m2' is not in sim's models: m1" in str(err)


def test_invalid_yaml_names_the_line():
    err = broken("providers:\n  sim: [unclosed\n")
    assert err.file == "team.yaml" and err.line is not None
    assert "not valid YAML" in str(err)


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    ("providers:\n  ? [a, b]\n  : {kind: openai}\n", 2, "providers",
     "a key must be a plain name, not a list or a mapping"),
    ("routes:\n  {a: 1}: x\n", 2, "routes", "a key must be a plain name"),
    ("default_route: !!python/name:os.system x\n", 1, "default_route",
     "the tag !!python/name:os.system is not supported"),
])
def test_a_key_that_is_no_name_or_an_unsafe_tag_is_told_with_its_line(
        text: str, line: int, key: str | None, message: str):
    err = broken(text)
    assert (err.file, err.line, err.key) == ("team.yaml", line, key)
    assert message in str(err)


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_env_refs_expand_in_base_url_and_headers_only():
    text = GOOD.replace("base_url: http://127.0.0.1:9/v1",
                        "base_url: ${SIM}/v1\n    headers: {x-portkey-key: '${PK}'}")
    text = text.replace("model: m1", "model: '${NOT_EXPANDED}'")
    config = parse_config(text, env={"SIM": "http://127.0.0.1:7", "PK": "vk-1"})
    assert config.providers["sim"].base_url == "http://127.0.0.1:7/v1"
    assert config.providers["sim"].headers == {"x-portkey-key": "vk-1"}
    assert config.routes["default"].targets[0].model == "${NOT_EXPANDED}"


def test_unset_env_ref_is_named():
    err = broken(GOOD.replace("base_url: http://127.0.0.1:9/v1", "base_url: ${SIM_URL}/v1"))
    assert err.key == "providers.sim.base_url"
    assert "environment variable SIM_URL is not set" in str(err)


@pytest.mark.parametrize(("written", "line", "key"), [
    ("base_url: http://127.0.0.1:9/v1\n    headers: {x-portkey-virtual-key: '${PK_VKEY}'}", 5,
     "providers.sim.headers.x-portkey-virtual-key"),
    ("base_url: https://${PK_VKEY}/v1", 4, "providers.sim.base_url"),
], ids=["header", "base_url"])
def test_a_snippet_placeholder_left_in_a_variable_is_refused_like_an_unset_one(
        written: str, line: int, key: str):
    text = GOOD.replace("base_url: http://127.0.0.1:9/v1", written)
    for value in ("<your PK_VKEY>", " <paste here>\n"):
        with pytest.raises(ConfigError) as info:
            parse_config(text, file="team.yaml", env={"PK_VKEY": value})
        assert (info.value.file, info.value.line, info.value.key) == ("team.yaml", line, key)
        assert "environment variable PK_VKEY holds a placeholder in angle brackets, not a " \
               "value: put the value in its place" in str(info.value)
        assert value.strip() not in str(info.value)


def test_a_placeholder_in_the_providers_own_key_variable_leaves_it_unconfigured(
        caplog: pytest.LogCaptureFixture):
    text = GOOD.replace("base_url: http://127.0.0.1:9/v1", "base_url: http://127.0.0.1:9/v1\n"
                        "    api_key_env: PK_KEY\n    headers: {x-portkey-api-key: '${PK_KEY}'}")
    env = {"PK_KEY": "<your PK_KEY>", "OTHER_KEY": "other-key"}
    config = parse_config(text, env=env)
    assert provider_keys(config.providers, env, base=Path.cwd()) == {"other": "other-key"}
    assert "PK_KEY holds a placeholder in angle brackets, not a key: provider sim counts as " \
           "unconfigured" in caplog.text


def test_malformed_price_override_names_the_key():
    err = broken(GOOD + "prices:\n  sim/m1: {input_per_mtok: cheap, output_per_mtok: 1}\n")
    assert err.key == "prices.sim/m1.input_per_mtok"


def test_team_policy_encodes_the_orchestra_config():
    config = load_config(shipped_config("orchestra.yaml"))
    assert set(config.providers) == {"openrouter", "deepseek", "anthropic", "together",
                                     "openai", "google", "perplexity", "xai"}
    chain = [t.provider for t in config.routes["default"].targets]
    assert chain == ["openrouter", "deepseek", "anthropic", "together", "openai", "google",
                     "perplexity"]
    assert [t.weight for t in config.routes["balanced"].targets] == [40, 30, 20, 10]
    assert {"coding", "general_chat", "complex_reasoning", "web_search",
            "creative_writing"} <= set(config.routes)
    assert "grok-beta" in config.providers["xai"].models
    assert config.retry.attempts == 3
    assert config.retry.on_status == [429, 500, 502, 503, 504]
    assert config.providers["openrouter"].timeout_s == 60
    assert config.budgets.daily_usd == Decimal(150)
    assert all(p.api_key_env for p in config.providers.values())


def test_demo_config_points_every_provider_at_the_simulator():
    config = load_config(shipped_config("demo.yaml"), env={"MCP_ROUTER_SIM_URL": "http://s"})
    assert all(p.base_url.startswith("http://s") for p in config.providers.values())
    assert set(config.routes) >= set(load_config(shipped_config("orchestra.yaml")).routes)


@pytest.mark.parametrize(("extra", "expected"), [
    ("retry: {on_status: [503, 200]}\n",
     "retry.on_status.1: Input should be greater than or equal to 400"),
    ("retry: {backoff_initial_s: 10, backoff_max_s: 2}\n",
     "retry: backoff_initial_s (10) is over backoff_max_s (2), which caps every wait"),
])
def test_retry_settings_that_cannot_work_are_refused(extra: str, expected: str):
    assert str(broken(GOOD + extra)).endswith(expected)


def test_a_shell_form_the_loader_does_not_expand_is_refused_not_sent_as_written():
    header = '    headers: {X-Team: "${TEAM:-x}"}\n'
    err = broken(GOOD.replace("    base_url: http://127.0.0.1:9/v1\n",
                              "    base_url: http://127.0.0.1:9/v1\n" + header))
    assert str(err).endswith("providers.sim.headers.X-Team: only ${NAME} is expanded (no "
                             "defaults or other shell forms)")


def test_a_header_variable_no_http_header_can_carry_is_refused_naming_it_not_its_value():
    text = GOOD.replace("base_url: http://127.0.0.1:9/v1", "base_url: http://127.0.0.1:9/v1\n"
                        "    headers: {Helicone-Auth: 'Bearer ${HK}'}")
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="team.yaml", env={"HK": "sk-helicone\u2013abcdef"})
    assert (info.value.line, info.value.key) == (5, "providers.sim.headers.Helicone-Auth")
    assert "environment variable HK holds U+2013 at character 12, which an HTTP header " \
           "cannot carry" in str(info.value)
    assert "abcdef" not in str(info.value)
    err = broken(GOOD.replace("base_url: http://127.0.0.1:9/v1", "base_url: http://127.0.0.1:9/v1"
                              "\n    headers: {X-Title: 'Caf\u00e9 router'}"))
    assert "holds U+00E9 at character 4, which an HTTP header cannot carry" in str(err)


FALLBACK = """\
providers:
  openrouter: {kind: openai, base_url: "http://or.test/v1", api_key_env: OR_KEY, stream: false}
  backup: {kind: openai, base_url: "http://backup.test/v1", stream: false}
routes:
  default:
    targets: [{provider: openrouter, model: m}, {provider: backup, model: m}]
"""


@pytest.mark.anyio
async def test_a_key_no_http_header_can_carry_is_skipped_and_the_route_falls_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"model": "m", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}})

    server = create_server(parse_config(FALLBACK, env={}), home=tmp_path,
                           env={"OR_KEY": "sk-or-v1-0123456789\u2019abcdef"},
                           transport=httpx.MockTransport(upstream))
    async with Client(server) as client:
        answered = await client.call_tool("chat_completion", {"prompt": "hi"})
    assert answered.structured_content is not None, answered.content
    assert answered.structured_content["provider"] == "backup"
    assert "OR_KEY holds U+2019 at character 20, which an HTTP header cannot carry" in caplog.text
    assert "Traceback" not in caplog.text and "abcdef" not in caplog.text
