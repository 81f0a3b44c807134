"""Config values that would only fail later (at start, or at every call) are refused at load,
naming file, line and key, and never repeating a pasted secret."""

from __future__ import annotations

import os
import textwrap
import traceback
from pathlib import Path

import pytest

from mcp_router.cli import main
from mcp_router.config import load_config, parse_config, shipped_config
from mcp_router.errors import ConfigError
from mcp_router.provider_keys import provider_keys
from tests.fixtures.configs import TWO_MODELS

BASE = TWO_MODELS


def broken(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), file="team.yaml", env=env or {})
    return info.value


def with_provider_line(line: str) -> str:
    return BASE.replace("    kind: openai\n", f"    kind: openai\n    {line}\n")


@pytest.mark.parametrize(("pii", "line", "key", "message"), [
    ("  entities: [email, emial]\n", 12, "pii.entities.1",
     "unknown entity type 'emial'; did you mean email?"),
    ("  actions: {phone: mask, emial: block}\n", 12, "pii.actions.emial",
     "unknown entity type 'emial'; did you mean email?"),
    ("  answer_actions:\n    secrt: block\n", 13, "pii.answer_actions.secrt",
     "unknown entity type 'secrt'; did you mean secret?"),
    ("  entities: [passport]\n", 12, "pii.entities.0",
     "unknown entity type 'passport'; types are: email, phone, ssn, credit_card, iban, "
     "ip_address, secret, profanity"),
])
def test_an_unknown_pii_entity_type_is_a_config_error(pii: str, line: int, key: str,
                                                      message: str):
    err = broken(BASE + "pii:\n" + pii)
    assert (err.file, err.line, err.key) == ("team.yaml", line, key)
    assert str(err) == f"team.yaml:{line}: {key}: {message}"


def test_custom_pattern_names_are_entity_types_a_config_may_name():
    config = parse_config(BASE + "pii:\n  custom: [{name: employee_id, pattern: 'EMP-\\d+'}]\n"
                          "  entities: [employee_id, email]\n"
                          "  actions: {employee_id: block}\n"
                          "  answer_actions: {employee_id: mask}\n", env={})
    assert config.pii.actions == {"employee_id": "block"}


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_a_pii_typo_stops_check_config_and_serve_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: str):
    monkeypatch.setenv("MCP_ROUTER_HOME", str(tmp_path / "home"))
    path = tmp_path / "pii_typo.yaml"
    path.write_text(BASE + "pii:\n  entities: [emial]\n")
    assert main([command, "--config", str(path)]) == 1
    out = capsys.readouterr()
    assert out.err.strip() == (f"mcp-router: config error: {path}:12: pii.entities.0: unknown "
                               "entity type 'emial'; did you mean email?")
    assert "ok" not in out.out


@pytest.mark.parametrize(("url", "env", "shown"), [
    ("127.0.0.1:8787/v1", {}, "(got '127.0.0.1:8787/v1')"),
    ("ftp://x.test/v1", {}, "(got 'ftp://x.test/v1')"),
    ("''", {}, "(got '')"),
    ("http:///v1", {}, "(got 'http:///v1')"),
    ("${SIM_URL}/v1", {"SIM_URL": ""}, "(got '/v1'; SIM_URL is set but empty)"),
    ("${SIM_URL}/v1", {"SIM_URL": "localhost:8787"},
     "(got 'localhost:8787/v1', from ${SIM_URL})"),
    ("'gw.test/v1?api_key=SECRETVALUE123'", {}, "(got 'gw.test/v1')"),
    ("'user:hunter2pass@gw.test/v1'", {}, "(got 'gw.test/v1')"),
])
def test_a_base_url_that_is_no_http_url_is_refused(url: str, env: dict[str, str], shown: str):
    err = broken(BASE.replace("http://127.0.0.1:9/v1", url), env)
    assert (err.file, err.line, err.key) == ("team.yaml", 4, "providers.sim.base_url")
    assert str(err) == ("team.yaml:4: providers.sim.base_url: must be an absolute http:// or "
                        f"https:// URL {shown}")


@pytest.mark.parametrize("url", ["https://api.test/v1", "HTTP://127.0.0.1:9", "http://[::1]:8/v1",
                                 "http://u:p@gw.test/v1?key=x"])
def test_http_and_https_base_urls_load(url: str):
    config = parse_config(BASE.replace("http://127.0.0.1:9/v1", url), env={})
    assert config.providers["sim"].base_url == url


def test_a_base_url_whose_variable_is_kept_as_written_is_judged_when_served():
    # How `mcp-router config <host>` reads a config: each variable holds its own reference.
    config = parse_config(BASE.replace("http://127.0.0.1:9/v1", "${SIM_URL}/v1"),
                          env={"SIM_URL": "${SIM_URL}"})
    assert config.providers["sim"].base_url == "${SIM_URL}/v1"


def test_the_demo_config_with_an_empty_simulator_variable_names_it():
    with pytest.raises(ConfigError) as info:
        load_config(shipped_config("demo.yaml"), env={"MCP_ROUTER_SIM_URL": ""})
    assert (info.value.line, info.value.key) == (8, "providers.openrouter.base_url")
    assert str(info.value).endswith("(got '/v1'; MCP_ROUTER_SIM_URL is set but empty)")


PASTED = ["sk-abc123secretvalue", "sk-or-v1-0123456789abcdef0123456789abcdef",
          "sk-ant-api03-AbCdEf0123456789", "AIzaSyA1b2C3d4E5f6G7h8I9j0K-LmNoPqRsTuV",
          "0123456789abcdef0123456789abcdef", "e3b0c44298fc1c149afbf4c8996fb924",
          "hf_AbCdEfGhIjKlMnOpQrStUvWxYz123456", "pplx-0123456789abcdefABCDEF"]


@pytest.mark.parametrize("key", PASTED)
def test_a_key_pasted_as_api_key_env_is_refused_and_never_repeated(key: str):
    err = broken(with_provider_line(f"api_key_env: '{key}'"))
    assert (err.file, err.line, err.key) == ("team.yaml", 4, "providers.sim.api_key_env")
    assert "looks like a key itself, not the name of a variable" in str(err)
    assert err.__cause__ is None and err.__suppress_context__
    assert key not in "".join(traceback.format_exception(err))


@pytest.mark.parametrize(("value", "message"), [
    ("''", "must be the NAME of an environment variable, not empty; leave api_key_env out "
     "for a provider that needs no key"),
    ("$OPENAI_API_KEY", "write the variable's name alone, without $ or braces: OPENAI_API_KEY"),
    ("'${OPENAI_API_KEY}'", "write the variable's name alone, without $ or braces: "
     "OPENAI_API_KEY"),
    ("OPENAI-KEY", "must be the NAME of an environment variable (letters, digits and _, not "
     "starting with a digit)"),
    ("1KEY", "must be the NAME of an environment variable (letters, digits and _, not "
     "starting with a digit)"),
])
def test_an_api_key_env_that_is_no_variable_name_is_refused(value: str, message: str):
    err = broken(with_provider_line(f"api_key_env: {value}"))
    assert str(err) == f"team.yaml:4: providers.sim.api_key_env: {message}"


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "_K", "team_openai_key_2024_prod", "k1",
                                  "MCP_ROUTER_DEMO_UNSET_KEY"])
def test_variable_names_are_accepted_as_api_key_env(name: str):
    assert parse_config(with_provider_line(f"api_key_env: {name}"),
                        env={}).providers["sim"].api_key_env == name


def test_an_empty_api_key_file_is_refused():
    err = broken(with_provider_line("api_key_file: ''"))
    assert (err.line, err.key) == (4, "providers.sim.api_key_file")
    assert "must name a file (relative to this config), not be empty" in str(err)


def test_a_missing_key_file_names_the_config_line_and_key_besides_the_file(tmp_path: Path):
    path = tmp_path / "kf.yaml"
    path.write_text(with_provider_line("api_key_file: nokey.txt"))
    config = load_config(path, env={})
    with pytest.raises(ConfigError) as info:
        provider_keys(config.providers, {}, base=tmp_path)
    assert (info.value.file, info.value.line, info.value.key) == (
        str(path), 4, "providers.sim.api_key_file")
    assert str(info.value) == (f"{path}:4: providers.sim.api_key_file: {tmp_path / 'nokey.txt'}:"
                               " cannot read key file: No such file or directory")


@pytest.mark.skipif(os.name == "nt", reason="no POSIX permission bits")
def test_a_key_file_others_can_read_names_where_the_config_gives_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    key = tmp_path / "sim.key"
    key.write_text("sk-secret-0123456789\n")
    key.chmod(0o644)
    path = tmp_path / "kf.yaml"
    path.write_text(with_provider_line("api_key_file: sim.key"))
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mcp-router: config error: {path}:4: providers.sim.api_key_file: "
                          f"{key}: key file is readable or writable by group or others")
    assert "sk-secret" not in err


@pytest.mark.parametrize(("old", "new", "line", "key", "message"), [
    ("base_url:", "url:", 4, "providers.sim.url",
     "unknown key; did you mean base_url? (base_url is required)"),
    ("    targets:", "    target:", 8, "routes.default.target",
     "unknown key; did you mean targets? (targets is required)"),
    ("    kind: openai", "    knd: openai", 3, "providers.sim.knd",
     "unknown key; did you mean kind? (kind is required)"),
    ("    base_url:", "    endpoint:", 4, "providers.sim.endpoint",
     "unknown key (base_url is missing); keys here are kind, base_url, api_key_env, "
     "api_key_file, headers, models, timeout_s, stream"),
])
def test_an_unknown_key_beside_a_missing_one_is_told_as_the_typo(old: str, new: str, line: int,
                                                                 key: str, message: str):
    err = broken(BASE.replace(old, new))
    assert str(err) == f"team.yaml:{line}: {key}: {message}"


def test_a_missing_default_route_the_user_never_named_blames_no_key_they_wrote():
    err = broken(BASE.replace("  default:", "  main:"))
    assert (err.line, err.key) == (6, "routes")
    assert str(err) == ("team.yaml:6: routes: no route named 'default' and no default_route "
                        "set; set default_route to one of: main")


def test_a_default_route_the_user_named_is_still_blamed_when_unknown():
    err = broken(BASE.replace("  default:", "  main:") + "default_route: fast\n")
    assert (err.line, err.key) == (11, "default_route")
    assert "unknown route 'fast'; routes are: main" in str(err)


@pytest.mark.parametrize("name", ["orchestra.yaml", "demo.yaml"])
def test_the_shipped_configs_still_load(name: str):
    config = load_config(shipped_config(name), env={"MCP_ROUTER_SIM_URL": "http://127.0.0.1:9"})
    assert config.routes
