"""What `list_providers` and `provider_health` report, read off the router's config and health."""

from __future__ import annotations

import re

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
    """The `provider_health` result: each provider lists the targets the config names and
    the most recently used of the models callers named besides (see `ProviderHealth`)."""

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


def describe_health(router: Router, provider: str | None, *,
                    messages: bool = True) -> HealthReport:
    """Every provider's health, or one's. Without `messages`, the upstream's own words in
    errors are withheld: on a shared server they can quote another client's request."""
    check_provider(router, provider)
    names = list(router.config.providers) if provider is None else [provider]
    reports = [router.health.report(n, router.adapters[n].configured) for n in names]
    return HealthReport(providers=reports if messages else [_withheld(r) for r in reports])


def check_provider(router: Router, provider: str | None) -> None:
    """Raise InvalidRequest unless `provider` is None (all) or one the config names."""
    if provider is not None and provider not in router.config.providers:
        raise InvalidRequest("provider", f"unknown provider {provider!r}; providers are: "
                             f"{', '.join(router.config.providers)}")


_UPSTREAM_SAYS = re.compile(r"HTTP \d{3}: ")


def _status_only(text: str | None) -> str | None:
    """`text` cut after its first `HTTP <status>`, which is followed by the upstream's words;
    parentheses left open by the cut are closed."""
    found = None if text is None else _UPSTREAM_SAYS.search(text)
    if text is None or found is None:
        return text
    head = text[:found.end() - 2]
    return f"{head} [message withheld]" + ")" * (head.count("(") - head.count(")"))


def _withheld(report: ProviderHealth) -> ProviderHealth:
    probe = report.last_probe
    return report.model_copy(update={
        "last_error": _status_only(report.last_error), "reason": _status_only(report.reason),
        "last_probe": probe and probe.model_copy(update={"error": _status_only(probe.error)}),
        "targets": [t.model_copy(update={"last_error": _status_only(t.last_error),
                                         "reason": _status_only(t.reason)})
                    for t in report.targets]})
