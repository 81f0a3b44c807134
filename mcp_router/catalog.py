"""What `list_providers` and `provider_health` report, read off the router's config and health."""

from __future__ import annotations

from pydantic import BaseModel

from mcp_router.errors import InvalidRequest
from mcp_router.health import ProviderHealth
from mcp_router.provider_keys import shown_url
from mcp_router.router import Router


class ProviderInfo(BaseModel):
    name: str
    kind: str
    base_url: str
    models: list[str]
    configured: bool
    api_key_env: str | None
    state: str


class RouteTarget(BaseModel):
    provider: str | None = None
    model: str | None = None
    route: str | None = None
    weight: float | None = None


class RouteInfo(BaseModel):
    name: str
    strategy: str
    targets: list[RouteTarget]


class ProvidersReport(BaseModel):
    """The `list_providers` result; API keys never appear, only their variables' names."""

    providers: list[ProviderInfo]
    routes: list[RouteInfo]
    default_route: str


class HealthReport(BaseModel):
    """The `provider_health` result."""

    providers: list[ProviderHealth]


def describe_providers(router: Router) -> ProvidersReport:
    config = router.config
    providers = [
        ProviderInfo(name=name, kind=cfg.kind, base_url=shown_url(cfg), models=list(cfg.models),
                     configured=router.adapters[name].configured, api_key_env=cfg.api_key_env,
                     state=router.health.report(name, router.adapters[name].configured).state)
        for name, cfg in config.providers.items()
    ]
    routes = [
        RouteInfo(name=name, strategy=route.strategy, targets=[
            RouteTarget(provider=t.provider, model=t.model, route=t.route,
                        weight=t.weight if route.strategy == "loadbalance" else None)
            for t in route.targets])
        for name, route in config.routes.items()
    ]
    return ProvidersReport(providers=providers, routes=routes, default_route=config.default_route)


def describe_health(router: Router, provider: str | None) -> HealthReport:
    names = list(router.config.providers)
    if provider is not None:
        if provider not in names:
            raise InvalidRequest("provider", f"unknown provider {provider!r}; providers are: "
                                 f"{', '.join(names)}")
        names = [provider]
    return HealthReport(providers=[router.health.report(n, router.adapters[n].configured)
                                   for n in names])
