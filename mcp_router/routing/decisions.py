"""The fallback decision table: how often a failure may be retried and whether it ends a route."""

from __future__ import annotations

from mcp_router.config import RetryConfig
from mcp_router.errors import (
    ProviderError,
    ProviderNotConfigured,
    ProviderProtocolError,
    ProviderStatusError,
    ProviderTimeout,
    ProviderUnavailable,
    RouterError,
)

# Anthropic's "overloaded" is transient like a 503, even when a config's on_status omits it.
ALWAYS_RETRYABLE_STATUS = frozenset({529})
RETRY_ONCE_STATUS = frozenset({408})
# The request itself is wrong: every other target would refuse it too. Vendors that send
# account problems as 400 (Gemini's API_KEY_INVALID, Anthropic's empty credit balance) have
# them read as 401 by their wire (`Wire.reclassify`), so those reach the next target.
REQUEST_IS_WRONG_STATUS = frozenset({400, 422})


def tries_allowed(error: ProviderError, retry: RetryConfig) -> int:
    """Total tries at one target that `error` allows, counting the try that just failed.

    `retry.attempts` caps every row, so `attempts: 1` turns retrying off entirely.
    """
    if isinstance(error, ProviderNotConfigured):
        return 1
    if isinstance(error, ProviderTimeout | ProviderUnavailable):
        return retry.attempts
    if isinstance(error, ProviderProtocolError):
        return min(2, retry.attempts)
    if isinstance(error, ProviderStatusError):
        if error.status in REQUEST_IS_WRONG_STATUS:
            return 1
        if error.status in retry.on_status or error.status in ALWAYS_RETRYABLE_STATUS:
            return retry.attempts
        if error.status in RETRY_ONCE_STATUS:
            return min(2, retry.attempts)
    # 401/403/404 and anything unlisted: this target will not get better; the next might.
    return 1


def ends_route(error: RouterError) -> bool:
    """True when no other target should be asked: the caller must fix the request."""
    return isinstance(error, ProviderStatusError) and error.status in REQUEST_IS_WRONG_STATUS
