"""The YAML of a config: whatever the file holds, a config error naming file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_router.config import load_config, parse_config
from mcp_router.config_yaml import MAX_DEPTH, read_yaml
from mcp_router.errors import ConfigError
from tests.fixtures.configs import TWO_MODELS

BASE = TWO_MODELS


def broken(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), file="team.yaml", env={})
    return info.value


def test_a_file_that_is_not_utf8_names_the_byte_and_its_line(tmp_path: Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"providers:\n  s\xe9m:\n    kind: openai\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.file, info.value.line) == (str(path), 2)
    assert str(info.value) == f"{path}:2: not UTF-8: byte 0xe9 at column 4; save the file as UTF-8"


def test_a_utf16_file_is_told_as_such(tmp_path: Path):
    path = tmp_path / "wide.yaml"
    path.write_bytes(BASE.encode("utf-16"))
    with pytest.raises(ConfigError, match="it looks like UTF-16; save the file as UTF-8"):
        load_config(path)


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path: Path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(BASE.encode("utf-8-sig"))
    assert list(load_config(path, env={}).providers) == ["sim"]


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    ("providers:\n  - sim\nroutes:\n  default: {targets: [{provider: sim, model: m}]}\n",
     1, "providers", "must be a mapping (name: value), not a list"),
    ("providers: sim\nroutes:\n  default: {targets: [{provider: sim, model: m}]}\n",
     1, "providers", "must be a mapping (name: value), not a string"),
    ("providers:\nroutes:\n  default: {targets: [{provider: sim, model: m}]}\n",
     1, "providers", "must be a mapping (name: value), not empty"),
    (BASE.replace("routes:\n  default:\n", "routes:\n  - default:\n"), 6, "routes",
     "must be a mapping (name: value), not a list"),
    (BASE + "retry: 3\n", 11, "retry", "must be a mapping of settings (attempts, on_status, "
     "backoff_initial_s, backoff_max_s, respect_retry_after, fallback_on_finish), not a number"),
    (BASE.replace("  sim:\n    kind", "  sim: [x]\n  sam:\n    kind"), 2, "providers.sim",
     "must be a mapping of settings (kind, base_url, api_key_env, api_key_file, headers, "
     "models, timeout_s, stream), not a list"),
])
def test_a_section_of_the_wrong_shape_says_what_it_must_be(text: str, line: int, key: str,
                                                          message: str):
    err = broken(text)
    assert (err.file, err.line, err.key) == ("team.yaml", line, key)
    assert str(err) == f"team.yaml:{line}: {key}: {message}"


def test_a_value_yaml_reads_as_an_impossible_date_is_read_as_written():
    err = broken(BASE + "x_date: 2024-99-99\n")
    assert (err.line, err.key) == (11, "x_date")
    assert "unknown key" in str(err)


def test_a_date_like_header_value_stays_the_text_written():
    config = parse_config(BASE.replace("    models:", "    headers: {anthropic-version: "
                                       "2023-06-01}\n    models:"), env={})
    assert config.providers["sim"].headers == {"anthropic-version": "2023-06-01"}


@pytest.mark.parametrize("extra", ["x: &a [*a]\n", "x: &a {y: *a}\n", "x: &a [[1, *a]]\n"])
def test_a_recursive_alias_is_refused_with_its_line(extra: str):
    err = broken(BASE + extra)
    assert err.line == 11 and err.key is not None and err.key.startswith("x.")
    assert "an alias to the list or mapping that holds it (anchored at line 11) would " \
           "never end" in str(err)


@pytest.mark.parametrize("brackets", ["[" * 5000 + "]" * 5000, "{a: " * 3000 + "1" + "}" * 3000])
def test_nesting_thousands_deep_is_refused_not_a_recursion_error(brackets: str):
    err = broken(BASE + f"x: {brackets}\n")
    assert (err.line, err.key) == (11, None)
    assert str(err).endswith(f"lists and mappings nest more than {MAX_DEPTH} levels deep here")


def test_nesting_as_deep_as_a_policy_needs_is_fine():
    deep = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    assert broken(BASE + f"x: {deep}\n").key == "x"  # an unknown key, nothing worse


def test_nested_aliases_are_built_once_not_expanded_a_billion_times():
    laughs = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for name, previous in zip("bcdefgh", "abcdefg", strict=True):
        laughs += f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]\n"
    data, lines = read_yaml(BASE + laughs, "laughs.yaml")
    assert len(lines) < 200  # one line per key and per alias written, not per path reached
    assert data["h"][8][8][8][8][8][8][8] == ["x"] * 9
    assert broken(BASE + laughs).key == "a"


def test_an_alias_shared_by_two_providers_expands_each_one():
    text = (BASE.replace("  sim:", "  sim: &p").replace("http://127.0.0.1:9/v1", "${SIM}/v1")
            .replace("    models: [m1, m2]\n", "    models: [m1, m2]\n  sam: *p\n"))
    config = parse_config(text, env={"SIM": "http://127.0.0.1:7"})
    assert config.providers["sim"] == config.providers["sam"]
    assert config.providers["sam"].base_url == "http://127.0.0.1:7/v1"


@pytest.mark.parametrize(("text", "line", "key", "first"), [
    (BASE + "pii: {action: block}\nbudgets: {daily_usd: 1}\npii: {action: mask}\n",
     13, "pii", 11),
    (BASE.replace("    kind: openai\n", "    kind: openai\n    kind: anthropic\n"),
     4, "providers.sim.kind", 3),
    (BASE + "default_route: default\ndefault_route: other\n", 12, "default_route", 11),
    (BASE.replace("{provider: sim, model: m1}", "{provider: sim, model: m1, model: m2}"),
     9, "routes.default.targets.0.model", 9),
    (BASE.replace("  sim:\n", "  sim:\n    kind: openai\n  sim:\n"), 4, "providers.sim", 2),
    (BASE + "clients:\n  yes: {}\n  'yes': {}\n", 13, "clients.yes", 12),
])
def test_a_duplicate_key_names_both_lines(text: str, line: int, key: str, first: int):
    err = broken(text)
    assert (err.file, err.line, err.key) == ("team.yaml", line, key)
    assert str(err) == (f"team.yaml:{line}: {key}: duplicate key {key.split('.')[-1]!r} "
                        f"(first at line {first})")


def test_the_shipped_policy_with_a_block_appended_again_is_refused():
    shipped = Path(__file__).parents[1] / "configs" / "orchestra.yaml"
    text = shipped.read_text() + "\n# team addition\npii: {action: block}\n"
    err = broken(text)
    assert err.key == "pii" and "duplicate key 'pii' (first at line" in str(err)


@pytest.mark.parametrize("name", ["yes", "no", "on", "off", "Yes", "NO", "true", "null", "1"])
def test_a_key_keeps_the_spelling_written(name: str):
    text = BASE.replace("  sim:", f"  {name}:").replace("provider: sim", f"provider: '{name}'")
    assert list(parse_config(text, env={}).providers) == [name]


def test_an_unquoted_yes_where_a_name_belongs_says_to_quote_it():
    err = broken(BASE.replace("  sim:", "  yes:").replace("provider: sim", "provider: yes"))
    assert err.key == "routes.default.targets.0.provider"
    assert str(err).endswith("must be a string, not true/false: put it in quotes (YAML reads "
                             "yes, no, on, off and numbers unquoted as values of their own)")


def test_a_syntax_error_gives_the_column_and_where_the_construct_began():
    err = broken(BASE.replace("{provider: sim, model: m2}", "{provider: sim, model: m2"))
    assert (err.file, err.line, err.key) == ("team.yaml", 11, None)
    assert str(err) == ("team.yaml:11: not valid YAML: expected ',' or '}', but got "
                        "'<stream end>' at column 1 (while parsing a flow mapping at line 10, "
                        "column 9)")


def test_a_syntax_error_without_a_context_still_gives_the_column():
    assert str(broken("a: b: c\n")) == ("team.yaml:1: not valid YAML: mapping values are not "
                                        "allowed here at column 5")


def test_a_control_character_is_named_with_its_line_and_column():
    err = broken(BASE + "x: a\x01\n")
    assert str(err) == ("team.yaml:11: not valid YAML: special characters are not allowed: "
                        "U+0001 at column 5")


@pytest.mark.parametrize(("text", "line", "key", "tag"), [
    (BASE.replace("models: [m1, m2]", "models: !env [m1]"), 5, "providers.sim.models", "!env"),
    (BASE + "pii: !include {file: pii.yaml}\n", 11, "pii", "!include"),
    (BASE + "x: !!set {a, b}\n", 11, "x", "!!set"),
    (BASE + "x: !!omap [a: 1]\n", 11, "x", "!!omap"),
    (BASE + "x: !!binary aGk=\n", 11, "x", "!!binary"),
    (BASE + "!env x: 1\n", 11, None, "!env"),
])
def test_a_tag_on_a_list_a_mapping_or_a_key_is_refused_with_its_line(
        text: str, line: int, key: str | None, tag: str):
    err = broken(text)
    assert (err.file, err.line, err.key) == ("team.yaml", line, key)
    assert str(err).endswith(f"the tag {tag} is not supported: a config is plain YAML (${{NAME}} "
                             "in base_url and headers reads a variable)")


def test_a_standard_tag_still_reads():
    config = parse_config(BASE.replace("models: [m1, m2]", "models: !!seq [!!str m1, m2]")
                          + "retry: !!map {attempts: !!int '2'}\n", env={})
    assert config.retry.attempts == 2 and config.providers["sim"].models == ["m1", "m2"]


def test_a_value_that_does_not_fit_its_explicit_tag_is_refused():
    err = broken(BASE + "retry: {attempts: !!int two}\n")
    assert str(err) == "team.yaml:11: retry.attempts: not a valid !!int"


def test_a_merge_key_is_refused_in_words():
    err = broken(BASE + "x: &x {a: 1}\ny:\n  <<: *x\n")
    assert (err.line, err.key) == (13, "y")
    assert "merge keys (<<) are not supported" in str(err)


YAMLISH = st.lists(st.sampled_from([*"ab: -[]{}&*!|>'\"#%@`,?\n\t\\x0é\x01", "&a ", "*a",
                                    "!!int ", "!x ", "<<: ", "2024-99-99", "yes", "providers:",
                                    "routes:", "\n  ", "\n    ", "${X}", "base_url: "]),
                   max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(YAMLISH, YAMLISH.map(lambda tail: BASE + tail)))
def test_any_text_is_a_config_or_a_config_error(text: str):
    try:
        parse_config(text, file="fuzz.yaml", env={"X": ""})
    except ConfigError as exc:
        assert exc.file == "fuzz.yaml"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_are_a_config_or_a_config_error(tmp_path_factory: pytest.TempPathFactory,
                                                  raw: bytes):
    path = tmp_path_factory.mktemp("fuzz") / "any.yaml"
    path.write_bytes(raw)
    try:
        load_config(path, env={})
    except ConfigError as exc:
        assert exc.file == str(path)
