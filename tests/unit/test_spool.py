"""Durable spool: ordering, bounds, crash recovery, at-least-once drain (no network)."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from connectors.ingest.spool import Spool, SpoolCorrupt, SpoolRecord


def recs(n: int, start: int = 0, topic: str = "raw.camera.v1", size: int = 10) -> list[SpoolRecord]:
    return [SpoolRecord(topic, f"k{i}".encode(), f"v{i:06d}".encode().ljust(size, b"x")) for i in range(start, start + n)]


def test_record_roundtrip_including_none_key() -> None:
    for r in (SpoolRecord("t", None, b""), SpoolRecord("主题", b"\x00key", b"\xc3\x01value")):
        assert SpoolRecord.decode(r.encode()) == r


async def test_append_drain_in_order_and_commit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20).open()
    assert spool.is_empty
    assert await spool.append(recs(5))
    assert spool.append_sync(recs(5, 5))
    assert spool.pending_count == 10
    got: list[SpoolRecord] = []

    async def send(batch: list[SpoolRecord]) -> None:
        got.extend(batch)

    assert await spool.drain(send, batch_size=3) == 10
    assert got == recs(10)
    assert spool.is_empty and spool.pending_bytes == 0
    # fully committed segments are deleted, the offset survives
    assert [p.name for p in tmp_path.iterdir()] == ["committed.json"]
    assert await spool.append(recs(1, 10))
    first, batch = spool.read_batch()
    assert first == 10 and batch == recs(1, 10)


async def test_crash_before_commit_redelivers_nothing_lost(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64).open()  # tiny segments: many files
    for i in range(0, 20, 4):
        assert await spool.append(recs(4, i))
    delivered: list[SpoolRecord] = []
    calls = 0

    async def flaky(batch: list[SpoolRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionError("broker went away")
        delivered.extend(batch)

    with pytest.raises(ConnectionError):
        await spool.drain(flaky, batch_size=5)
    assert delivered == recs(10)
    spool.close()  # "crash": a new instance recovers from disk only

    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64).open()
    assert again.pending_count == 10 and again.committed == 10
    rest: list[SpoolRecord] = []

    async def ok(batch: list[SpoolRecord]) -> None:
        rest.extend(batch)

    assert await again.drain(ok) == 10
    assert delivered + rest == recs(20)  # nothing lost, nothing duplicated (the failed batch was never confirmed)


async def test_unconfirmed_batch_is_resent_after_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path).open()
    assert await spool.append(recs(3))
    sent: list[SpoolRecord] = []

    async def send_then_crash(batch: list[SpoolRecord]) -> None:
        sent.extend(batch)  # Kafka got it …
        raise TimeoutError("… but the ack was lost")

    with pytest.raises(TimeoutError):
        await spool.drain(send_then_crash)
    again = Spool(tmp_path).open()
    resent: list[SpoolRecord] = []

    async def ok(batch: list[SpoolRecord]) -> None:
        resent.extend(batch)

    await again.drain(ok)
    assert sent == resent == recs(3)  # at-least-once: the same records, same order


async def test_bounded_by_max_bytes(tmp_path: Path) -> None:
    one = len(recs(1)[0].framed())
    spool = Spool(tmp_path, max_bytes=one * 4, high_water=0.5).open()
    assert await spool.append(recs(2))
    assert spool.above_high_water
    assert await spool.append(recs(2, 2))
    assert not await spool.append(recs(1, 4))  # full: refused, nothing written
    assert not spool.append_sync(recs(1, 4))
    assert spool.pending_count == 4

    async def ok(batch: list[SpoolRecord]) -> None:
        return None

    await spool.drain(ok)
    assert await spool.append(recs(4, 4))  # room again once confirmed


async def test_torn_tail_is_truncated(tmp_path: Path) -> None:
    spool = Spool(tmp_path).open()
    assert await spool.append(recs(3))
    spool.close()
    seg = next(p for p in tmp_path.iterdir() if p.name.startswith("seg-"))
    with open(seg, "ab") as fh:  # a crash in the middle of the next write
        fh.write(recs(1, 3)[0].framed()[:7])
    again = Spool(tmp_path).open()
    assert again.pending_count == 3
    assert await again.append(recs(1, 3))
    assert again.read_batch()[1] == recs(4)


async def test_corruption_in_old_segment_is_fatal(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=32).open()
    for i in range(3):
        assert await spool.append(recs(1, i))
    spool.close()
    first = sorted(p for p in tmp_path.iterdir() if p.name.startswith("seg-"))[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(SpoolCorrupt):
        Spool(tmp_path, segment_bytes=32).open()


async def test_group_commit_shares_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path).open()
    calls = 0
    real = os.fsync

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    results = await asyncio.gather(*(spool.append(recs(1, i)) for i in range(50)))
    assert all(results)
    assert spool.pending_count == 50
    # one segment creation (dir fsync) + far fewer data fsyncs than appends
    assert calls < 10
    assert spool.read_batch(100)[1] == recs(50)
