"""The command line refuses what it would not use: ports out of range, hosts that name no
address, and serving options given to a command that does not read them; every documented
invocation still reads as before."""

from __future__ import annotations

import logging

import pytest

from mcp_router.cli import describe_config, parse_args
from mcp_router.cli.options import log_level
from mcp_router.config import parse_config

# Each form README.md and ARCHITECTURE.md show, and those the snippets, the demo and the
# tools generate.
DOCUMENTED = [
    [],
    ["serve"],
    ["--config", "team.yaml"],
    ["--config", "team.yaml", "serve"],
    ["serve", "--config", "team.yaml"],
    ["serve", "--config", "team.yaml", "--transport", "stdio"],
    ["serve", "--transport", "streamable-http"],
    ["serve", "--transport", "sse", "--host", "127.0.0.1", "--port", "8000"],
    ["--config", "team.yaml", "--transport", "streamable-http", "--host", "127.0.0.1",
     "--port", "0"],
    ["demo"],
    ["simulate"],
    ["simulate", "--port", "8787", "--latency-ms", "50"],
    ["check-config"],
    ["check-config", "--config", "team.yaml"],
    ["--config", "team.yaml", "check-config"],
    ["config", "claude-desktop"],
    ["config", "cursor", "--config", "team.yaml"],
    ["config", "vscode", "--url", "http://router.internal:8000/mcp"],
    ["token", "new", "ci-bot"],
]


@pytest.mark.parametrize("argv", DOCUMENTED, ids=" ".join)
def test_every_documented_invocation_is_read_without_a_word(argv: list[str],
                                                            capsys: pytest.CaptureFixture[str]):
    parse_args(argv)
    assert capsys.readouterr().err == ""


def test_no_command_serves_over_stdio_with_the_defaults():
    args = parse_args([])
    assert (args.command, args.config, args.transport, args.host, args.port) == (
        None, None, "stdio", "127.0.0.1", 8000)


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(("argv", "said"), [
    (["--config", "team.yaml", "demo"],
     "--config does not apply to `demo` (it runs its own offline config against the simulator)"),
    (["--transport", "sse", "check-config"], "--transport does not apply to `check-config`"),
    (["--config", "team.yaml", "--host", "127.0.0.2", "token", "new", "ci-bot"],
     "--config and --host do not apply to `token`"),
    (["--transport", "sse", "config", "cursor"], "--transport does not apply to `config`"),
    (["--port", "9000", "simulate"],
     "--port before `simulate` is not read: give it after the command, "
     "mcp-router simulate --port N"),
])
def test_serving_options_before_a_command_that_does_not_read_them_are_refused(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str]):
    assert refusal(argv, capsys) == f"mcp-router: error: {said}"


@pytest.mark.parametrize(("argv", "said"), [
    (["serve", "--port", "99999"],
     "argument --port: 99999 is not a port number: use 0 to 65535 (0 picks a free port)"),
    (["--port", "-1"],
     "argument --port: -1 is not a port number: use 0 to 65535 (0 picks a free port)"),
    (["simulate", "--port", "65536"],
     "argument --port: 65536 is not a port number: use 0 to 65535 (0 picks a free port)"),
    (["simulate", "--port", "http"], "argument --port: 'http' is not a port number (0 to 65535)"),
    (["serve", "--transport", "sse", "--host", ""],
     "argument --host: '' is empty: name an address, e.g. 127.0.0.1 (the default)"),
    (["serve", "--host", "[::1"],
     "argument --host: '[::1' is not an address: an IPv6 address goes with or without "
     "brackets ([::1] or ::1), and the port goes in --port"),
    (["serve", "--host", "127.0.0.1:8000"],
     "argument --host: '127.0.0.1:8000' is not an address: an IPv6 address goes with or "
     "without brackets ([::1] or ::1), and the port goes in --port"),
])
def test_a_port_or_host_that_cannot_be_bound_is_refused_by_name(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str]):
    assert refusal(argv, capsys).split(" error: ", 1)[1] == said


@pytest.mark.parametrize("given", ["[::1]", "::1", "[0:0:0:0:0:0:0:1]"])
def test_an_ipv6_host_is_taken_with_or_without_brackets(given: str):
    assert parse_args(["serve", "--transport", "sse", "--host", given]).host == "::1"


@pytest.mark.parametrize(("argv", "ignored"), [
    (["serve", "--transport", "stdio", "--port", "1"], "--port"),
    (["--host", "127.0.0.2", "serve"], "--host"),
    (["--port", "9000", "serve", "--host", "localhost"], "--host and --port"),
])
def test_http_options_given_for_stdio_are_warned_of_and_serving_goes_on(
        argv: list[str], ignored: str, capsys: pytest.CaptureFixture[str]):
    # A host's config may carry them: warned of, not refused, so the server still starts.
    assert parse_args(argv).transport == "stdio"
    verb = "are" if " and " in ignored else "is"
    assert capsys.readouterr().err == (
        f"mcp-router: serving over stdio, so {ignored} (for --transport sse or "
        f"streamable-http) {verb} ignored\n")


@pytest.mark.parametrize(("value", "level"), [
    (None, "INFO"), ("", "INFO"), ("  ", "INFO"), ("debug", "DEBUG"), ("WARNING", "WARNING"),
    ("error", "ERROR")])
def test_mcp_router_log_names_the_level_and_empty_means_the_default(value: str | None,
                                                                    level: str):
    env = {} if value is None else {"MCP_ROUTER_LOG": value}
    assert log_level(env) == (level, None)


@pytest.mark.parametrize("value", ["bogus", "10", "verbose"])
def test_an_unknown_mcp_router_log_falls_back_to_info_with_a_warning(value: str):
    assert log_level({"MCP_ROUTER_LOG": value}) == (
        "INFO", f"mcp-router: MCP_ROUTER_LOG={value!r} is not a log level (DEBUG, INFO, "
                "WARNING or ERROR); logging at INFO")


def test_check_config_says_an_empty_key_variable_names_no_variable():
    config = parse_config("providers:\n  sim: {kind: openai, base_url: 'http://127.0.0.1:9/v1', "
                          "api_key_env: SIM_KEY}\nroutes:\n  default: {targets: [{provider: "
                          "sim, model: m}]}\n", env={})
    # Built around the config's own check, which may refuse "" as it is read.
    empty = config.providers["sim"].model_copy(update={"api_key_env": ""})
    text = describe_config(config.model_copy(update={"providers": {"sim": empty}}), {})
    assert "  sim          openai    http://127.0.0.1:9/v1  [api_key_env is empty: no key " \
           "variable, skipped]" in text.splitlines()
    assert "key file None" not in text


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
def test_no_log_level_lets_the_sdk_write_whole_messages_to_stderr(level: str):
    """At DEBUG the SDK's SSE transport, and sse_starlette under it, log every message it
    receives and sends: the prompts, and the answers with their PII put back, in the host's
    log."""
    from mcp_router.cli import MESSAGE_LOGGERS, configure_logging

    saved = {name: logging.getLogger(name).level for name in ("", "httpx", *MESSAGE_LOGGERS)}
    try:
        logging.getLogger().setLevel(level)  # as basicConfig sets it outside pytest
        configure_logging(level)
        for name in ("mcp.server.sse", "sse_starlette.sse"):  # the transport, what it sends
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG)
            assert logging.getLogger(name).isEnabledFor(logging.WARNING)
    finally:
        for name, was in saved.items():
            logging.getLogger(name).setLevel(was)
