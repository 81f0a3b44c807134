"""The on-disk answer store: diskcache under `$MCP_ROUTER_HOME`, size-capped, TTL on our clock.

This is the only module that imports diskcache. Values are JSON text, never pickles, so a
damaged or planted cache file can at worst fail to parse. Expiry is decided by the injected
clock's `wall()`; diskcache's own `expire` is only a backstop that lets culling reclaim space.

A cache problem never breaks a call: a directory that cannot be opened, a damaged database,
a locked or unwritable file, an unparsable entry or an answer that cannot be written as JSON
(a lone surrogate in its text) turns that one operation into a miss or a no-op, and the
first such problem is logged once (per store) to the `mcp_router.cache` logger. Calls are
synchronous on the event loop: measured on one small answer, a lookup takes ~25 µs (a miss
~10 µs), no more than a hop to a worker thread would cost. A store (`put`) is ~0.1 ms, most
of it the transaction; `stage` writes the answer's JSON and holds it in memory (served by
`get` at once), so an answer that cannot be written is refused there, and `flush` writes
everything staged in one transaction (~45 µs an answer in batches of 16, 5-8 µs of it
reading the row it may replace). A flush never raises: one entry that fails is dropped and
the others are written.

A batch or a delete that fails (another process holding the write lock past our timeout, a
full disk) is kept in memory and retried at the next flush: losing a new entry would be
harmless, but losing an overwrite or a delete would serve again an answer the caller
replaced or removed. Until it lands, `get` serves the newer answer from memory, or misses on
a key whose delete is pending. What waits is bounded (see `_bound`). Memory protects only
this process: another process sharing the directory reads the old row until the write lands.

Several servers may share the directory, and a batch may land after another server's newer
write (its answers waited up to `FLUSH_AFTER_S` in memory, or behind a held lock): newer
wins. Every row carries the wall time of its answer (`stored_at`); a removal writes a
tombstone, a row with no answer stamped with the time of the removal, instead of deleting.
A write reads the row under its key in the same transaction and leaves a newer one in
place, so a late batch neither brings back a removed answer nor replaces a refreshed one.
The stamps come from the injected clock's `wall()`, the one clock separate processes can
compare; if it steps back, rows stamped before the step look newer for that long, and a
refresh or removal made meanwhile may not replace them.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import diskcache
from diskcache.core import MODE_RAW, MODE_TEXT
from pydantic import BaseModel, ConfigDict

from mcp_router.cache import policy
from mcp_router.clock import Clock
from mcp_router.config import CacheConfig, make_data_dir, make_private_file
from mcp_router.messages import ChatRequest, ChatResponse

__all__ = ["CACHE_DIR", "CachedAnswer", "DamagedEntry", "ResponseCache"]

CACHE_DIR = "cache"
log = logging.getLogger("mcp_router.cache")

# Another process holding the write lock must not stall the event loop: give up quickly
# and let the call go upstream (diskcache's default would wait 60 s).
_LOCK_TIMEOUT_S = 0.1
_STORE_FAULTS = (sqlite3.Error, OSError, diskcache.Timeout)
# diskcache culls (expired entries, then the size cap) inside every set, two more queries each
# time; we cull after every `_CULL_EVERY` stores, or sooner once 1/16 of the cap was written.
_CULL_EVERY = 64
_CULL_SHARE = 16
# ValueError covers bad JSON, failed validation, bad UTF-8 in a value file and DamagedEntry.
_READ_FAULTS = (*_STORE_FAULTS, ValueError)
# What one entry's own text can make its write fail with: text JSON or SQLite cannot hold
# (PydanticSerializationError and UnicodeEncodeError are ValueErrors), or text too long.
_ENTRY_FAULTS = (ValueError, OverflowError, sqlite3.DataError)
_WRITE_FAULTS = (*_STORE_FAULTS, *_ENTRY_FAULTS)
# How much a failing disk may leave waiting in memory: answers (each holds its text), then
# pending deletes (a key each); see `ResponseCache._bound`.
_STAGED_MAX = 1024
_DELETES_MAX = 16 * _STAGED_MAX
# How long a tombstone outlives its removal at least, whatever the config's TTL; and how old
# an answer still waiting to be written may be: one older is let go (`_write`), so no late
# batch outlives a tombstone, whichever server wrote it and whatever TTLs they use.
_REMOVED_MIN_S = 60.0


class DamagedEntry(ValueError):
    """A cache row that is not JSON text (for instance a pickle): refused, never unpickled."""


class _TextDisk(diskcache.Disk):  # type: ignore[misc]
    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode not in (MODE_RAW, MODE_TEXT):
            raise DamagedEntry(f"cache row in storage mode {mode}, expected text")
        return super().fetch(mode, filename, value, read)


class _Entry(BaseModel):
    """What one cache row holds, as JSON text: an answer, or (`response` None) a tombstone
    left by a removal at `stored_at`, which a lookup takes as a miss."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = 1
    response: ChatResponse | None
    stored_at: float
    expires_at: float
    cost_usd: Decimal | None  # a JSON string: exact, never a float


class _Stamp(BaseModel):
    """Only a row's `stored_at`: what a write compares, without validating the answer."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    stored_at: float


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: who gave it (in `response`), when, what it cost, and its age at lookup.

    `cost_usd` is what the original upstream call cost (None when its price was unknown);
    a hit costs nothing, so this is the amount the hit saved.
    """

    response: ChatResponse
    stored_at: float
    cost_usd: Decimal | None
    age_s: float = 0.0

    def seen_at(self, now: float) -> CachedAnswer:
        """This answer with its age at wall time `now` (never below zero: clocks step back)."""
        return replace(self, age_s=max(0.0, now - self.stored_at))


class ResponseCache:
    """Answers by key in a size-capped diskcache directory; every failure is a miss or no-op."""

    def __init__(self, directory: Path, config: CacheConfig, clock: Clock) -> None:
        self.directory, self.config, self.clock = Path(directory), config, clock
        self._warned = False
        self._disk: diskcache.Cache | None = self._open() if config.enabled else None
        self._stores, self._stored_bytes = 0, 0  # since the last cull
        self._staged: dict[str, tuple[_Entry, str]] = {}  # each entry with its JSON text
        self._deleting: dict[str, float] = {}  # removals that failed, when: misses until written
        self._blind = False  # a pending write was forgotten: the disk may hold stale answers

    @classmethod
    def in_home(cls, home: Path, config: CacheConfig, clock: Clock) -> ResponseCache:
        """The store in its usual place: `<home>/cache`, home being `$MCP_ROUTER_HOME`."""
        return cls(Path(home) / CACHE_DIR, config, clock)

    def get(self, key: str) -> CachedAnswer | None:
        """The live answer under `key`, with its age; None if absent, expired or unreadable."""
        if self._disk is None:
            return None
        entry = self._staged_entry(key)
        if entry is None:
            if self._blind or key in self._deleting:
                return None
            try:
                text = self._disk.get(key)
                entry = None if text is None else _Entry.model_validate_json(text)
            except _READ_FAULTS as exc:
                self.fault("read", exc)
                self._discard(key, exc)
                return None
        return self._live(entry)

    def just_stored(self, key: str) -> CachedAnswer | None:
        """The answer under `key` if it was stored since the last flush (memory only, no disk
        read): what a caller that looked a moment ago may have missed."""
        return self._live(self._staged_entry(key))

    def _staged_entry(self, key: str) -> _Entry | None:
        staged = self._staged.get(key)
        return None if staged is None else staged[0]

    def _live(self, entry: _Entry | None) -> CachedAnswer | None:
        now = self.clock.wall()
        if entry is None or entry.response is None or now >= entry.expires_at:
            return None
        return CachedAnswer(entry.response, entry.stored_at, entry.cost_usd).seen_at(now)

    def put(self, key: str, answer: CachedAnswer, ttl_s: float | None = None) -> None:
        """Store `answer` under `key` for `ttl_s` seconds (default: the config's `ttl_s`)."""
        self.stage(key, answer, ttl_s)
        self.flush()

    def stage(self, key: str, answer: CachedAnswer, ttl_s: float | None = None) -> bool:
        """Hold `answer` in memory for `flush` to write; `get` serves it from now on.

        A TTL of zero or less replaces what is under `key` with nothing: the entry is dropped
        (a delete that fails waits for `flush`). An answer that cannot be written as JSON is
        not held (a cache problem, logged once). Returns whether something now waits for
        `flush`.
        """
        ttl = self.config.ttl_s if ttl_s is None else ttl_s
        if self._disk is None:
            return False
        if ttl <= 0:
            self.drop(key)
            return key in self._deleting
        entry = _Entry(response=answer.response, stored_at=answer.stored_at,
                       expires_at=answer.stored_at + ttl, cost_usd=answer.cost_usd)
        try:
            # Written now rather than in `flush`: the same work, and a bad answer is refused
            # here, before anyone is served it from memory.
            text = entry.model_dump_json()
        except _ENTRY_FAULTS as exc:
            self.fault("write", exc)
            return False
        self._deleting.pop(key, None)
        self._staged.pop(key, None)  # to the back of the queue `_bound` sheds from
        self._staged[key] = (entry, text)
        self._bound()
        return True

    def drop(self, key: str) -> None:
        """Remove the answer under `key`, staged or on disk, leaving a tombstone on disk (see
        the module's docstring) so that an older answer another process writes later stays out.

        A removal that fails leaves `key` missing for this process and is retried by `flush`.
        """
        self._staged.pop(key, None)
        if self._disk is None:
            return
        removal = {key: self.clock.wall()}
        try:
            self._write(self._disk, {}, removal)
        except _WRITE_FAULTS as exc:
            self.fault("delete", exc)
            self._deleting.update(removal)
            self._bound()
        else:
            self._deleting.pop(key, None)

    @property
    def staged(self) -> int:
        """How many answers and deletes wait for `flush`."""
        return len(self._staged) + len(self._deleting)

    def flush(self) -> None:
        """Write every staged answer and pending delete to disk, in one transaction; never
        raises.

        An entry that cannot be written is dropped and the rest of the batch still goes to
        disk; a batch that cannot be written at all stays staged for the next flush.
        """
        staged, deleting = self._staged, self._deleting
        self._staged, self._deleting = {}, {}
        if self._disk is None or not (staged or deleting):
            return
        try:
            stores, written = self._write(self._disk, staged, deleting)
        except _WRITE_FAULTS as exc:
            self.fault("write", exc)
            # Kept for the next flush, oldest first, unless staged or deleted again since.
            since = self._staged.keys() | self._deleting.keys()
            self._staged = {**{k: v for k, v in staged.items() if k not in since},
                            **self._staged}
            self._deleting = {**{k: t for k, t in deleting.items() if k not in since},
                              **self._deleting}
            self._bound()
            return
        try:
            self._cull_when_due(stores, written)
        except _STORE_FAULTS as exc:  # the batch is on disk: only the cull waits
            self.fault("cull", exc)

    def _write(self, disk: diskcache.Cache, staged: dict[str, tuple[_Entry, str]],
               deleting: dict[str, float]) -> tuple[int, int]:
        """Write `staged` answers and tombstones for `deleting` (key: removal time) in one
        transaction, each only where the row under its key is not newer: newer wins."""
        now, stores, written = self.clock.wall(), 0, 0
        lasts = max(self.config.ttl_s, _REMOVED_MIN_S)
        removals = {key: self._tombstone(removed_at, lasts)
                    for key, removed_at in deleting.items()}
        with disk.transact():
            for key, (entry, text) in {**removals, **staged}.items():
                if entry.response is not None and entry.stored_at < now - _REMOVED_MIN_S:
                    # Older than any server's tombstones last: a removal since may have
                    # left no trace, so the answer is let go (a miss, not a resurrection).
                    continue
                if _stamp(disk, key) > entry.stored_at:
                    continue
                try:
                    disk.set(key, text, expire=max(entry.expires_at - now, 0.001))
                except _ENTRY_FAULTS as exc:  # this entry's text: the others still go in
                    self.fault("write", exc)
                    continue
                stores, written = stores + 1, written + len(text)
        return stores, written

    @staticmethod
    def _tombstone(removed_at: float, lasts_s: float) -> tuple[_Entry, str]:
        entry = _Entry(response=None, stored_at=removed_at, expires_at=removed_at + lasts_s,
                       cost_usd=None)
        return entry, entry.model_dump_json()

    def _bound(self) -> None:
        """Keep what a failing disk leaves waiting within `_STAGED_MAX` answers and
        `_DELETES_MAX` deletes, the oldest going first.

        A surplus answer under a new key is forgotten (that loses only a cache entry); one
        that overwrites a row on disk becomes a pending delete, so this process misses
        rather than serving the row it replaced. Past the cap on deletes, this store stops
        reading the disk for good: it can no longer tell which rows were replaced.
        """
        while len(self._staged) > _STAGED_MAX:
            key = next(iter(self._staged))
            entry, _ = self._staged.pop(key)
            if self._on_disk(key):
                self._deleting[key] = entry.stored_at
        while len(self._deleting) > _DELETES_MAX:
            del self._deleting[next(iter(self._deleting))]
            self._blind = True

    def _on_disk(self, key: str) -> bool:
        try:
            return self._disk is not None and key in self._disk
        except _STORE_FAULTS:
            return True  # unknown: assume it would bring an old answer back

    def _cull_when_due(self, stores: int, size: int) -> None:
        self._stores, self._stored_bytes = self._stores + stores, self._stored_bytes + size
        if self._disk is not None and (
                self._stores >= _CULL_EVERY
                or self._stored_bytes * _CULL_SHARE >= self._disk.size_limit):
            self._stores, self._stored_bytes = 0, 0
            self._disk.cull()

    def may_cache(self, request: ChatRequest, *, call_opt_in: bool = False) -> bool:
        """Whether answers to `request` may be cached at all: enabled, and the temperature rule.

        A broken directory still says yes: lookups then miss and stores do nothing, but
        identical in-flight calls are still shared.
        """
        sampled_ok = self._sampled(call_opt_in)
        return self.config.enabled and policy.may_cache(request, sampled_ok=sampled_ok)

    def should_store(self, request: ChatRequest, response: ChatResponse, *,
                     call_opt_in: bool = False) -> bool:
        """The policy of `mcp_router.cache.policy`, with the config's and the call's opt-in."""
        return policy.should_store(request, response, sampled_ok=self._sampled(call_opt_in))

    def close(self) -> None:
        """Write what is staged and close the database; later calls are misses and no-ops."""
        self.flush()
        disk, self._disk = self._disk, None
        if disk is not None:
            disk.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _sampled(self, call_opt_in: bool) -> bool:
        return call_opt_in or self.config.sampled

    def _open(self) -> diskcache.Cache | None:
        try:
            make_data_dir(self.directory)
            make_private_file(self.directory / diskcache.core.DBNAME)
            return diskcache.Cache(
                str(self.directory), timeout=_LOCK_TIMEOUT_S, disk=_TextDisk,
                size_limit=self.config.max_size_mb * 2**20,
                eviction_policy="least-recently-stored", cull_limit=0,
                # Every answer in the database, none in a value file of its own: one private
                # file, and no file per long answer made with the process's umask.
                disk_min_file_size=2**31,
            )
        except _STORE_FAULTS as exc:
            self.fault("open", exc)
            return None

    def _discard(self, key: str, cause: Exception) -> None:
        # an entry that does not parse would fail the same way on every lookup: drop it
        if isinstance(cause, ValueError):
            self.drop(key)

    def fault(self, operation: str, exc: Exception) -> None:
        """Log a cache problem: the first one of this store only; the call carries on."""
        if self._warned:
            return
        self._warned = True
        log.warning("response cache at %s: %s failed (%s: %s); calls carry on without the "
                    "cache where it fails (logged once, later cache problems are not)",
                    self.directory, operation, type(exc).__name__, exc)


def _stamp(disk: diskcache.Cache, key: str) -> float:
    """The `stored_at` of the live row under `key`, or -inf when there is none or it cannot
    be read (a damaged row is simply overwritten)."""
    try:
        text = disk.get(key)
        return -math.inf if text is None else _Stamp.model_validate_json(text).stored_at
    except ValueError:
        return -math.inf
