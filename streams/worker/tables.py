"""A read cache and per-batch write-back in front of a Faust table.

The correlate agent reads the same candidate lists and incident records over and over; a RocksDB
table deserializes the value on every read. `CachedTable` keeps recently used values (and known
misses) in a bounded LRU. Only the worker that owns a partition writes its keys, so the cache is
exact until partitions move: `clear_cache()` is called on every rebalance. Values are treated as
immutable (the domain re-assigns, never mutates in place).

Writes go straight to the table, except inside a batch (`begin_batch` … `flush`): then the last
value per key is kept with the stream event that wrote it, and `flush(set_current)` writes each
key once, with that event made current so the changelog record goes to the event's partition
(`set_current` and the batch around it are Faust specifics: `StateTables` in
streams/worker/engine.py). This module itself knows nothing of Faust.
A flood incident updated by 200 events of one batch is then serialized and changelogged once, not
200 times. The batch's events are acknowledged only after the flush (Faust's take_events), so a
crash mid-batch replays the whole batch against the last flushed state.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

_MISSING = object()
_NOT_CACHED = object()
#: The value `take_writes` gives for a deleted key.
DELETED = _MISSING


class CachedTable(MutableMapping[str, Any]):
    """MutableMapping over `table` with a bounded LRU read cache (including negative entries)."""

    def __init__(self, table: MutableMapping[str, Any], max_items: int = 100_000,
                 reader: Callable[[str, Any], Any] | None = None) -> None:
        """`reader(key, default)`: how a cache miss reads `table` (default ``table.get``; the worker
        passes a single-read store path, `streams.worker.engine.store_get`)."""
        self.table = table
        self._read: Callable[[str, Any], Any] = reader or table.get
        self.max_items = max_items
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._dirty: dict[str, tuple[Any, Any]] | None = None
        self.current: Any = None  # the stream event being processed (set by the agent)
        self.hits = 0
        self.misses = 0

    def begin_batch(self) -> None:
        """Start collecting writes (see module docstring)."""
        self._dirty = {}

    def flush(self, set_current: Callable[[Any], None]) -> int:
        """Write every collected key once, with its writing event current; returns keys written."""
        dirty, self._dirty = self._dirty or {}, None
        for key, (value, event) in dirty.items():
            set_current(event)
            if value is _MISSING:
                try:
                    del self.table[key]
                except KeyError:
                    pass
            else:
                self.table[key] = value
        return len(dirty)

    def take_writes(self) -> dict[str, tuple[Any, Any]]:
        """End the batch without writing: key → (value, writing event) of every collected write,
        the value `DELETED` for a deletion. The caller writes them (`write_store`) once they are
        committed elsewhere (a checkpoint: streams/worker/checkpoint.py)."""
        dirty, self._dirty = self._dirty or {}, None
        return {key: (DELETED if value is _MISSING else value, event) for key, (value, event) in dirty.items()}

    def _remember(self, key: str, value: Any) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        if len(self._cache) > self.max_items:
            self._cache.popitem(last=False)

    def __getitem__(self, key: str) -> Any:
        if key in self._cache:
            value = self._cache[key]
            self.hits += 1
            self._cache.move_to_end(key)
            if value is _MISSING:
                raise KeyError(key)
            return value
        self.misses += 1
        value = self._read(key, _MISSING)
        self._remember(key, value)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]`` or `default`, without raising and catching a KeyError per miss (the
        domain reads with ``get``; most candidate-key reads miss)."""
        value = self._cache.get(key, _NOT_CACHED)
        if value is _NOT_CACHED:
            self.misses += 1
            value = self._read(key, _MISSING)
            self._remember(key, value)
        else:
            self.hits += 1
            self._cache.move_to_end(key)
        return default if value is _MISSING else value

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __setitem__(self, key: str, value: Any) -> None:
        if self._dirty is None:
            self.table[key] = value
        else:
            self._dirty[key] = (value, self.current)
        self._remember(key, value)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        if self._dirty is None:
            del self.table[key]
        else:
            self._dirty[key] = (_MISSING, self.current)
        self._remember(key, _MISSING)

    def _keys(self) -> set[str]:
        keys = set(self.table)
        for key, (value, _event) in (self._dirty or {}).items():
            (keys.discard if value is _MISSING else keys.add)(key)
        return keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys()) if self._dirty else iter(self.table)

    def __len__(self) -> int:
        """The number of keys: reads every key of the table (a RocksDB table has no count)."""
        return len(self._keys()) if self._dirty else len(self.table)

    def __bool__(self) -> bool:
        """Non-empty? Reads at most one key of the table per pending deletion (not `__len__`)."""
        if self._dirty and any(value is not _MISSING for value, _event in self._dirty.values()):
            return True
        deleted = {k for k, (value, _e) in (self._dirty or {}).items() if value is _MISSING}
        return any(key not in deleted for key in self.table)

    def clear_cache(self) -> None:
        """Forget everything cached (after a rebalance the table may hold other partitions)."""
        self._cache.clear()
