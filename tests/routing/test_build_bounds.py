"""The tree builder keeps a leaf per model callers name only while the board keeps its circuit,
and checking a model builds nothing."""

from __future__ import annotations

import gc
import random
import weakref

import pytest

from mcp_router.clock import LoopClock
from mcp_router.config import parse_config
from mcp_router.errors import InvalidRequest
from mcp_router.routing.build import TreeBuilder
from mcp_router.routing.circuits import BreakerBoard
from tests.fixtures.scripted import ScriptedAdapter, completion, request
from tests.routing.support import call_for

pytestmark = pytest.mark.anyio
CONFIG = parse_config("""\
providers:
  cloud: {kind: openai, base_url: "http://127.0.0.1:9/v1", models: [listed]}
  local: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
routes:
  default: {targets: [{provider: local, model: routed}]}
""", env={})


def builder(keep: int = 2) -> tuple[TreeBuilder, BreakerBoard]:
    clock = LoopClock()
    board = BreakerBoard(clock, keep=keep)
    adapters = {name: ScriptedAdapter(name, [completion()]) for name in ("cloud", "local")}
    return TreeBuilder(CONFIG, adapters, clock, random.Random(1), board), board


async def test_checking_a_model_refuses_as_building_it_would_and_builds_nothing() -> None:
    tree, board = builder()

    tree.check("local/anything")
    with pytest.raises(InvalidRequest) as info:
        tree.check("cloud/other", "fallbacks[0]")

    assert str(info.value) == "fallbacks[0]: cloud has no model 'other'; its models are: listed"
    # The config's targets are known from the start; checking adds nothing to them.
    assert (board.keys("local"), board.keys("cloud")) == (["local/routed"], ["cloud/listed"])
    tree.model("local/anything")
    assert board.keys("local") == ["local/routed", "local/anything"]


async def test_the_leaf_of_a_forgotten_model_is_let_go_and_built_anew_when_named_again() -> None:
    tree, board = builder(keep=2)
    first = tree.model("local/a")
    tree.with_fallbacks(first, ())
    gone = weakref.ref(first)
    del first

    for name in ("b", "c"):
        tree.with_fallbacks(tree.model(f"local/{name}"), ())
    gc.collect()

    assert gone() is None  # neither its leaf nor its group is held any more
    again = tree.with_fallbacks(tree.model("local/a"), ())
    assert (await again.complete(request(), call_for(60))).completion.content == "hello"
    assert board.keys("local") == ["local/routed", "local/c", "local/a"]


async def test_the_configs_targets_keep_their_leaves_however_many_models_are_named() -> None:
    tree, board = builder(keep=1)
    listed, routed = tree.model("cloud/listed"), tree.model("local/routed")
    tree.route("default")

    for i in range(5):
        tree.model(f"local/x{i}")

    assert tree.model("cloud/listed") is listed and tree.model("local/routed") is routed
    assert board.keys("local") == ["local/routed", "local/x4"]
