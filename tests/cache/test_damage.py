"""A damaged, unwritable or locked cache never breaks a call, and is logged exactly once."""

from __future__ import annotations

import os
import pickle
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_router.cache import ResponseCache
from mcp_router.config import CacheConfig
from tests.cache.support import FakeClock, answer

DB = "cache.db"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "mcp_router.cache" and r.levelname == "WARNING"]


def _exercise(store: ResponseCache, clock: FakeClock) -> None:
    """Several calls' worth of lookups and stores: each must quietly miss or do nothing."""
    for i in range(3):
        assert store.get(f"k{i}") is None
        store.put(f"k{i}", answer(clock))
        assert store.get(f"k{i}") is None


def _plant(directory: Path, key: str, mode: int, value: object) -> None:
    """Rewrite a stored row behind the cache's back, as damage or an attacker would."""
    with sqlite3.connect(directory / DB) as db:
        db.execute("UPDATE Cache SET mode = ?, value = ? WHERE key = ?", (mode, value, key))
    db.close()


class _Planted:
    """Unpickling this would create a file: proof that the cache never unpickles."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(directory, os.W_OK):
            pytest.skip("running as root: file permissions do not stop writes")
        yield directory
    finally:
        directory.chmod(stat.S_IRWXU)


def test_a_directory_that_is_a_file_turns_the_cache_off_with_one_warning(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache"
    path.write_text("not a directory")
    with ResponseCache(path, CacheConfig(), clock) as store:
        _exercise(store, clock)
    assert len(_warnings(caplog)) == 1
    assert "open failed" in _warnings(caplog)[0] and str(path) in _warnings(caplog)[0]


def test_a_garbage_database_file_turns_the_cache_off_with_one_warning(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / DB).write_bytes(os.urandom(8192))
    with ResponseCache(tmp_path, CacheConfig(), clock) as store:
        _exercise(store, clock)
    assert len(_warnings(caplog)) == 1


def test_a_database_damaged_while_open_fails_each_call_quietly(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as store:
        store.put("k", answer(clock))
        for name in (DB, f"{DB}-wal", f"{DB}-shm"):  # the WAL would still serve the pages
            with (tmp_path / name).open("r+b") as file:
                file.write(b"\x00garbage" * 4096)
        assert store.get("k") is None
        for _ in range(3):
            assert store.get("other") is None
            store.put("k", answer(clock))
            assert store.get("k") is not None  # the write failed: held for the next flush
    assert len(_warnings(caplog)) == 1


def test_a_read_only_directory_turns_the_cache_off_with_one_warning(
        read_only: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    with ResponseCache(read_only, CacheConfig(), clock) as store:
        _exercise(store, clock)
    assert len(_warnings(caplog)) == 1


@pytest.mark.parametrize("planted", ["not json", '{"v": 1}', '{"v": 99, "other": true}', 7])
def test_an_entry_that_does_not_parse_is_a_miss_and_is_dropped(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        planted: object) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as store:
        store.put("k", answer(clock))
        _plant(tmp_path, "k", 1, planted)
        assert store.get("k") is None
        assert store.get("k") is None
        store.put("k", answer(clock, "fresh"))
        hit = store.get("k")
    assert hit is not None and hit.response.completion.content == "fresh"
    assert len(_warnings(caplog)) == 1


def test_a_planted_pickle_is_refused_never_unpickled(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "unpickled"
    with ResponseCache(tmp_path / "c", CacheConfig(), clock) as store:
        store.put("k", answer(clock))
        _plant(tmp_path / "c", "k", 4, pickle.dumps(_Planted(marker)))  # 4: diskcache's pickle
        assert store.get("k") is None
    assert not marker.exists()
    assert len(_warnings(caplog)) == 1 and "DamagedEntry" in _warnings(caplog)[0]


def test_a_locked_database_skips_the_store_quickly_with_one_warning(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    with ResponseCache(tmp_path, CacheConfig(), clock) as store:
        store.put("before", answer(clock))
        other = sqlite3.connect(tmp_path / DB, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process stuck mid-write
        try:
            started = time.monotonic()
            store.put("during", answer(clock))
            store.put("during", answer(clock))
            blocked_s = time.monotonic() - started
            assert store.get("before") is not None  # readers are not blocked (WAL)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.get("during") is not None  # not on disk yet: held for the next flush
        store.put("after", answer(clock))
        assert store.get("after") is not None
    assert blocked_s < 2.0
    assert len(_warnings(caplog)) == 1
