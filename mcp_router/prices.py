"""Model prices (the bundled table plus config overrides) and exact Decimal cost arithmetic."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import NamedTuple

from mcp_router.config import PriceConfig
from mcp_router.errors import ConfigError
from mcp_router.messages import Usage
from mcp_router.money import EXACT

__all__ = ["CostResult", "Price", "PriceBook", "cost", "quote"]

_PER_MTOK = -6  # prices are per million tokens: shift the decimal point instead of dividing


@dataclass(frozen=True)
class Price:
    """USD per million tokens; a missing cached-input rate means no cache discount."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None

    @property
    def cached_rate(self) -> Decimal:
        """The rate charged for cached input tokens."""
        if self.cached_input_per_mtok is None:
            return self.input_per_mtok
        return self.cached_input_per_mtok

    @classmethod
    def from_config(cls, cfg: PriceConfig) -> Price:
        return cls(cfg.input_per_mtok, cfg.output_per_mtok, cfg.cached_input_per_mtok)


class CostResult(NamedTuple):
    """A cost, or None with a note saying why it is unknown (never a silent 0)."""

    cost: Decimal | None
    note: str | None = None


def cost(usage: Usage, price: Price) -> Decimal:
    """The exact cost of `usage`: cached input tokens are part of input, at the cached rate."""
    # Adapters normalise usage so cached ⊆ input; clamp so a provider's inconsistent report
    # can never produce a negative uncached count (and so a negative charge).
    cached = min(max(usage.cached_input_tokens, 0), usage.input_tokens)
    uncached = usage.input_tokens - cached
    total = EXACT.add(
        EXACT.add(EXACT.multiply(Decimal(uncached), price.input_per_mtok),
                  EXACT.multiply(Decimal(cached), price.cached_rate)),
        EXACT.multiply(Decimal(usage.output_tokens), price.output_per_mtok))
    return total.scaleb(_PER_MTOK, EXACT)


def quote(price: Price, input_tokens: int, max_tokens: int) -> Decimal:
    """The worst case of one attempt: every input token uncached, every allowed output token."""
    return cost(Usage(input_tokens=input_tokens, output_tokens=max_tokens), price)


def _base_model(model: str) -> str:
    """The model name without the simulator's fault knobs (`gpt-3.5-turbo+fail-503`)."""
    return model.split("+", 1)[0]


@dataclass(frozen=True)
class PriceBook:
    """Prices by `provider/model`, with the table version that notes on unknown prices cite."""

    table: Mapping[str, Price]
    version: str
    date: str

    @classmethod
    def bundled(cls, overrides: Mapping[str, PriceConfig] | None = None) -> PriceBook:
        """The table shipped in the package, with config `prices` taking precedence."""
        table, version, date = _load_bundled()
        merged = dict(table)
        for key, cfg in (overrides or {}).items():
            provider, _, model = key.partition("/")
            if not provider or not model:
                raise ConfigError("a price key is 'provider/model', e.g. 'deepseek/deepseek-chat'",
                                  key=f"prices.{key}")
            merged[key] = Price.from_config(cfg)
        return cls(merged, version, date)

    def lookup(self, provider: str, model: str) -> Price | None:
        """The price of `model` at `provider`, or None when neither table nor config has it.

        A config row `provider/*` prices every model of that provider no row names (a local
        server's models: `ollama/*` at 0).
        """
        model = _base_model(model)
        found = self.table.get(f"{provider}/{model}")
        if found is None and "/" in model:
            # OpenRouter-style ids are themselves "vendor/model": use the vendor's row.
            found = self.table.get(model)
        return found if found is not None else self.table.get(f"{provider}/*")

    def cost_of(self, provider: str, model: str, usage: Usage) -> CostResult:
        """The cost of a call that returned `usage`, or None with a note when unpriced."""
        if not (usage.input_tokens or usage.output_tokens):
            return CostResult(Decimal(0))  # nothing was used, so the price does not matter
        price = self.lookup(provider, model)
        if price is None:
            return CostResult(None, self._unknown(provider, model))
        return CostResult(cost(usage, price))

    def quote_for(self, provider: str, model: str, input_tokens: int,
                  max_tokens: int) -> CostResult:
        """The worst-case cost of one attempt, or None with a note when unpriced."""
        price = self.lookup(provider, model)
        if price is None:
            return CostResult(None, self._unknown(provider, model))
        return CostResult(quote(price, input_tokens, max_tokens))

    def _unknown(self, provider: str, model: str) -> str:
        return (f"no price for {provider}/{_base_model(model)} in table {self.version} "
                "or config prices")


@functools.cache
def _load_bundled() -> tuple[Mapping[str, Price], str, str]:
    """Parse the packaged price file once per process; it is data, never fetched."""
    text = resources.files("mcp_router").joinpath("data/prices.json").read_text("utf-8")
    data = json.loads(text)
    table = {key: _parse_row(key, row) for key, row in data["models"].items()}
    return table, str(data["version"]), str(data["date"])


def _parse_row(key: str, row: Mapping[str, str]) -> Price:
    try:
        cached = row.get("cached_input")
        return Price(Decimal(row["input"]), Decimal(row["output"]),
                     None if cached is None else Decimal(cached))
    except (KeyError, InvalidOperation, TypeError) as exc:
        raise ValueError(f"bundled prices.json: bad row {key!r}: {row!r}") from exc

