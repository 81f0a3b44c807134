"""The response cache: canonical keys, a diskcache store, the store policy and single flight.

The router uses it as: `key = cache_key(filtered_request, scope, tenant)`, then
`served = await CacheStep(store).answer(key, request, call.cache, fetch, later=tasks)`.
Only `mcp_router.cache.store` imports diskcache.
"""

from mcp_router.cache.flight import SingleFlight
from mcp_router.cache.key import KEY_VERSION, cache_key, canonical_json
from mcp_router.cache.policy import (
    COMPLETE_FINISH_REASONS,
    is_complete,
    is_sampled,
    may_cache,
    should_store,
)
from mcp_router.cache.step import FLUSH_AFTER_S, CacheStep, Fetch, Served
from mcp_router.cache.store import CACHE_DIR, CachedAnswer, ResponseCache

__all__ = [
    "CACHE_DIR",
    "COMPLETE_FINISH_REASONS",
    "FLUSH_AFTER_S",
    "KEY_VERSION",
    "CacheStep",
    "CachedAnswer",
    "Fetch",
    "ResponseCache",
    "Served",
    "SingleFlight",
    "cache_key",
    "canonical_json",
    "is_complete",
    "is_sampled",
    "may_cache",
    "should_store",
]
