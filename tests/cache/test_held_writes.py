"""Writes and deletes the disk refuses (another process holds the lock) wait in memory: this
process never serves an answer it replaced or removed, and the next flush lands them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcp_router.cache import ResponseCache
from mcp_router.cache.store import _DELETES_MAX, _STAGED_MAX
from mcp_router.config import CacheConfig
from tests.cache.support import FakeClock, answer

DB = "cache.db"


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Another process sharing the directory, holding the write lock past our timeout."""
    other = sqlite3.connect(directory / DB, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def content(store: ResponseCache, key: str) -> str | None:
    hit = store.get(key)
    return None if hit is None else hit.response.completion.content


def on_disk(directory: Path, clock: FakeClock, key: str) -> str | None:
    """What a fresh store (a restart, another process) finds under `key`."""
    with ResponseCache(directory, CacheConfig(), clock) as fresh:
        return content(fresh, key)


def test_a_refresh_the_disk_refused_is_served_and_written_by_the_next_flush(
        tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as store:
        store.put("k", answer(clock, "old"))
        with locked(tmp_path):
            store.put("k", answer(clock, "new"))
            assert content(store, "k") == "new"
        assert content(store, "k") == "new" and store.staged == 1
        store.flush()
        assert store.staged == 0
        assert on_disk(tmp_path, clock, "k") == "new"


def test_a_zero_ttl_delete_the_disk_refused_misses_and_lands_at_the_next_flush(
        tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as store:
        store.put("k", answer(clock, "old"))
        with locked(tmp_path):
            assert store.stage("k", answer(clock, "new"), ttl_s=0)  # the delete waits
            assert store.get("k") is None
        assert store.get("k") is None and store.just_stored("k") is None
        assert on_disk(tmp_path, clock, "k") == "old"  # other processes: not protected
        store.flush()
        assert store.staged == 0 and store.get("k") is None
        assert on_disk(tmp_path, clock, "k") is None


def test_a_batch_refused_twice_is_still_written_once_the_lock_is_gone(
        tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as store:
        store.put("a", answer(clock, "old a"))
        store.put("b", answer(clock, "old b"))
        with locked(tmp_path):
            store.put("a", answer(clock, "new a"))
            store.drop("b")
            store.flush()
            assert content(store, "a") == "new a" and store.get("b") is None
        store.flush()
    assert on_disk(tmp_path, clock, "a") == "new a"
    assert on_disk(tmp_path, clock, "b") is None


def test_an_answer_stored_after_a_refused_delete_replaces_it(
        tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as store:
        store.put("k", answer(clock, "old"))
        with locked(tmp_path):
            store.drop("k")
        store.put("k", answer(clock, "newer"))
        assert content(store, "k") == "newer" and store.staged == 0
    assert on_disk(tmp_path, clock, "k") == "newer"


def test_past_the_cap_new_keys_are_forgotten_and_overwrites_become_misses(
        tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as store:
        store.put("k0", answer(clock, "old"))
        store.stage("k0", answer(clock, "new"))  # an overwrite, the oldest waiting
        for i in range(1, _STAGED_MAX + 2):
            store.stage(f"k{i}", answer(clock, f"answer {i}"))
        assert store.get("k0") is None  # its old row is never served again
        assert store.get("k1") is None  # a new key: only a cache entry lost
        assert content(store, "k2") == "answer 2"
        assert store.staged == _STAGED_MAX + 1  # the answers, and the delete of k0
        store.flush()
    assert on_disk(tmp_path, clock, "k0") is None
    assert on_disk(tmp_path, clock, f"k{_STAGED_MAX + 1}") == f"answer {_STAGED_MAX + 1}"


def test_past_the_cap_on_deletes_the_store_stops_reading_the_disk(
        tmp_path: Path, clock: FakeClock) -> None:
    overwrites = _STAGED_MAX + _DELETES_MAX + 1
    with ResponseCache(tmp_path, CacheConfig(max_size_mb=256), clock) as store:
        for i in range(overwrites):
            store.stage(f"k{i}", answer(clock, "old"))
            if i % _STAGED_MAX == 0:
                store.flush()
        store.put("untouched", answer(clock, "kept"))
        for i in range(overwrites):
            store.stage(f"k{i}", answer(clock, "new"))
        # k0's pending delete was forgotten: only a miss on every read keeps "old" unserved
        assert store.get("k0") is None and store.get("untouched") is None
        assert content(store, f"k{overwrites - 1}") == "new"
        assert store.staged == _STAGED_MAX + _DELETES_MAX


def test_a_late_batch_from_another_server_does_not_replace_a_newer_refresh(
        tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as one, \
            ResponseCache(tmp_path, CacheConfig(), clock) as two:
        one.stage("k", answer(clock, "older"))  # waits for one's batch
        clock.advance(1)
        two.put("k", answer(clock, "refreshed"))
        one.flush()
        assert content(two, "k") == "refreshed" and content(one, "k") == "refreshed"
    assert on_disk(tmp_path, clock, "k") == "refreshed"


def test_a_removal_by_another_server_outlasts_an_older_answer_written_later(
        tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as one, \
            ResponseCache(tmp_path, CacheConfig(), clock) as two:
        one.stage("k", answer(clock, "older"))
        clock.advance(1)
        two.stage("k", answer(clock, "removed"), ttl_s=0)
        one.flush()
        assert two.get("k") is None and one.get("k") is None
        clock.advance(1)
        two.put("k", answer(clock, "newer"))  # an answer after the removal is kept
        assert content(one, "k") == "newer"


def test_a_removal_that_waited_for_the_lock_keeps_a_newer_answer(
        tmp_path: Path, clock: FakeClock) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as one, \
            ResponseCache(tmp_path, CacheConfig(), clock) as two:
        one.put("k", answer(clock, "old"))
        with locked(tmp_path):
            one.drop("k")  # refused: waits in memory
        clock.advance(1)
        two.put("k", answer(clock, "newer"))
        one.flush()  # the removal lands, older than what is there now
        assert content(one, "k") == "newer" and content(two, "k") == "newer"


def test_an_answer_waiting_longer_than_a_removal_is_remembered_is_let_go(
        tmp_path: Path, clock: FakeClock) -> None:
    """Its key may have been removed since, by a tombstone already gone: a miss, not a
    removed answer served again for the rest of a long TTL."""
    with ResponseCache(tmp_path, CacheConfig(), clock) as one, \
            ResponseCache(tmp_path, CacheConfig(), clock) as two:
        with locked(tmp_path):
            one.put("k", answer(clock, "long-lived"), ttl_s=86_400)  # waits in memory
        clock.advance(61)
        one.flush()
        assert on_disk(tmp_path, clock, "k") is None and two.get("k") is None
