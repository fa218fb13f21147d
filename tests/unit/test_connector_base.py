"""Source/Sink lifecycle: batching in the base class, run_components stops and flushes everything."""
from __future__ import annotations

import asyncio

import pytest

from connectors.ingest.base import Sink, Source, run_components


class ListSink(Sink[int]):
    def __init__(self, fail_times: int = 0) -> None:
        super().__init__(batch_size=3)
        self.written: list[list[int]] = []
        self.fail_times = fail_times

    async def write(self, batch: list[int]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("down")
        self.written.append(batch)


class Counter(Source):
    name = "counter"

    def __init__(self, sink: ListSink, fail_at: int | None = None) -> None:
        super().__init__()
        self.sink, self.fail_at, self.n = sink, fail_at, 0

    async def run(self) -> None:
        while not self.stopping:
            self.n += 1
            if self.n == self.fail_at:
                raise ValueError("boom")
            await self.sink.add(self.n)
            if not await self.sleep(0.001):
                return


async def test_sink_batches_and_keeps_batch_on_failure() -> None:
    sink = ListSink(fail_times=1)
    for i in range(2):
        await sink.add(i)
    with pytest.raises(ConnectionError):
        await sink.add(2)  # batch full → write fails → batch kept
    await sink.flush()
    assert sink.written == [[0, 1, 2]]


async def test_run_components_propagates_failure_and_flushes() -> None:
    sink = ListSink()
    src = Counter(sink, fail_at=5)
    with pytest.raises(ValueError, match="boom"):
        await run_components([src, sink])
    assert [x for b in sink.written for x in b] == [1, 2, 3, 4]  # partial batch flushed on the way out


async def test_run_components_cancel_stops_cleanly() -> None:
    sink = ListSink()
    src = Counter(sink)
    task = asyncio.create_task(run_components([src, sink]))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert src.stopping
    assert [x for b in sink.written for x in b] == list(range(1, src.n + 1))  # stop + flush lost nothing
