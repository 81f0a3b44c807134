"""Turns a route from config, or an explicit model with fallbacks, into a tree of routing nodes."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from mcp_router.clock import Clock
from mcp_router.config import Config, ProviderConfig, RouteConfig, TargetConfig
from mcp_router.errors import InvalidRequest
from mcp_router.messages import Adapter, ChatProvider
from mcp_router.routing.balance import Balanced
from mcp_router.routing.breaker import Breaker, CircuitGroup
from mcp_router.routing.circuits import BreakerBoard
from mcp_router.routing.fallback import Fallback
from mcp_router.routing.retry import Retrying
from mcp_router.routing.target import Target


def qualified(providers: Mapping[str, ProviderConfig], spec: str, field: str = "model") -> str:
    """`spec` as `provider/model`: a model named without its provider gets the provider that
    lists it in `models` (`gpt-4o-mini` is `openai/gpt-4o-mini`).

    A spec that starts with a provider's name is taken as it is, and one no provider lists is
    returned unchanged for `TreeBuilder.model` to refuse; when several providers list it,
    the caller must choose, and the error names each choice.
    """
    provider, _, model = spec.partition("/")
    if provider in providers and model:
        return spec
    owners = [name for name, config in providers.items() if spec in config.models]
    if len(owners) > 1:
        raise InvalidRequest(field, f"{spec!r} is a model of several providers; give one of: "
                             f"{', '.join(f'{owner}/{spec}' for owner in owners)}")
    return f"{owners[0]}/{spec}" if owners else spec


def other_readings(providers: Mapping[str, ProviderConfig], spec: str) -> list[str]:
    """`spec` read whole as a model id other providers list: `<owner>/<spec>` for each
    provider but the one its first segment names whose `models` hold all of `spec`
    (openrouter's `anthropic/claude-3.5-sonnet` is not anthropic's `claude-3.5-sonnet`)."""
    named = spec.partition("/")[0]
    return [f"{name}/{spec}" for name, config in providers.items()
            if name != named and spec in config.models]


def did_you_mean(readings: Sequence[str]) -> str:
    """The suffix a refusal adds to point at readings that exist ("" when there are none)."""
    return f"; did you mean {' or '.join(readings)}?" if readings else ""


def configured_targets(config: Config) -> list[str]:
    """Every "provider/model" the config names: route targets and providers' `models`."""
    listed = [f"{name}/{model}" for name, provider in config.providers.items()
              for model in provider.models]
    routed = [f"{t.provider}/{t.model}" for route in config.routes.values()
              for t in route.targets if t.provider is not None and t.model is not None]
    return list(dict.fromkeys([*routed, *listed]))


class TreeBuilder:
    """Builds target trees; route trees are built once and reused (balance state lives there).

    Leaves for models callers name are kept as long as the board keeps their circuits: for
    the targets the config names, forever; for others, while they are recently used.
    """

    def __init__(self, config: Config, adapters: Mapping[str, Adapter], clock: Clock,
                 rng: random.Random, board: BreakerBoard | None = None) -> None:
        self._config, self._adapters, self._clock, self._rng = config, adapters, clock, rng
        self._board = board or BreakerBoard(clock)
        self._board.pin(configured_targets(config))
        self._board.on_forget(self._forget)
        self._routes: dict[str, ChatProvider] = {}
        self._leaves: dict[str, ChatProvider] = {}
        # Keyed by the tree's id; the group holds the tree, so the id is not reused meanwhile.
        self._groups: dict[int, CircuitGroup] = {}

    def route(self, name: str) -> ChatProvider:
        """The tree of a configured route; unknown names list the valid ones."""
        if name not in self._config.routes:
            raise InvalidRequest("route", f"unknown route {name!r}; routes are: "
                                 f"{', '.join(self._config.routes)}")
        if name not in self._routes:
            self._routes[name] = self._build_route(self._config.routes[name])
        return self._routes[name]

    def model(self, spec: str, field: str = "model") -> ChatProvider:
        """A retried leaf for `provider/model`; the model part may itself contain slashes."""
        self.check(spec, field)
        if spec not in self._leaves:
            provider, _, model = spec.partition("/")
            self._leaves[spec] = self._leaf(provider, model)
        return self._leaves[spec]

    def check(self, spec: str, field: str = "model") -> None:
        """Raise InvalidRequest (naming `field`) where `model(spec)` would; nothing is built,
        so a call refused later (access, limits, rate) leaves no state behind."""
        provider, _, model = spec.partition("/")
        if provider in self._config.providers and not model:
            listed = self._config.providers[provider].models
            raise InvalidRequest(field, f"{spec!r} names a provider but no model: give "
                                 f"{provider}/<model>" + (f", one of: {', '.join(listed)}"
                                                          if listed else ""))
        if provider not in self._config.providers and spec in self._config.routes:
            raise InvalidRequest(field, _route_named(spec, field))
        if provider not in self._config.providers:
            raise InvalidRequest(field, f"{spec!r} is not provider/model with a known provider, "
                                 "nor a model a provider lists; providers are: "
                                 f"{', '.join(self._config.providers)}")
        allowed = self._config.providers[provider].models
        if allowed and model not in allowed:
            raise InvalidRequest(field, f"{provider} has no model {model!r}; its models are: "
                                 f"{', '.join(allowed)}"
                                 + did_you_mean(other_readings(self._config.providers, spec)))

    def keyed_readings(self, spec: str) -> list[str]:
        """`other_readings` of `spec` whose provider has its API key: what a call refused for
        want of a key could have named instead (`openrouter/openai/gpt-4o-mini`)."""
        return [reading for reading in other_readings(self._config.providers, spec)
                if self._adapters[reading.partition("/")[0]].configured]

    @property
    def board(self) -> BreakerBoard:
        return self._board

    def with_fallbacks(self, primary: ChatProvider, fallbacks: Sequence[str]) -> CircuitGroup:
        """`primary`, then each `provider/model` of `fallbacks` in order, as one circuit group:
        when every target's circuit is open, the one that reopens soonest is still tried."""
        if not fallbacks:
            # Route trees and leaves are built once, so their groups are too.
            if id(primary) not in self._groups:
                self._groups[id(primary)] = CircuitGroup(primary)
            return self._groups[id(primary)]
        extra = [self.model(spec, f"fallbacks[{i}]") for i, spec in enumerate(fallbacks)]
        return CircuitGroup(Fallback([primary, *extra], self._clock,
                                     move_on=self._config.retry.fallback_on_finish))

    def _build_route(self, route: RouteConfig) -> ChatProvider:
        children = [self._target(t) for t in route.targets]
        if route.strategy == "loadbalance":
            return Balanced([(child, t.weight) for child, t in zip(children, route.targets,
                                                                    strict=True)], self._clock,
                            move_on=self._config.retry.fallback_on_finish)
        if route.strategy == "single":
            return children[0]
        return Fallback(children, self._clock, move_on=self._config.retry.fallback_on_finish)

    def _target(self, target: TargetConfig) -> ChatProvider:
        if target.route is not None:
            return self.route(target.route)
        assert target.provider is not None and target.model is not None
        return self._leaf(target.provider, target.model)

    def _forget(self, key: str) -> None:
        """The board dropped `key`'s circuit: drop its leaf, and the leaf's group, too."""
        leaf = self._leaves.pop(key, None)
        if leaf is not None:
            self._groups.pop(id(leaf), None)

    def _leaf(self, provider: str, model: str) -> ChatProvider:
        target = Target(self._adapters[provider], model, self._clock)
        retried = Retrying(target, self._config.retry, self._clock, self._rng)
        return Breaker(retried, f"{provider}/{model}", self._board, trial=target,
                       respect_retry_after=self._config.retry.respect_retry_after)


def _route_named(route: str, field: str) -> str:
    """The refusal of a route's name where a model is taken: routes go in `route`, and a call's
    `fallbacks` are provider/model only (a route's own targets already fall back in turn)."""
    if field == "model":
        return f"{route!r} is a route, not a model; pass it as route: {route}"
    return (f"{route!r} is a route; fallbacks take provider/model, not routes "
            f"(to use the route, pass it as route: {route})")
