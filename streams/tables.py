"""A write-through read cache in front of a Faust table.

The correlate agent reads the same candidate lists and incident records over and over; a RocksDB
table deserializes the value (JSON) on every read. `CachedTable` keeps recently used values (and
known misses) in a bounded LRU, and writes go to the table first (so the changelog, hence
recovery, is unchanged) and then to the cache. Only the worker that owns a partition writes its
keys, so the cache is exact until partitions move: `clear()` is called on every rebalance.
Values are treated as immutable (the domain re-assigns, never mutates in place).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from typing import Any

_MISSING = object()


class CachedTable(MutableMapping[str, Any]):
    """MutableMapping over `table` with a bounded LRU read cache (including negative entries)."""

    def __init__(self, table: MutableMapping[str, Any], max_items: int = 100_000) -> None:
        self.table = table
        self.max_items = max_items
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

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
        try:
            value = self.table[key]
        except KeyError:
            self._remember(key, _MISSING)
            raise
        self._remember(key, value)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key] = value
        self._remember(key, value)

    def __delitem__(self, key: str) -> None:
        del self.table[key]
        self._remember(key, _MISSING)

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def clear_cache(self) -> None:
        """Forget everything cached (after a rebalance the table may hold other partitions)."""
        self._cache.clear()
