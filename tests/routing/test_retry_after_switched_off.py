"""`retry.respect_retry_after: false` switches the header off for the circuit too: a target that
sent Retry-After is asked by the next call, and its failures count like any others."""

from __future__ import annotations

import random

import pytest

from mcp_router.config import parse_config
from mcp_router.messages import Attempt
from mcp_router.routing.build import TreeBuilder
from mcp_router.routing.circuits import BreakerBoard
from tests.fixtures.scripted import ScriptedAdapter, completion, request, status_error
from tests.health.support import CLOCK
from tests.routing.support import call_for

pytestmark = [pytest.mark.virtual_time, pytest.mark.anyio]
CONFIG = """\
providers:
  cloud: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
  local: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
routes:
  default:
    targets:
      - {{provider: cloud, model: primary}}
      - {{provider: local, model: backup}}
retry: {{attempts: 3, backoff_initial_s: 0.5, backoff_max_s: {cap},
        respect_retry_after: {respect}}}
"""
"""A primary and a backup, with the retry settings a test chooses (`cap`, `respect`)."""
THREE_429S_THEN_ANSWERS = [status_error("cloud", 429, retry_after=120, model="primary")] * 3 + [
    completion("from primary")]


def routed(respect: bool, primary: ScriptedAdapter) -> TreeBuilder:
    config = parse_config(CONFIG.format(cap=1, respect=str(respect).lower()), env={})
    adapters = {"cloud": primary, "local": ScriptedAdapter("local", [completion("from backup")])}
    return TreeBuilder(config, adapters, CLOCK, random.Random(3), BreakerBoard(CLOCK))


def outcomes(attempts: list[Attempt]) -> list[tuple[str, str, str]]:
    return [(a.provider, a.model, a.outcome) for a in attempts]


# Honoured, a Retry-After over the backoff cap is not waited for: one try, then the backup.
@pytest.mark.parametrize(("respect", "tries", "second"), [
    (False, 3, [("cloud", "primary", "ok")]),
    (True, 1, [("cloud", "primary", "skipped"), ("local", "backup", "ok")]),
])
async def test_the_next_call_asks_a_target_that_sent_retry_after_only_when_the_header_is_off(
        respect: bool, tries: int, second: list[tuple[str, str, str]]) -> None:
    primary = ScriptedAdapter("cloud", THREE_429S_THEN_ANSWERS)
    tree = routed(respect, primary)
    route = tree.with_fallbacks(tree.route("default"), ())

    first = call_for(300)
    answer = await route.complete(request(), first)
    again = call_for(300)
    answer_again = await route.complete(request("again"), again)

    assert answer.completion.content == "from backup"
    assert outcomes(first.attempts) == [("cloud", "primary", "error")] * tries + [
        ("local", "backup", "ok")]
    assert outcomes(again.attempts) == second
    assert len(primary.calls) == tries + (0 if respect else 1)
    assert answer_again.completion.content == ("from primary" if not respect else "from backup")


async def test_with_the_header_off_429s_still_open_the_circuit_after_five_in_a_row() -> None:
    primary = ScriptedAdapter("cloud", [status_error("cloud", 429, retry_after=120,
                                                     model="primary")])
    tree = routed(False, primary)
    route = tree.with_fallbacks(tree.route("default"), ())

    for text in ("one", "two"):  # six 429s at the primary
        await route.complete(request(text), call_for(300))

    circuit = tree.board.circuit("cloud/primary")
    assert circuit.state == "open"
    assert circuit.reason is not None and "5 failures in a row" in circuit.reason
    assert "Retry-After" not in circuit.reason
    assert circuit.reopens_at is not None and circuit.reopens_at - CLOCK.now() <= 30
