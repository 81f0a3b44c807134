"""The command line explains itself: `mcp-router <command> --help` says what each flag does."""

from __future__ import annotations

import argparse

from mcp_router.cli import _parser, main


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {parser.prog: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _commands(sub)
    return found


def test_every_flag_of_every_command_has_help():
    undocumented = [
        f"{prog} {action.option_strings[0]}"
        for prog, parser in _commands(_parser()).items()
        for action in parser._actions
        if action.option_strings and not action.help
    ]
    assert undocumented == []



def test_a_config_given_before_the_command_is_the_one_used(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("providers: {}\nroutes: {}\nnot_a_key: 1\n")
    for argv in (["--config", str(broken), "check-config"],
                 ["check-config", "--config", str(broken)]):
        assert main(argv) == 1, argv
        assert "broken.yaml" in capsys.readouterr().err


def test_serving_options_given_before_serve_are_kept():
    args = _parser().parse_args(["--config", "team.yaml", "--transport", "sse", "--port", "9001",
                                 "serve", "--host", "127.0.0.2"])
    assert (args.config, args.transport, args.host, args.port) == (
        "team.yaml", "sse", "127.0.0.2", 9001)
    args = _parser().parse_args(["serve"])
    assert (args.config, args.transport, args.host, args.port) == (
        None, "stdio", "127.0.0.1", 8000)


WARNED = """\
providers:
  keyed: {kind: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: KEYED_KEY}
  local: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
routes:
  paid: {targets: [{provider: keyed, model: gpt-4o-mini}]}
  mixed: {targets: [{route: paid}, {provider: local, model: llama-local, weight: 3}]}
default_route: mixed
budgets: {daily_usd: 5}
"""


def test_check_config_warns_of_routes_without_keys_and_of_unpriced_models_under_a_budget():
    from mcp_router.cli import config_warnings
    from mcp_router.config import parse_config

    config = parse_config(WARNED, env={})
    assert config_warnings(config, {}) == [
        "route paid: no provider of it has its key set, so every call to it fails",
        "route mixed: weights matter only to strategy loadbalance; this route's strategy is "
        "fallback, so its targets are asked in order",
        "keyed/gpt-4o-mini has no price: while a budget is set it is not sent (add it under "
        "prices:)",
        "local/llama-local has no price: while a budget is set it is not sent (add it under "
        "prices:)"]
    priced = parse_config(WARNED.replace("budgets: {daily_usd: 5}", "prices: {local/*: "
                                         "{input_per_mtok: 0, output_per_mtok: 0}}"), env={})
    assert config_warnings(priced, {"keyed": "sk-1"}) == [
        "route mixed: weights matter only to strategy loadbalance; this route's strategy is "
        "fallback, so its targets are asked in order"]
