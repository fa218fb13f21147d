"""Per-message delivery without tasks (`engine.start_inline`) and the worker's root log level."""
from __future__ import annotations

import asyncio
import logging

import pytest

from streams.worker.app import restore_root_log_level
from streams.worker.engine import start_inline


async def test_a_coroutine_that_never_suspends_runs_inline_without_a_task() -> None:
    ran = []

    async def deliver() -> None:
        ran.append(1)

    assert start_inline(deliver()) is None
    assert ran == [1]


async def test_an_exception_before_any_suspension_is_raised_inline() -> None:
    async def bad() -> None:
        raise ValueError("decode")

    with pytest.raises(ValueError):
        start_inline(bad())


async def test_a_suspended_delivery_is_finished_by_a_task_like_any_coroutine() -> None:
    q: asyncio.Queue[int] = asyncio.Queue(1)
    q.put_nowait(0)

    async def put() -> str:
        await q.put(1)  # full: suspends until there is room
        await asyncio.sleep(0)
        return "put"

    task = start_inline(put())
    assert task is not None
    await asyncio.sleep(0.01)
    assert not task.done()
    q.get_nowait()
    assert await task == "put"
    assert q.get_nowait() == 1


async def test_cancelling_a_suspended_delivery_cancels_its_await() -> None:
    q: asyncio.Queue[int] = asyncio.Queue(1)
    q.put_nowait(0)
    seen = []

    async def put() -> None:
        try:
            await q.put(1)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = start_inline(put())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"] and q.qsize() == 1


async def test_errors_after_a_suspension_reach_the_task() -> None:
    async def late() -> None:
        await asyncio.sleep(0.001)
        raise KeyError("late")

    task = start_inline(late())
    assert task is not None
    with pytest.raises(KeyError):
        await task


def test_the_spinner_debug_root_level_is_put_back() -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)

    class SpinnerHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            pass

    real = logging.StreamHandler()
    real.setLevel(logging.WARNING)
    try:
        root.handlers[:] = [real, SpinnerHandler()]
        root.setLevel(logging.DEBUG)
        restore_root_log_level()
        assert root.level == logging.WARNING and root.handlers == [real]
        assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
