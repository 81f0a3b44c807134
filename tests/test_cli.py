"""The command line explains itself: `mcp-router <command> --help` says what each flag does."""

from __future__ import annotations

import argparse

from mcp_router.cli import _parser


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

