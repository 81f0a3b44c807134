"""The checks a config gets past its models' own: references between routes and providers,
route cycles, PII type names, base URLs, and pydantic's errors said as config errors."""

from __future__ import annotations

from collections.abc import Callable, Collection
from decimal import Decimal
from difflib import get_close_matches
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from mcp_router.config_yaml import Lines, describe, nearest_line, url_problem
from mcp_router.errors import ConfigError
from mcp_router.shared_config import valid_client_name

if TYPE_CHECKING:
    from mcp_router.config import Config, PiiConfig

__all__ = ["Fail", "check_base_urls", "check_numbers", "check_pii", "check_references",
           "config_error", "near_a_secret"]

Fail = Callable[[str, tuple[str | int, ...]], NoReturn]
"""Raises the ConfigError for a message at a key path."""


def config_error(exc: ValidationError, root: type[BaseModel], file: str,
                 lines: Lines) -> ConfigError:
    """The first of pydantic's errors, said as a config error. A required key missing beside
    an unknown key in the same mapping is told as the unknown key: it is the typo."""
    errors = [(_loc(err), err) for err in exc.errors()]
    loc, err = errors[0]
    missing: list[str] = []
    if err["type"] == "missing":
        missing = [str(m[-1]) for m, e in errors if e["type"] == "missing" and m[:-1] == loc[:-1]]
        loc, err = next(((m, e) for m, e in errors
                         if e["type"] == "extra_forbidden" and m[:-1] == loc[:-1]), (loc, err))
    # An unknown key is told with the keys its mapping may hold; a value that should have
    # been a mapping, with the keys it may hold itself.
    keys = _keys_at(root, loc[:-1] if err["type"] == "extra_forbidden" else loc)
    described = describe(err, keys, missing)
    return ConfigError(described, file=file, line=nearest_line(loc, lines),
                       key=".".join(str(p) for p in loc) or None)


def _loc(err: Any) -> tuple[str | int, ...]:
    return tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))


def near_a_secret(exc: ValidationError) -> bool:
    """Whether an error is about a provider, whose settings may hold a key (a key pasted as
    api_key_env): pydantic's own text repeats the value, so it is not chained."""
    return any(err["loc"][:1] == ("providers",) for err in exc.errors())


def _keys_at(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """The keys a mapping at `path` under `model` may hold, following fields, dict values
    and list items; empty where the path leads to no model."""
    annotation: Any = model
    for part in path:
        if get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1]  # a dict's value type, a list's item type
            continue
        model_type = _model_in(annotation)
        if model_type is None or not isinstance(part, str) or part not in model_type.model_fields:
            return []
        annotation = model_type.model_fields[part].annotation
    model_type = _model_in(annotation)
    return list(model_type.model_fields) if model_type is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config model `annotation` names, alone or in a union with None."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def check_numbers(data: Any, model: type[BaseModel], fail: Fail,
                  path: tuple[str | int, ...] = ()) -> None:
    """No true or false where `model` wants a number, at any depth of `data` (the YAML as
    read): pydantic would take it as 1, and YAML reads unquoted yes, no, on and off so."""
    if not isinstance(data, dict):
        return  # validation says what it must be
    for key, value in data.items():
        if key in model.model_fields:
            _check_number(value, model.model_fields[key].annotation, fail, (*path, key))


def _check_number(value: Any, annotation: Any, fail: Fail, path: tuple[str | int, ...]) -> None:
    if isinstance(value, bool):
        if _numeric(annotation):
            fail("must be a number, not true or false", path)
    elif get_origin(annotation) is dict:
        if isinstance(value, dict):
            for key, item in value.items():
                _check_number(item, get_args(annotation)[-1], fail, (*path, key))
    elif get_origin(annotation) is list:
        if isinstance(value, list):
            for i, item in enumerate(value):
                _check_number(item, get_args(annotation)[0], fail, (*path, i))
    elif (model := _model_in(annotation)) is not None:
        check_numbers(value, model, fail, path)


def _numeric(annotation: Any) -> bool:
    """Whether `annotation` (alone, annotated, or in a union) takes a number and no bool."""
    if get_origin(annotation) is Annotated:
        return _numeric(get_args(annotation)[0])
    if annotation in (int, float, Decimal):
        return True
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return bool not in options and any(_numeric(a) for a in options)


def check_references(config: Config, fail: Fail, *, default_route_given: bool) -> None:
    """Routes may only name known providers and routes, and may not form a cycle."""
    if config.default_route not in config.routes:
        routes = ", ".join(config.routes)
        if not default_route_given:  # not the user's word to blame: say what is missing
            fail(f"no route named 'default' and no default_route set; set default_route to "
                 f"one of: {routes}", ("routes",))
        fail(f"unknown route {config.default_route!r}; routes are: {routes}",
             ("default_route",))
    for rname, route in config.routes.items():
        for i, target in enumerate(route.targets):
            path: tuple[str | int, ...] = ("routes", rname, "targets", i)
            if target.route is not None and target.route not in config.routes:
                fail(f"unknown route {target.route!r}; routes are: {', '.join(config.routes)}",
                     (*path, "route"))
            if target.provider is None:
                continue
            if target.provider not in config.providers:
                fail(f"unknown provider {target.provider!r}; providers are: "
                     f"{', '.join(config.providers)}", (*path, "provider"))
            allowed = config.providers[target.provider].models
            if allowed and target.model not in allowed:
                fail(f"model {target.model!r} is not in {target.provider}'s models: "
                     f"{', '.join(allowed)}", (*path, "model"))
    for rname in config.routes:
        cycle = _find_cycle(config, rname, [])
        if cycle:
            fail(f"route cycle: {' -> '.join(cycle)}", ("routes", rname))
    holders: dict[str, str] = {}
    for cname, client in config.clients.items():
        if not valid_client_name(cname):
            fail("client names use letters, digits and _.@- (at most 64)", ("clients", cname))
        # A block copied with only its name changed: the token would be served as one of the
        # two, its routes, budgets and ledger rows those of the other.
        if (first := holders.setdefault(client.token_sha256, cname)) != cname:
            fail(f"the same token as clients.{first}: each client needs a token of its own "
                 f"(mcp-router token new {cname})", ("clients", cname, "token_sha256"))
        for i, rname in enumerate(client.routes):
            if rname not in config.routes:
                fail(f"unknown route {rname!r}; routes are: {', '.join(config.routes)}",
                     ("clients", cname, "routes", i))
        for i, pattern in enumerate(client.models):
            if not _can_match(pattern, config.providers):
                fail(_matches_nothing(pattern, config), ("clients", cname, "models", i))


def _can_match(pattern: str, providers: Collection[str]) -> bool:
    """Whether a client's `models` pattern (`*`: any run of characters) can match a
    `provider/model` of a configured provider, the form a call's model is checked in."""
    if "*" not in pattern:
        provider, _, model = pattern.partition("/")
        return provider in providers and bool(model)
    head = pattern.partition("*")[0]
    return any(head.startswith(f"{p}/") or f"{p}/".startswith(head) for p in providers)


def _matches_nothing(pattern: str, config: Config) -> str:
    """The refusal of a `models` pattern no call's model can match, with the entry meant when
    it can tell: a bare model with the provider listing it, a provider alone with `/*`, or the
    provider's name misspelt or miscased."""
    meant = [f"{name}/{pattern}" for name, p in config.providers.items() if pattern in p.models]
    head, slash, rest = pattern.partition("/")
    names = {name.lower(): name for name in config.providers}
    if not meant and not slash and pattern in config.providers:
        meant = [f"{pattern}/*"]
    elif not meant and slash and (close := get_close_matches(head.lower(), names, n=1)):
        meant = [f"{names[close[0]]}/{rest}"]
    return (f"{pattern!r} matches no provider/model: give provider/model or provider/* with "
            f"a configured provider (providers are: {', '.join(config.providers)})"
            + (f"; did you mean {' or '.join(meant)}?" if meant else ""))


def check_pii(pii: PiiConfig, builtin: Collection[str], fail: Fail) -> None:
    """Entity types named in `entities`, `actions` and `answer_actions` must exist: a typo
    would otherwise filter nothing, or stop the server as it starts."""
    known = [*builtin, *(c.name for c in pii.custom)]
    named: list[tuple[str, tuple[str | int, ...]]] = [
        *((name, ("pii", "entities", i)) for i, name in enumerate(pii.entities or ())),
        *((name, ("pii", "actions", name)) for name in pii.actions),
        *((name, ("pii", "answer_actions", name)) for name in pii.answer_actions)]
    for name, path in named:
        if name not in known:
            close = get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"types are: {', '.join(known)}"
            fail(f"unknown entity type {name!r}; {hint}", path)


def check_base_urls(config: Config, data: dict[str, Any], env: Any, fail: Fail) -> None:
    """Each base_url, its ${VAR}s expanded, is an http(s) URL: anything else fails every
    call, with retries, and an empty variable is the usual cause."""
    for name, provider in config.providers.items():
        written = data["providers"][name].get("base_url", "")
        if problem := url_problem(provider.base_url, str(written), env):
            fail(problem, ("providers", name, "base_url"))


def _find_cycle(config: Config, name: str, stack: list[str]) -> list[str] | None:
    if name in stack:
        return [*stack[stack.index(name):], name]
    for target in config.routes[name].targets:
        if target.route is not None:
            found = _find_cycle(config, target.route, [*stack, name])
            if found:
                return found
    return None
