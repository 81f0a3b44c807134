"""What argparse cannot check alone: ports, hosts and durations, options given to a command
that does not read them, and the log level from the environment."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["DEFAULT_LOG_LEVEL", "SERVING", "check_options", "host", "log_level", "milliseconds",
           "port", "serve_options"]

SERVING = ("config", "transport", "host", "port")
"""The serving options, which the root parser takes too: `mcp-router --config X` serves."""
READS = {"serve": set(SERVING), "check-config": {"config"}, "config": {"config"}}
"""The serving options each command reads when given before its name (others read none)."""
HTTP_ONLY = ("host", "port")
BEFORE, AFTER = "options_before", "options_after"


def port(text: str) -> int:
    """A TCP port for argparse: 0 (a free one) to 65535."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a port number: use 0 to 65535 (0 "
                                         "picks a free port)")
    return number


def milliseconds(text: str) -> float:
    """A duration in milliseconds for argparse: a finite number, 0 or more."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a usable number of milliseconds: "
                                         "use a finite number, 0 or more")
    return number


def host(text: str) -> str:
    """An address to bind, for argparse: a name or an IP address; an IPv6 one may come in
    brackets, as in URLs (`[::1]`), and is returned without them."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty: name an address, e.g. "
                                         "127.0.0.1 (the default)")
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if bare != text or ":" in bare or "[" in bare or "]" in bare:
        try:
            return str(ipaddress.IPv6Address(bare))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an address: an IPv6 address goes with or without brackets "
                "([::1] or ::1), and the port goes in --port") from None
    return text


class _Noted(argparse.Action):
    """Stores the value, and notes that the option was given (a default is not noted)."""

    NOTES = BEFORE

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        noted = getattr(namespace, self.NOTES, None) or set()
        setattr(namespace, self.NOTES, noted | {self.dest})


class _NotedAfter(_Noted):
    # A subcommand's options are parsed into a namespace of their own and copied over the
    # root's, so they are noted apart from those given before the command.
    NOTES = AFTER


def serve_options(parser: argparse.ArgumentParser, given_before: bool = False) -> None:
    """The serving options. A subcommand's copies have no defaults of their own
    (`given_before`), so `mcp-router --config X serve` keeps X instead of resetting it."""
    def default(value: object) -> object:
        return argparse.SUPPRESS if given_before else value

    noted = _NotedAfter if given_before else _Noted
    parser.add_argument("--config", action=noted, default=default(None),
                        help="config file (default: $MCP_ROUTER_CONFIG, then the shipped team "
                             "policy)")
    parser.add_argument("--transport", action=noted, choices=["stdio", "sse", "streamable-http"],
                        default=default("stdio"), help="stdio for one host (default); sse or "
                                                       "streamable-http to serve over HTTP")
    parser.add_argument("--host", action=noted, type=host, default=default("127.0.0.1"),
                        help="HTTP bind address (default: 127.0.0.1; another address needs "
                             "`clients:` and `server.allowed_hosts` in the config)")
    parser.add_argument("--port", action=noted, type=port, default=default(8000),
                        help="HTTP port (default: 8000; 0 picks a free one)")


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse serving options given before a command that does not read them (argparse
    already refuses them after it); warn of HTTP options given for stdio, which a host's
    config may carry and which must not stop it from starting the server."""
    command = args.command or "serve"
    before: set[str] = getattr(args, BEFORE, set())
    if unread := [name for name in SERVING if name in before - READS.get(command, set())]:
        flags = " and ".join(f"--{name}" for name in unread)
        if command == "simulate" and unread == ["port"]:
            parser.error("--port before `simulate` is not read: give it after the command, "
                         "mcp-router simulate --port N")
        hint = " (it runs its own offline config against the simulator)" \
            if command == "demo" else ""
        parser.error(f"{flags} {'does' if len(unread) == 1 else 'do'} not apply to "
                     f"`{command}`{hint}")
    given = before | getattr(args, AFTER, set())
    if command == "serve" and args.transport == "stdio" and (
            ignored := [f"--{name}" for name in HTTP_ONLY if name in given]):
        verb = "is" if len(ignored) == 1 else "are"
        print(f"mcp-router: serving over stdio, so {' and '.join(ignored)} (for --transport "
              f"sse or streamable-http) {verb} ignored", file=sys.stderr)


DEFAULT_LOG_LEVEL = "INFO"
SHOWN_LEVELS = "DEBUG, INFO, WARNING or ERROR"


def log_level(env: Mapping[str, str]) -> tuple[str, str | None]:
    """The level MCP_ROUTER_LOG names (empty or unset: INFO), and a warning when it names
    none. A bad value must not stop a host from starting the server, so it falls back."""
    value = env.get("MCP_ROUTER_LOG", "").strip()
    if not value:
        return DEFAULT_LOG_LEVEL, None
    if value.upper() in logging.getLevelNamesMapping():
        return value.upper(), None
    return DEFAULT_LOG_LEVEL, (f"mcp-router: MCP_ROUTER_LOG={value!r} is not a log level "
                               f"({SHOWN_LEVELS}); logging at {DEFAULT_LOG_LEVEL}")
