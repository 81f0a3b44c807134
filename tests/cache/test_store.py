"""The store: hits, misses, TTL on the injected clock, tenants, provenance and the size cap."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from mcp_router.cache import CachedAnswer, ResponseCache, cache_key
from mcp_router.config import CacheConfig
from tests.cache.support import FakeClock, answer, request, unwritable


def test_a_stored_answer_comes_back_whole(store: ResponseCache, clock: FakeClock) -> None:
    stored = answer(clock, "four", cost="0.000123")
    store.put("k", stored)
    assert store.get("k") == stored


def test_an_unknown_key_is_a_miss(store: ResponseCache) -> None:
    assert store.get("never-stored") is None


def test_a_hit_reports_its_age_on_the_injected_clock(store: ResponseCache,
                                                      clock: FakeClock) -> None:
    store.put("k", answer(clock))
    clock.advance(42.5)
    hit = store.get("k")
    assert hit is not None and hit.age_s == 42.5


def test_an_answer_expires_after_the_config_ttl(tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(ttl_s=60), clock) as store:
        store.put("k", answer(clock))
        clock.advance(59.9)
        assert store.get("k") is not None
        clock.advance(0.1)
        assert store.get("k") is None


def test_the_default_ttl_is_an_hour(tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as store:
        store.put("k", answer(clock))
        clock.advance(3599)
        assert store.get("k") is not None
        clock.advance(1)
        assert store.get("k") is None


def test_a_per_call_ttl_overrides_the_config(store: ResponseCache, clock: FakeClock) -> None:
    store.put("short", answer(clock), ttl_s=5)
    store.put("long", answer(clock), ttl_s=7200)
    clock.advance(3700)
    assert store.get("short") is None
    assert store.get("long") is not None


def test_a_zero_ttl_stores_nothing(store: ResponseCache, clock: FakeClock) -> None:
    store.put("k", answer(clock), ttl_s=0)
    assert store.get("k") is None


def test_a_clock_stepping_back_never_gives_a_negative_age(store: ResponseCache,
                                                          clock: FakeClock) -> None:
    store.put("k", answer(clock))
    clock.advance(-30)
    hit = store.get("k")
    assert hit is not None and hit.age_s == 0.0


def test_the_same_request_from_two_tenants_is_two_entries(store: ResponseCache,
                                                          clock: FakeClock) -> None:
    req = request()
    key_a, key_b = cache_key(req, "route:default", "a"), cache_key(req, "route:default", "b")
    store.put(key_a, answer(clock, "for a"))
    assert store.get(key_b) is None
    store.put(key_b, answer(clock, "for b"))
    hit_a, hit_b = store.get(key_a), store.get(key_b)
    assert hit_a is not None and hit_a.response.completion.content == "for a"
    assert hit_b is not None and hit_b.response.completion.content == "for b"


def test_a_hit_names_the_provider_and_model_that_actually_answered(
        store: ResponseCache, clock: FakeClock) -> None:
    # asked of a route whose first target failed; the fallback answered
    key = cache_key(request(), "route:default", "a")
    store.put(key, answer(clock, provider="anthropic", model="claude-3-haiku-20240307"))
    hit = store.get(key)
    assert hit is not None
    assert (hit.response.provider, hit.response.model) == ("anthropic", "claude-3-haiku-20240307")
    assert hit.response.completion.upstream_model == "claude-3-haiku-20240307-0613"


def test_cost_survives_the_disk_exactly(store: ResponseCache, clock: FakeClock) -> None:
    store.put("priced", answer(clock, cost="0.000000123456789012345678901234567"))
    store.put("unpriced", answer(clock, cost=None))
    priced, unpriced = store.get("priced"), store.get("unpriced")
    assert priced is not None and priced.cost_usd == Decimal("0.000000123456789012345678901234567")
    assert unpriced is not None and unpriced.cost_usd is None


def test_a_later_put_overwrites(store: ResponseCache, clock: FakeClock) -> None:
    store.put("k", answer(clock, "old"))
    clock.advance(10)
    store.put("k", answer(clock, "new"))
    hit = store.get("k")
    assert hit is not None and hit.response.completion.content == "new" and hit.age_s == 0


def test_entries_outlive_the_process_that_stored_them(tmp_path: Path,
                                                      clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as first:
        first.put("k", answer(clock))
    with ResponseCache(tmp_path, CacheConfig(), clock) as second:
        assert second.get("k") is not None


def test_a_staged_answer_is_served_at_once_and_on_disk_after_the_flush(
        tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as first, \
            ResponseCache(tmp_path, CacheConfig(), clock) as other_process:
        first.stage("a", answer(clock, "one"))
        first.stage("b", answer(clock, "two"))
        assert first.staged == 2 and first.get("a") is not None
        assert other_process.get("a") is None  # still only in memory
        first.flush()
        assert first.staged == 0
        hits = [other_process.get(k) for k in ("a", "b")]
        assert [h and h.response.completion.content for h in hits] == ["one", "two"]


def test_closing_writes_what_is_still_staged(tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as first:
        first.stage("k", answer(clock))
    with ResponseCache(tmp_path, CacheConfig(), clock) as second:
        assert second.get("k") is not None


def test_a_staged_answer_keeps_its_ttl_on_disk(tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(ttl_s=60), clock) as first:
        first.stage("k", answer(clock))
        clock.advance(50)
    with ResponseCache(tmp_path, CacheConfig(ttl_s=60), clock) as second:
        assert second.get("k") is not None
        clock.advance(11)
        assert second.get("k") is None


def test_a_disabled_cache_neither_stores_nor_touches_the_disk(tmp_path: Path,
                                                               clock: FakeClock) -> None:
    with ResponseCache(tmp_path / "c", CacheConfig(enabled=False), clock) as store:
        store.put("k", answer(clock))
        assert store.get("k") is None
    assert not (tmp_path / "c").exists()


def test_the_size_cap_evicts_the_oldest_entries(tmp_path: Path, clock: FakeClock) -> None:
    big = "x" * 20_000  # ~20 kB each: 120 of them are ~2.4 MB against a 1 MB cap
    with ResponseCache(tmp_path, CacheConfig(max_size_mb=1), clock) as store:
        for i in range(120):
            store.put(f"k{i}", CachedAnswer(answer(clock, big).response, clock.wall(), None))
        kept = [i for i in range(120) if store.get(f"k{i}") is not None]
    on_disk = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert 0 not in kept and 119 in kept
    assert kept == list(range(kept[0], 120))  # least recently stored go first
    assert on_disk < 1.5 * 2**20


def test_a_zero_ttl_drops_what_was_stored_before(store: ResponseCache, clock: FakeClock,
                                                 tmp_path: Path) -> None:
    store.put("on disk", answer(clock))
    store.stage("staged", answer(clock))
    store.stage("on disk", answer(clock, "again"), ttl_s=0)
    store.stage("staged", answer(clock, "again"), ttl_s=0)
    store.flush()
    assert (store.get("on disk"), store.get("staged")) == (None, None)
    with ResponseCache.in_home(tmp_path / "home", CacheConfig(), clock) as reopened:
        assert reopened.get("on disk") is None


def test_an_answer_that_cannot_be_written_is_refused_and_the_batch_still_written(
        store: ResponseCache, clock: FakeClock, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    good, bad = answer(clock, "four"), answer(clock)
    bad = CachedAnswer(unwritable(bad.response), bad.stored_at, bad.cost_usd)
    assert store.stage("good", good) is True
    assert store.stage("bad", bad) is False
    assert store.get("bad") is None  # never served from memory either
    store.stage("after", good)
    store.flush()
    with ResponseCache.in_home(tmp_path / "home", CacheConfig(), clock) as reopened:
        assert (reopened.get("good"), reopened.get("after")) == (good, good)
    warned = [r.getMessage() for r in caplog.records if r.name == "mcp_router.cache"]
    assert len(warned) == 1 and "write failed" in warned[0]
