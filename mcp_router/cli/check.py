"""What `mcp-router check-config` prints about a valid config: providers, routes, warnings."""

from __future__ import annotations

from collections.abc import Mapping

from mcp_router.config import Config, ProviderConfig
from mcp_router.provider_keys import shown_url

__all__ = ["config_warnings", "describe_config"]


def describe_config(config: Config, keys: Mapping[str, str]) -> str:
    """Providers with their key status (`keys` as `provider_keys` reads them, so a placeholder
    counts as not set, as the server counts it) and every route's targets, as check-config
    prints them."""
    lines = ["providers:"]
    for name, p in config.providers.items():
        lines.append(f"  {name:<12} {p.kind:<9} {shown_url(p)}  [{_key_status(p, name in keys)}]")
    lines.append("routes:")
    for name, route in config.routes.items():
        mark = " (default)" if name == config.default_route else ""
        lines.append(f"  {name}{mark}: {route.strategy}")
        for t in route.targets:
            weight = f"  weight {t.weight:g}" if route.strategy == "loadbalance" else ""
            lines.append(f"    - {t.label()}{weight}")
    if warnings := config_warnings(config, keys):
        lines += ["warnings:", *(f"  - {w}" for w in warnings)]
    return "\n".join(lines)


def _key_status(p: ProviderConfig, has_key: bool) -> str:
    if p.api_key_env is None and p.api_key_file is None:
        return "no key needed"
    if p.api_key_env:
        source = p.api_key_env
    elif p.api_key_file:
        source = f"key file {p.api_key_file}"
    else:  # given, but empty: it names nothing to read a key from
        return ("api_key_env is empty: no key variable" if p.api_key_env == ""
                else "api_key_file is empty: no key file") + ", skipped"
    return f"{source} {'set' if has_key else 'NOT SET (skipped)'}"


def config_warnings(config: Config, keys: Mapping[str, str]) -> list[str]:
    """What a valid config will still refuse when served: routes none of whose providers has
    its key, and, while a budget is set, targets without a price and providers taking any
    model with none priced for all (they are not sent)."""
    from mcp_router.prices import PriceBook

    def usable(provider: str) -> bool:
        cfg = config.providers[provider]
        return (cfg.api_key_env is None and cfg.api_key_file is None) or provider in keys

    def targets(route: str) -> list[tuple[str, str]]:
        """The provider/model targets `route` reaches, through nested routes (a loaded
        config has no cycles)."""
        found: list[tuple[str, str]] = []
        for t in config.routes[route].targets:
            if t.route is not None:
                found += targets(t.route)
            elif t.provider is not None and t.model is not None:
                found.append((t.provider, t.model))
        return found

    keyless = [name for name in config.routes if not any(usable(p) for p, _ in targets(name))]
    warnings = [f"route {keyless[0]}: no provider of it has its key set, so every call to it "
                "fails"] if len(keyless) == 1 else [
        f"routes {', '.join(keyless)}: none has a provider with its key set, so every call "
        "to them fails"] if keyless else []
    warnings += [f"route {name}: weights matter only to strategy loadbalance; this route's "
                 f"strategy is {route.strategy}, so its targets are asked in order"
                 for name, route in config.routes.items()
                 if route.strategy != "loadbalance" and any(t.weight != 1 for t in route.targets)]
    budgeted = config.budgets.daily_usd is not None or config.budgets.monthly_usd is not None \
        or any(c.budgets.daily_usd is not None or c.budgets.monthly_usd is not None
               for c in config.clients.values())
    if budgeted:
        prices = PriceBook.bundled(config.prices)
        unpriced = sorted({f"{p}/{m}" for name in config.routes for p, m in targets(name)
                           if prices.lookup(p, m) is None})
        warnings += [f"{spec} has no price: while a budget is set it is not sent (add it "
                     f"under prices:)" for spec in unpriced]
        # A provider no route names is there for calls naming its models; without a models
        # list it takes any name, and one it has no price for is refused.
        routed = {p for name in config.routes for p, _ in targets(name)}
        warnings += [f"provider {name} has no models list and no {name}/* price: while a "
                     "budget is set, a call to a model of it the price table lacks is refused "
                     f"(add {name}/*: {{input_per_mtok: 0, output_per_mtok: 0}} under prices: "
                     "for a free local or simulated server, or list its models and price each)"
                     for name, p in config.providers.items()
                     if name not in routed and not p.models and f"{name}/*" not in prices.table]
    return warnings
