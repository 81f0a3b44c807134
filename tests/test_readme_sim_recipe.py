"""README's "The simulator's fault knobs": what it says to add to configs/demo.yaml, added,
lets `chat_completion` reach any simulator model, knobs and all, under demo.yaml's budgets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client

from mcp_router.config import parse_config, shipped_config
from mcp_router.server import create_server

pytestmark = pytest.mark.anyio

README = Path(__file__).parent.parent / "README.md"


def readme_recipe() -> tuple[dict[str, Any], str]:
    """The YAML the section tells the reader to add, and the model it then tells them to call."""
    section = README.read_text("utf-8").split("### The simulator's fault knobs", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    model = re.search(r"`model: (sim/[^`]+)`", section)
    assert block and model, "README's simulator recipe has moved: update this test"
    return yaml.safe_load(block.group(1)), model.group(1)


def with_recipe(added: dict[str, Any]) -> str:
    """demo.yaml with the recipe's mappings merged in, as a reader adds them."""
    data = yaml.safe_load(shipped_config("demo.yaml").read_text("utf-8"))
    for key, value in added.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return yaml.safe_dump(data, sort_keys=False)


async def test_the_readme_simulator_recipe_answers_under_the_demo_budgets(sim: Any,
                                                                        tmp_path: Path):
    added, model = readme_recipe()
    config = parse_config(with_recipe(added), env={"MCP_ROUTER_SIM_URL": sim.url})
    assert config.budgets.daily_usd is not None  # the budgets the recipe must live with
    server = create_server(config, home=tmp_path / "home", env={})
    async with Client(server) as client:
        result = await client.call_tool("chat_completion", {"prompt": "hi", "model": model})
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
