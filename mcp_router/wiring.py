"""Builds a Router and the resources it owns (adapters, ledger, cache) from a config."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mcp_router.budgets import BudgetGuard
from mcp_router.cache import CacheStep, ResponseCache
from mcp_router.clock import Clock
from mcp_router.config import BudgetsConfig, Config, make_data_dir
from mcp_router.errors import ConfigError
from mcp_router.health import HealthBook
from mcp_router.ledger import Ledger
from mcp_router.pii import PiiFilter, PiiPolicy
from mcp_router.plan import Planner
from mcp_router.prices import PriceBook
from mcp_router.probes import Prober
from mcp_router.providers import make_provider
from mcp_router.router import Router
from mcp_router.routing.build import TreeBuilder
from mcp_router.routing.circuits import BreakerBoard
from mcp_router.spend import ClientSpend, Spend

if TYPE_CHECKING:  # the client comes from the server; only providers/ uses it
    import httpx


@contextmanager
def open_router(config: Config, *, http: httpx.AsyncClient, keys: Mapping[str, str],
                home: Path, clock: Clock, rng: random.Random | None = None) -> Iterator[Router]:
    """A Router whose ledger and cache live under `home`; they are closed on exit.

    `keys` holds each provider's API key (see `provider_keys`); a provider missing from it
    is unconfigured when its config names a key source.
    """
    adapters = {name: make_provider(name, cfg, http, keys.get(name))
                for name, cfg in config.providers.items()}
    make_data_dir(home)
    try:
        pii = PiiFilter(PiiPolicy.from_config(config.pii))
    except ValueError as exc:
        raise ConfigError(str(exc), key="pii") from exc
    board = BreakerBoard(clock, unconfigured=[n for n, a in adapters.items() if not a.configured])
    health = HealthBook(clock, board)
    with Ledger.in_home(home, clock) as ledger, \
            ResponseCache.in_home(home, config.cache, clock) as store:
        spend = Spend(PriceBook.bundled(config.prices), ledger,
                      BudgetGuard(config.budgets, ledger, clock),
                      _client_budgets(config, ledger, clock))
        yield Router(config, adapters, clock=clock,
                     builder=TreeBuilder(config, adapters, clock, rng or random.Random(), board),
                     health=health, spend=spend, cache=CacheStep(store),
                     prober=Prober(adapters, board, health, clock,
                                   models=_models_named(config)),
                     planner=Planner(adapters, board, spend), pii=pii)


def _client_budgets(config: Config, ledger: Ledger, clock: Clock) -> dict[str, BudgetGuard]:
    """A guard for each client that has budgets of its own, over its own spend."""
    return {name: BudgetGuard(BudgetsConfig(daily_usd=c.budgets.daily_usd,
                                            monthly_usd=c.budgets.monthly_usd),
                              ClientSpend(ledger, name), clock, owner=f"client {name}'s")
            for name, c in config.clients.items()
            if c.budgets.daily_usd is not None or c.budgets.monthly_usd is not None}


def _models_named(config: Config) -> dict[str, list[str]]:
    """Each provider's models as the config names them: its `models`, then route targets."""
    named = {name: list(cfg.models) for name, cfg in config.providers.items()}
    for route in config.routes.values():
        for target in route.targets:
            if target.provider in named and target.model and \
                    target.model not in named[target.provider]:
                named[target.provider].append(target.model)
    return named
