"""The response cache: canonical keys, a diskcache store, the store policy and single flight.

The router uses it as: `key = cache_key(filtered_request, scope, tenant)`, then
`served = await CacheStep(store).answer(key, request, call.cache, fetch, later=tasks)`, where
`fetch(progress)` goes upstream and returns a `Fetched`.
Only `mcp_router.cache.store` imports diskcache.
"""

from mcp_router.cache.flight import WAITING, Seat, SingleFlight
from mcp_router.cache.key import KEY_VERSION, cache_key, canonical_json
from mcp_router.cache.policy import (
    COMPLETE_FINISH_REASONS,
    is_complete,
    is_sampled,
    may_cache,
    shared_failure,
    should_store,
)
from mcp_router.cache.step import FLUSH_AFTER_S, CacheStep, Fetch, Fetched, Served
from mcp_router.cache.store import CACHE_DIR, CachedAnswer, ResponseCache

__all__ = [
    "CACHE_DIR",
    "COMPLETE_FINISH_REASONS",
    "FLUSH_AFTER_S",
    "KEY_VERSION",
    "WAITING",
    "CacheStep",
    "CachedAnswer",
    "Fetch",
    "Fetched",
    "ResponseCache",
    "Seat",
    "Served",
    "SingleFlight",
    "cache_key",
    "canonical_json",
    "is_complete",
    "is_sampled",
    "may_cache",
    "shared_failure",
    "should_store",
]
