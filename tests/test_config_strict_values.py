"""Values a config must not take quietly: true or false where a number belongs (pydantic
would read it as 1), one token's hash given to two clients, and a client's `models` entry
that no call's model can match."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_router.access import hash_token
from mcp_router.cli import main
from mcp_router.config import parse_config
from mcp_router.errors import ConfigError

BASE = """\
providers:
  sim: {kind: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: null}
routes:
  default:
    targets:
      - {provider: sim, model: a}
"""
HASH = hash_token("mcpr_one-token")


@pytest.mark.parametrize(("extra", "line", "key"), [
    ("timeouts: {deadline_s: true}", 7, "timeouts.deadline_s"),
    ("retry: {attempts: yes}", 7, "retry.attempts"),
    ("retry:\n  on_status: [429, on]", 8, "retry.on_status.1"),
    ("cache: {ttl_s: on}", 7, "cache.ttl_s"),
    ("cache: {max_size_mb: true}", 7, "cache.max_size_mb"),
    ("budgets: {daily_usd: true}", 7, "budgets.daily_usd"),
    ("server: {max_sessions: yes}", 7, "server.max_sessions"),
    ("audit: {backups: no}", 7, "audit.backups"),
    ("output:\n  page_chars: off", 8, "output.page_chars"),
    ("prices:\n  sim/*: {input_per_mtok: no, output_per_mtok: 0}", 8,
     "prices.sim/*.input_per_mtok"),
    (f"clients:\n  bot:\n    token_sha256: {HASH}\n    rate_per_min: yes", 10,
     "clients.bot.rate_per_min"),
])
def test_true_or_false_where_a_number_belongs_is_refused_by_line_and_key(extra: str, line: int,
                                                                       key: str):
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + extra + "\n", file="team.yaml", env={})
    assert str(info.value) == f"team.yaml:{line}: {key}: must be a number, not true or false"


def test_a_boolean_weight_in_a_route_target_is_refused():
    text = BASE.replace("model: a}", "model: a, weight: true}")
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="team.yaml", env={})
    assert str(info.value) == ("team.yaml:6: routes.default.targets.0.weight: must be a number, "
                               "not true or false")


def test_numbers_and_the_boolean_settings_still_load():
    config = parse_config(BASE + "timeouts: {deadline_s: 2.5}\nretry: {attempts: 2, "
                          "respect_retry_after: no}\ncache: {enabled: yes, ttl_s: 0}\n"
                          "server: {session_idle_s: null}\n", env={})
    assert (config.timeouts.deadline_s, config.retry.attempts, config.cache.ttl_s) == (2.5, 2, 0)
    assert (config.retry.respect_retry_after, config.cache.enabled) == (False, True)


def test_check_config_refuses_a_boolean_deadline_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "team.yaml"
    path.write_text(BASE + "timeouts: {deadline_s: true}\n")
    assert main(["check-config", "--config", str(path)]) == 1
    out = capsys.readouterr()
    assert out.err.strip() == (f"mcp-router: config error: {path}:7: timeouts.deadline_s: "
                               "must be a number, not true or false")
    assert out.out == ""


def test_two_clients_with_one_token_hash_are_refused_naming_both():
    text = BASE + f"""\
  coding:
    targets:
      - {{provider: sim, model: b}}
clients:
  ci-bot:
    token_sha256: {HASH}
    routes: [coding]
    budgets: {{daily_usd: 5}}
  admin:
    token_sha256: {HASH}
    cost_report: all
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="team.yaml", env={})
    assert str(info.value) == ("team.yaml:16: clients.admin.token_sha256: the same token as "
                               "clients.ci-bot: each client needs a token of its own "
                               "(mcp-router token new admin)")


def test_clients_with_tokens_of_their_own_load():
    text = BASE + f"""\
clients:
  ci-bot: {{token_sha256: {HASH}}}
  admin: {{token_sha256: {hash_token("mcpr_another")}}}
"""
    assert list(parse_config(text, env={}).clients) == ["ci-bot", "admin"]


LISTED = BASE.replace("api_key_env: null}", "api_key_env: null, models: [a, b]}")


@pytest.mark.parametrize(("entry", "meant"), [
    ("a", "; did you mean sim/a?"),  # calls are checked as provider/model
    ("Sim/*", "; did you mean sim/*?"),
    ("smi/*", "; did you mean sim/*?"),
    ("sim", "; did you mean sim/*?"),
    ("other/a", ""),
])
def test_a_client_models_entry_that_can_match_nothing_is_refused_naming_it(entry: str,
                                                                           meant: str):
    text = LISTED + f"clients:\n  bot:\n    token_sha256: {HASH}\n    models: [sim/a, {entry}]\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="team.yaml", env={})
    assert str(info.value) == (
        f"team.yaml:10: clients.bot.models.1: {entry!r} matches no provider/model: give "
        "provider/model or provider/* with a configured provider (providers are: sim)" + meant)


def test_client_models_entries_with_a_configured_provider_load():
    text = LISTED + (f"clients:\n  bot:\n    token_sha256: {HASH}\n"
                     "    models: [sim/a, sim/*, s*, '*', '*/b']\n")
    assert parse_config(text, env={}).clients["bot"].models == ["sim/a", "sim/*", "s*", "*",
                                                                 "*/b"]
