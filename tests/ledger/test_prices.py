"""Prices: the bundled table, overrides, lookups and exact cost arithmetic."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_router.config import PriceConfig, parse_config
from mcp_router.errors import ConfigError
from mcp_router.messages import Usage
from mcp_router.money import format_usd
from mcp_router.prices import CostResult, Price, PriceBook, cost, quote

REPO = Path(__file__).resolve().parents[2]
MINI = Price(Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))


def test_cost_prices_cached_input_tokens_at_the_cached_rate() -> None:
    usage = Usage(input_tokens=1000, cached_input_tokens=400, output_tokens=50)
    # 600 × 0.15 + 400 × 0.075 + 50 × 0.60 = 150 per million tokens
    assert cost(usage, MINI) == Decimal("0.000150")


def test_cost_without_a_cache_discount_charges_cached_tokens_as_input() -> None:
    price = Price(Decimal("0.50"), Decimal("1.50"))
    usage = Usage(input_tokens=1000, cached_input_tokens=1000, output_tokens=0)
    assert cost(usage, price) == Decimal("0.0005")


def test_cost_is_exact_for_rates_that_floats_cannot_hold() -> None:
    price = Price(Decimal("0.075"), Decimal("0.30"), Decimal("0.01875"))
    usage = Usage(input_tokens=3, cached_input_tokens=1, output_tokens=7)
    # 2 × 0.075 + 1 × 0.01875 + 7 × 0.30 = 2.26875 per million tokens
    assert cost(usage, price) == Decimal("0.00000226875")
    assert str(cost(usage, price)) == "0.00000226875"


def test_cost_never_charges_more_cached_tokens_than_input_tokens() -> None:
    usage = Usage(input_tokens=10, cached_input_tokens=50, output_tokens=0)
    assert cost(usage, MINI) == Decimal("0.00000075")


def test_quote_assumes_no_cache_and_every_allowed_output_token() -> None:
    assert quote(MINI, input_tokens=1000, max_tokens=500) == Decimal("0.00045")


money = st.decimals(min_value=0, max_value=200, places=6, allow_nan=False, allow_infinity=False)


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**7), money, money, money)
def test_cost_equals_the_rational_formula(inp: int, cached_part: int, out: int, pin: Decimal,
                                          pout: Decimal, pcached: Decimal) -> None:
    cached = min(cached_part, inp)
    usage = Usage(input_tokens=inp, cached_input_tokens=cached, output_tokens=out)
    expected = (Fraction(inp - cached) * Fraction(pin) + Fraction(cached) * Fraction(pcached)
                + Fraction(out) * Fraction(pout)) / 10**6
    assert Fraction(cost(usage, Price(pin, pout, pcached))) == expected


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**5), st.integers(0, 10**5))
def test_quote_bounds_every_usage_within_max_tokens(inp: int, cached: int, out: int,
                                                    slack: int) -> None:
    usage = Usage(input_tokens=inp, cached_input_tokens=min(cached, inp), output_tokens=out)
    assert cost(usage, MINI) <= quote(MINI, inp, out + slack)


def test_the_bundled_file_is_versioned_dated_and_written_as_strings() -> None:
    data = json.loads(resources.files("mcp_router").joinpath("data/prices.json").read_text())
    assert data["version"] and data["date"]
    for key, row in data["models"].items():
        assert "/" in key
        assert set(row) <= {"input", "output", "cached_input"}
        assert all(isinstance(v, str) for v in row.values()), key


def _config_models(path: Path) -> set[tuple[str, str]]:
    config = parse_config(path.read_text(), env={"MCP_ROUTER_SIM_URL": "http://127.0.0.1:1"})
    pairs = {(name, m) for name, p in config.providers.items() for m in p.models}
    pairs |= {(t.provider, t.model) for r in config.routes.values() for t in r.targets
              if t.provider and t.model}
    return pairs


@pytest.mark.parametrize("name", ["orchestra.yaml", "demo.yaml"])
def test_every_model_in_the_shipped_configs_has_a_price(name: str) -> None:
    book = PriceBook.bundled()
    missing = [f"{p}/{m}" for p, m in sorted(_config_models(REPO / "configs" / name))
               if book.lookup(p, m) is None]
    assert missing == []


def test_lookup_strips_simulator_knobs_and_uses_the_vendor_row_for_openrouter() -> None:
    book = PriceBook.bundled()
    assert book.lookup("openrouter", "openai/gpt-3.5-turbo+fail-503") == Price(
        Decimal("0.50"), Decimal("1.50"))
    assert book.lookup("openrouter", "openai/gpt-4o-mini") == book.lookup("openai", "gpt-4o-mini")


def test_an_unknown_price_is_a_null_cost_with_a_reason() -> None:
    book = PriceBook.bundled()
    result = book.cost_of("xai", "grok-9+slow", Usage(input_tokens=10, output_tokens=5))
    assert result == CostResult(None, f"no price for xai/grok-9 in table {book.version} "
                                      "or config prices")
    assert book.quote_for("xai", "grok-9", 10, 100).cost is None


def test_an_unpriced_call_that_used_no_tokens_costs_zero() -> None:
    assert PriceBook.bundled().cost_of("xai", "grok-9", Usage()) == CostResult(Decimal(0))


def test_config_prices_override_the_table_and_add_models() -> None:
    book = PriceBook.bundled({
        "deepseek/deepseek-chat": PriceConfig(input_per_mtok=Decimal("0.27"),
                                              output_per_mtok=Decimal("1.10")),
        "local/llama": PriceConfig(input_per_mtok=Decimal(0), output_per_mtok=Decimal(0)),
    })
    assert book.lookup("deepseek", "deepseek-chat") == Price(Decimal("0.27"), Decimal("1.10"))
    assert book.cost_of("local", "llama", Usage(input_tokens=9)) == CostResult(Decimal(0))
    # the cached per-process table is not changed by an override
    assert PriceBook.bundled().lookup("deepseek", "deepseek-chat") != book.lookup(
        "deepseek", "deepseek-chat")


def test_a_price_key_without_a_provider_is_a_config_error_naming_it() -> None:
    cfg = PriceConfig(input_per_mtok=Decimal(1), output_per_mtok=Decimal(1))
    with pytest.raises(ConfigError) as info:
        PriceBook.bundled({"gpt-4o": cfg})
    assert info.value.key == "prices.gpt-4o"


CONFIG = """\
providers: {deepseek: {kind: openai, base_url: "https://api.deepseek.com/v1"}}
routes: {default: {targets: [{provider: deepseek, model: deepseek-chat}]}}
prices:
  deepseek/deepseek-chat:
    input_per_mtok: 0.27
    output_per_mtok: {output}
"""


@pytest.mark.parametrize("bad", ["lots", "-1", "[1, 2]"])
def test_a_malformed_price_override_is_a_config_error_naming_the_key(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.replace("{output}", bad), file="team.yaml")
    assert info.value.key == "prices.deepseek/deepseek-chat.output_per_mtok"
    assert info.value.line == 6
    assert "prices.deepseek/deepseek-chat.output_per_mtok" in str(info.value)


def test_format_usd_shows_every_digit_and_no_exponent() -> None:
    assert [format_usd(Decimal(x)) for x in ("150.00", "0.0000075", "0")] == [
        "$150", "$0.0000075", "$0"]


def test_a_provider_wide_row_prices_the_models_no_row_names() -> None:
    book = PriceBook.bundled({
        "ollama/*": PriceConfig(input_per_mtok=Decimal(0), output_per_mtok=Decimal(0)),
        "deepseek/*": PriceConfig(input_per_mtok=Decimal(9), output_per_mtok=Decimal(9))})
    usage = Usage(input_tokens=1000, output_tokens=1000)
    assert book.cost_of("ollama", "llama3.1:8b", usage).cost == Decimal(0)
    assert book.cost_of("ollama", "qwen2.5-coder", usage).note is None
    # a named row still wins over the provider's wildcard
    assert book.lookup("deepseek", "deepseek-chat") == book.table["deepseek/deepseek-chat"]
    assert book.cost_of("together", "some-new-model", usage).cost is None
