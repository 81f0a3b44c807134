"""check-config warns of a provider that takes any model while a budget is set and none of
its models has a price: every call to it would be refused, as README's simulator recipe
without its `prices:` line was."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_router.cli import main
from mcp_router.config import shipped_config

SIM = '  sim: {kind: openai, base_url: "${MCP_ROUTER_SIM_URL}/v1", api_key_env: null}\n'
WARNING = ("  - provider sim has no models list and no sim/* price: while a budget is set, a "
           "call to a model of it the price table lacks is refused (add sim/*: "
           "{input_per_mtok: 0, output_per_mtok: 0} under prices: for a free local or "
           "simulated server, or list its models and price each)")


def demo_with_sim(tmp_path: Path, extra: str = "") -> Path:
    text = shipped_config("demo.yaml").read_text("utf-8")
    path = tmp_path / "demo_sim.yaml"
    path.write_text(text.replace("providers:\n", "providers:\n" + SIM, 1) + extra)
    return path


def test_check_config_warns_of_a_provider_taking_any_model_with_no_price(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MCP_ROUTER_SIM_URL", "http://127.0.0.1:8787")
    assert main(["check-config", "--config", str(demo_with_sim(tmp_path))]) == 0
    assert WARNING in capsys.readouterr().out.splitlines()


def test_a_provider_priced_with_a_wildcard_is_not_warned_of(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MCP_ROUTER_SIM_URL", "http://127.0.0.1:8787")
    path = demo_with_sim(tmp_path, "prices:\n  sim/*: {input_per_mtok: 0, output_per_mtok: 0}\n")
    assert main(["check-config", "--config", str(path)]) == 0
    assert "provider sim" not in capsys.readouterr().out
