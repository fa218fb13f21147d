"""CachedTable: reads served from the cache, writes reach the table, misses cached, clear on demand."""
from __future__ import annotations

import pytest

from streams.worker.tables import CachedTable


class CountingDict(dict):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __getitem__(self, key):  # noqa: ANN001, ANN204
        self.reads += 1
        return super().__getitem__(key)

    def get(self, key, default=None):  # noqa: ANN001, ANN201
        self.reads += 1
        return super().get(key, default)


def test_write_through_and_cached_reads() -> None:
    backing = CountingDict()
    t = CachedTable(backing, max_items=2)
    t["a"] = [1]
    assert backing["a"] == [1]
    reads = backing.reads
    assert t["a"] == [1] and t.get("a") == [1] and "a" in t
    assert backing.reads == reads  # all from the cache
    with pytest.raises(KeyError):
        t["missing"]
    assert "missing" not in t and backing.reads == reads + 1  # the miss is cached too
    t["missing"] = 5
    assert t["missing"] == 5 and backing["missing"] == 5
    del t["a"]
    assert "a" not in t and "a" not in backing


def test_bounded_and_clearable() -> None:
    backing = CountingDict()
    t = CachedTable(backing, max_items=2)
    for k in "abc":
        t[k] = k
    assert len(t._cache) == 2
    backing["b"] = "changed elsewhere"  # e.g. restored from a changelog after a rebalance
    t.clear_cache()
    assert t["b"] == "changed elsewhere"
    assert sorted(t) == ["a", "b", "c"] and len(t) == 3


def test_batch_writes_each_key_once_with_its_event_current() -> None:
    writes: list[tuple[str, object]] = []
    current: dict[str, object] = {"event": None}

    class Recording(CountingDict):
        def __setitem__(self, key, value):  # noqa: ANN001, ANN204
            writes.append((key, current["event"]))
            super().__setitem__(key, value)

    backing = Recording()
    backing["gone"] = 1
    writes.clear()
    t = CachedTable(backing)
    t.begin_batch()
    for i, ev in enumerate(("e1", "e2", "e3")):
        t.current = ev
        t["inc"] = {"version": i}
        if ev == "e1":
            t["cand"] = [ev]
    del t["gone"]
    assert t["inc"] == {"version": 2} and "gone" not in t  # reads see the batch's writes
    assert backing.get("inc") is None and "gone" in backing  # nothing written yet
    assert t.flush(lambda ev: current.__setitem__("event", ev)) == 3
    assert backing["inc"] == {"version": 2} and backing["cand"] == ["e1"] and "gone" not in backing
    assert sorted(writes) == [("cand", "e1"), ("inc", "e3")]  # once per key, with the writing event current


class _CountingTable(dict):
    """A dict that records how many keys were read by iteration and refuses `len` (a RocksDB table
    can only count by reading every key)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.keys_read = 0

    def __len__(self) -> int:
        raise AssertionError("len() of a table reads every key")

    def __iter__(self):  # type: ignore[override]
        for key in super().__iter__():
            self.keys_read += 1
            yield key


def test_truth_reads_one_key_not_the_whole_table() -> None:
    backing = _CountingTable({f"k{i}": i for i in range(1000)})
    t = CachedTable(backing)
    assert t
    assert backing.keys_read == 1
    assert not CachedTable(_CountingTable())


def test_truth_inside_a_batch_sees_pending_writes_and_deletions() -> None:
    t = CachedTable(_CountingTable({"a": 1}))
    t.begin_batch()
    del t["a"]
    assert not t  # the only key is deleted in the batch
    t["b"] = 2
    assert t
    empty = CachedTable(_CountingTable())
    empty.begin_batch()
    empty["x"] = 1
    assert empty


def test_a_miss_reads_through_the_given_reader_once() -> None:
    backing = {"a": [1]}
    calls: list[str] = []

    def reader(key, default):  # noqa: ANN001, ANN202 - what StateTables passes (engine.store_get)
        calls.append(key)
        return backing.get(key, default)

    t = CachedTable(backing, reader=reader)
    assert t["a"] == [1] and t.get("a") == [1] and t.get("b", 7) == 7 and "b" not in t
    with pytest.raises(KeyError):
        t["c"]
    assert calls == ["a", "b", "c"]  # one read per key, hits and misses cached
