"""Who may do what on a shared server: client tokens, per-client allow-lists and rate limits."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mcp_router.clock import Clock
from mcp_router.errors import AccessDenied, RateLimited
from mcp_router.shared_config import ClientConfig, valid_client_name

__all__ = ["Access", "AccessDenied", "RateLimited", "RateLimiter", "find_client", "hash_token",
           "new_token", "token_instructions", "token_line"]

TOKEN_PREFIX = "mcpr_"


def new_token() -> str:
    """A fresh client token: `mcpr_` and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The sha256 hex digest the config stores in place of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def find_client(token: str, hashes: Mapping[str, str]) -> str | None:
    """The name whose stored hash matches `token`, comparing every entry in constant time."""
    digest = hash_token(token)
    found = None
    # No early exit: the time taken does not tell which entry (if any) matched.
    for name, stored in hashes.items():
        if hmac.compare_digest(digest, stored):
            found = name
    return found


def token_line(name: str, token: str) -> str:
    """The YAML lines to paste under `clients:` for a client named `name`."""
    if not valid_client_name(name):
        raise ValueError(f"client name {name!r}: use letters, digits and _.@- "
                         "(at most 64 characters)")
    return f"  {name}:\n    token_sha256: {hash_token(token)}"


def token_instructions(name: str, token: str) -> str:
    """What `mcp-router token new NAME` prints: the token, once, and the config lines."""
    return "\n".join([
        f"Token for client {name!r} (shown only now; the config keeps just its hash):",
        f"  {token}",
        "",
        "Paste under `clients:` in the config (add routes, models, budgets, rate_per_min):",
        token_line(name, token),
        "",
        "The client sends it as the header:  Authorization: Bearer <token>",
    ])


def _pattern(glob: str) -> re.Pattern[str]:
    """`*` matches any run of characters; everything else is literal."""
    return re.compile(".*".join(re.escape(part) for part in glob.split("*")))


@dataclass(frozen=True)
class _Allowed:
    routes: tuple[str, ...]
    models: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]

    @property
    def everything(self) -> bool:
        return not self.routes and not self.models

    def describe(self) -> str:
        parts = [f"routes {', '.join(self.routes)}" if self.routes else "no route",
                 f"models {', '.join(self.models)}" if self.models else "no explicit model"]
        return " and ".join(parts)


class Access:
    """Per-client policy: which routes and models each client may use, and at what rate.

    A name not in `clients` (the stdio host, a loopback server without tokens) is
    unrestricted: only configured clients carry limits.
    """

    def __init__(self, clients: Mapping[str, ClientConfig], clock: Clock) -> None:
        self._allowed = {name: _Allowed(tuple(c.routes), tuple(c.models),
                                        tuple(_pattern(m) for m in c.models))
                         for name, c in clients.items()}
        self._limiters = {name: RateLimiter(clock, c.rate_per_min)
                          for name, c in clients.items() if c.rate_per_min is not None}

    def check(self, client: str, route: str | None, model_spec: str | None) -> None:
        """Raise AccessDenied unless `client` may use `route` (resolved) or `model_spec`."""
        allowed = self._allowed.get(client)
        if allowed is None or allowed.everything:
            return
        if model_spec is not None:
            if not any(p.fullmatch(model_spec) for p in allowed.patterns):
                raise AccessDenied(client, f"client {client!r} may not use model "
                                           f"{model_spec!r}; it may use {allowed.describe()}")
        elif route is not None and not allowed.routes:
            # Said without the route: a call naming none is given the default, unasked.
            raise AccessDenied(client, f"client {client!r} may use no route, only models "
                                       f"{', '.join(allowed.models)}: give one as model")
        elif route is not None and route not in allowed.routes:
            raise AccessDenied(client, f"client {client!r} may not use route {route!r}; "
                                       f"it may use {allowed.describe()}")

    def default_route(self, client: str, default: str) -> str:
        """The route a call that names none takes: the config's default, or for a client
        kept to routes that leave it out, the first of its routes."""
        allowed = self._allowed.get(client)
        if allowed is None or not allowed.routes or default in allowed.routes:
            return default
        return allowed.routes[0]

    def check_call(self, client: str, *, route: str | None, model: str | None,
                   fallbacks: Iterable[str] = ()) -> None:
        """Check a whole call: its resolved route or explicit model, and every fallback."""
        self.check(client, route if model is None else None, model)
        for spec in fallbacks:
            self.check(client, None, spec)

    def admit(self, client: str) -> None:
        """Count one call against the client's rate; raise RateLimited when it is over."""
        limiter = self._limiters.get(client)
        if limiter is not None:
            limiter.check(client)


_HAIR = 1e-9  # of a token: far below what a tenth of a second refills at any rate


class RateLimiter:
    """A token bucket per client: bursts up to `per_min` calls, refilled at `per_min` a minute."""

    def __init__(self, clock: Clock, per_min: int) -> None:
        if per_min <= 0:
            raise ValueError("per_min must be positive")
        self._clock, self.per_min = clock, per_min
        self._rate = per_min / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, as of when)

    def check(self, client: str) -> None:
        """Take one token for `client`, or raise RateLimited with the wait until the next."""
        now = self._clock.now()
        tokens, then = self._buckets.get(client, (float(self.per_min), now))
        tokens = min(float(self.per_min), tokens + (now - then) * self._rate)
        # Within a hair of a whole token is one: 2.4 s at 25 a minute refills 0.99999… in
        # floating point, and a caller that waits the time it was told must get through.
        if tokens < 1.0 - _HAIR:
            self._buckets[client] = (tokens, now)
            # Rounded up to a tenth so a caller that waits exactly this long gets through.
            wait = math.ceil((1.0 - tokens) / self._rate * 10) / 10
            raise RateLimited(client, wait, self.per_min)
        self._buckets[client] = (max(tokens - 1.0, 0.0), now)
