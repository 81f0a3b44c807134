"""The `mcp-router` command: serve (default), demo, simulate, check-config, token, config."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path

import anyio

from mcp_router import __version__
from mcp_router.cli.check import config_warnings, describe_config
from mcp_router.cli.options import check_options, log_level, milliseconds, port, serve_options
from mcp_router.config import data_home, load_config, shipped_config
from mcp_router.errors import ConfigError, DataError, ListenError

__all__ = ["config_path", "config_warnings", "describe_config", "main", "parse_args"]

log = logging.getLogger("mcp_router")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    try:
        try:
            return _run(argv)
        finally:  # flushed here, where a reader that has gone is handled, not at exit
            if sys.stdout is not None:
                sys.stdout.flush()
    except (BrokenPipeError, BaseExceptionGroup) as exc:
        if isinstance(exc, BaseExceptionGroup) and exc.split(BrokenPipeError)[1] is not None:
            raise
        # The reader has gone (`mcp-router check-config | head -1`): say nothing more, and
        # point stdout at the null device so the flush at exit cannot fail again.
        with suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 1


# Loggers that write whole protocol messages at DEBUG, the prompts and the answers in them
# (the answers with their PII put back): the SDK's SSE transport, and sse_starlette, which
# it sends through and which logs every event's bytes. Stderr is the host's log, so they
# stay at INFO whatever MCP_ROUTER_LOG says.
MESSAGE_LOGGERS = ("mcp.server.sse", "sse_starlette", "sse_starlette.sse")


def configure_logging(level: str) -> None:
    """Log to stderr at `level` (stdout may be the MCP protocol's), never a message's text."""
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # httpx logs every request at INFO: a line per upstream call
        logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in MESSAGE_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(level)))


def _run(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    level, warning = log_level(os.environ)
    if warning:
        print(warning, file=sys.stderr)
    configure_logging(level)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"mcp-router: config error: {exc}", file=sys.stderr)
        return 1
    except (DataError, ListenError) as exc:
        print(f"mcp-router: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line read, with options a command does not use refused (exit 2)."""
    parser = _parser()
    args = parser.parse_args(argv)
    check_options(parser, args)
    return args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-router", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mcp-router {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the MCP server (the default command)",
                                description="Serve the four tools over stdio (for the host "
                                            "that starts this process) or over HTTP.")
    serve_options(parser)
    serve_options(serve, given_before=True)
    parser.set_defaults(handler=_serve)
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser("demo", help="offline scripted session against the simulator")
    demo.set_defaults(handler=_demo)

    simulate = commands.add_parser("simulate", help="run the simulated upstream (loopback)")
    simulate.add_argument("--port", type=port, default=8787,
                          help="port on 127.0.0.1 (default: 8787; 0 picks a free one)")
    simulate.add_argument("--latency-ms", type=milliseconds, default=0.0,
                          help="added before every answer (default: 0)")
    simulate.set_defaults(handler=_simulate)

    check = commands.add_parser("check-config", help="validate a config, print its routes")
    check.add_argument("--config", default=argparse.SUPPRESS,
                       help="config file (default: $MCP_ROUTER_CONFIG, then the shipped team "
                            "policy)")
    check.set_defaults(handler=_check_config)

    token = commands.add_parser("token", help="client tokens for a server shared over HTTP")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    new = token_commands.add_parser("new", help="make a token for client NAME; prints it once "
                                                "and the lines to paste under clients:")
    new.add_argument("name")
    new.set_defaults(handler=_token_new)

    snippet = commands.add_parser("config", help="print the snippet that adds this server "
                                                 "to an MCP host")
    snippet.add_argument("client", choices=["claude-desktop", "claude-code", "cursor", "vscode"])
    snippet.add_argument("--config", default=argparse.SUPPRESS,
                         help="config file the host should start the server with")
    snippet.add_argument("--url", help="connect to a server already serving over HTTP at this "
                                       "URL (e.g. http://router.internal:8000/mcp, or /sse for "
                                       "SSE; without a path, /mcp) instead of starting one; "
                                       "with a bearer token unless it is a loopback server "
                                       "without clients")
    snippet.set_defaults(handler=_snippet)
    return parser


def config_path(arg: str | None) -> Path:
    """--config, else $MCP_ROUTER_CONFIG, else the shipped team policy."""
    chosen = arg or os.environ.get("MCP_ROUTER_CONFIG")
    return Path(chosen) if chosen else shipped_config("orchestra.yaml")


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between two young-generation collections (CPython's default is 700)."""


def settle_garbage_collector() -> None:
    """Tune the collector for a long-lived server whose calls make many short-lived objects.

    Everything built at startup (config, schemas, compiled patterns, the SDK's models) is
    moved out of the collector's sight with `gc.freeze`, so full collections stop walking
    it. A call's objects mostly die by reference counting before any collection; at
    CPython's default threshold a collection still ran every call or so and walked the
    objects of the call in flight. Cycles are still collected, only less often.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


TERMINAL_HINT = ("mcp-router: serving MCP over stdin and stdout, for an MCP host to start and "
                 "drive; there is nothing to type here. `mcp-router config <host>` prints the "
                 "entry that adds it to a host, `mcp-router demo` shows a session. Ctrl-C stops.")


def _serve(args: argparse.Namespace) -> int:
    from mcp_router.clock import LoopClock
    from mcp_router.ledger import Ledger
    from mcp_router.provider_keys import (
        Scrubber,
        config_secrets,
        install_log_scrubber,
        provider_keys,
    )
    from mcp_router.server import create_server
    from mcp_router.server.http_auth import serve_http
    from mcp_router.server.http_bind import bind_refusal
    from mcp_router.server.stdio import serve_stdio

    path = config_path(args.config)
    config = load_config(path)
    if args.transport != "stdio" and (
            refusal := bind_refusal(args.host, bool(config.clients), config.server)):
        print(f"mcp-router: {refusal}", file=sys.stderr)
        return 2
    home = data_home(os.environ)
    # The ledger, cached answers and audit log are the user's alone, in a data directory
    # that may already exist with wider permissions; so is every file the server creates.
    os.umask(0o077)
    # Opened once here, so a data directory or ledger that cannot be used is said in one line
    # before a host connects, not as a traceback from the first session. The budget guards'
    # start-up sums are read too: a ledger damaged past its header and schema fails only
    # there. (They read this month's rows; `PRAGMA quick_check` would read every month's.)
    with Ledger.in_home(home, LoopClock()) as ledger:
        ledger.position()
        ledger.spent("month")
    keys = provider_keys(config.providers, os.environ, base=path.parent)
    server = create_server(config, home=home, keys=keys)
    scrubber = Scrubber(config_secrets(config.providers, keys))
    install_log_scrubber(scrubber)  # after MCPServer has set up its logging
    log.info("config %s, data under %s, transport %s", path, home, args.transport)
    settle_garbage_collector()
    if args.transport == "stdio":
        if sys.stdin.isatty():
            print(TERMINAL_HINT, file=sys.stderr)
        anyio.run(serve_stdio, server)
    else:
        # uvicorn sets its loggers' level itself: MCP_ROUTER_LOG's (WARNING drops the line
        # it logs per request), as for ours.
        level, _ = log_level(os.environ)  # a bad value was warned of at startup
        anyio.run(partial(serve_http, server, args.transport, host=args.host, port=args.port,
                          config=config.server, scrubber=scrubber, log_level=level,
                          tokens_from=path.resolve() if config.clients else None))
    return 0


def _token_new(args: argparse.Namespace) -> int:
    from mcp_router.access import new_token, token_instructions
    from mcp_router.shared_config import valid_client_name

    if not valid_client_name(args.name):
        print(f"mcp-router: client name {args.name!r}: use letters, digits and _.@-",
              file=sys.stderr)
        return 2
    print(token_instructions(args.name, new_token()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mcp_router.cli.demo import run_demo

    return run_demo()


def _simulate(args: argparse.Namespace) -> int:
    from mcp_router.simulator import serve

    serve(host="127.0.0.1", port=args.port, latency_ms=args.latency_ms)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from mcp_router.provider_keys import provider_keys

    path = config_path(args.config)
    config = load_config(path)
    keys = provider_keys(config.providers, os.environ, base=path.parent)
    print(f"{path}: ok")
    print(describe_config(config, keys))
    return 0


def _snippet(args: argparse.Namespace) -> int:
    from mcp_router import snippets

    url = note = None
    if args.url:
        try:
            url, note = snippets.endpoint_url(args.url)
        except ValueError as exc:
            print(f"mcp-router config: --url {exc}", file=sys.stderr)
            return 2
    path = config_path(args.config).resolve()
    config = snippets.snippet_config(path)
    if url:
        token = bool(config.clients) or not snippets.serves_here(url)
        hint, body = snippets.remote_snippet(args.client, url, token)
    else:
        hint, body = snippets.client_snippet(args.client, config, path, os.environ)
    if note:
        print(f"mcp-router config: {note}", file=sys.stderr)
    print(hint, file=sys.stderr)
    print(body)
    return 0
