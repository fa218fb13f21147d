"""Source/Sink lifecycle shared by every connector (à la quix-streams).

Contract
--------
* ``setup()`` acquires resources (connections, files) and may raise; nothing is acquired in
  ``__init__``.
* ``run()`` does the work until ``stop()`` is called (sources) — it returns normally after a stop
  and raises on a fatal error (errors are never swallowed).
* ``flush()`` makes everything accepted so far durable/delivered (sinks: writes the buffered batch).
* ``stop()`` asks ``run()`` to finish; it is idempotent and safe to call before ``setup()``.
* :func:`run_components` runs several components together and stops all of them when one fails
  or the caller is cancelled, flushing each before it returns.
"""
from __future__ import annotations

import abc
import asyncio
import logging
from typing import Any, Generic, Protocol, Sequence, TypeVar, runtime_checkable

log = logging.getLogger(__name__)

T = TypeVar("T")


@runtime_checkable
class Lifecycle(Protocol):
    """What :func:`run_components` needs from a component."""

    name: str

    async def setup(self) -> None: ...

    async def run(self) -> None: ...

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...


class Source(abc.ABC):
    """A producer of records (HTTP receiver, poller, importer); subclasses implement ``run``."""

    name: str = "source"

    def __init__(self) -> None:
        self._stopped: asyncio.Event | None = None

    def _stop_event(self) -> asyncio.Event:
        if self._stopped is None:
            self._stopped = asyncio.Event()
        return self._stopped

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stopped is not None and self._stopped.is_set()

    async def setup(self) -> None:
        """Acquire resources (default: nothing)."""

    @abc.abstractmethod
    async def run(self) -> None:
        """Work until stopped; raise on fatal errors."""

    async def flush(self) -> None:
        """Make accepted work durable (default: nothing)."""

    async def stop(self) -> None:
        """Ask ``run`` to finish (idempotent)."""
        self._stop_event().set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False when interrupted by ``stop()`` (the caller should return)."""
        try:
            await asyncio.wait_for(self._stop_event().wait(), timeout=max(0.0, seconds))
        except asyncio.TimeoutError:
            return True
        return False


class Sink(abc.ABC, Generic[T]):
    """A consumer of records with batching in the base class; subclasses implement ``write``."""

    name: str = "sink"

    def __init__(self, *, batch_size: int = 500) -> None:
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.batch_size = batch_size
        self._buffer: list[T] = []

    async def setup(self) -> None:
        """Acquire resources (default: nothing)."""

    async def add(self, item: T) -> None:
        """Buffer one item; writes a batch when ``batch_size`` is reached."""
        self._buffer.append(item)
        if len(self._buffer) >= self.batch_size:
            await self.flush()

    @abc.abstractmethod
    async def write(self, batch: list[T]) -> None:
        """Deliver one batch; return only when it is durable, raise otherwise (batch kept)."""

    async def flush(self) -> None:
        """Write the buffered batch; on failure the batch stays buffered and the error propagates."""
        if not self._buffer:
            return
        batch = list(self._buffer)
        await self.write(batch)
        del self._buffer[: len(batch)]

    async def run(self) -> None:
        """Sinks are driven by ``add``; nothing to do."""

    async def stop(self) -> None:
        """Flush what is buffered."""
        await self.flush()


async def run_components(components: Sequence[Any]) -> None:
    """Set up all components, run them concurrently, and on failure/cancellation stop and flush all.

    The first exception of any ``run`` propagates (after the others are stopped)."""
    started: list[Any] = []
    failed = False
    flush_error: Exception | None = None
    try:
        for comp in components:
            await comp.setup()
            started.append(comp)
        tasks = [asyncio.create_task(c.run(), name=f"run:{getattr(c, 'name', c)}") for c in started]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
            await asyncio.gather(*tasks)
        finally:
            for comp in started:
                await comp.stop()
            for task in tasks:
                if not task.done():
                    try:
                        await asyncio.wait_for(asyncio.shield(task), timeout=10)
                    except asyncio.TimeoutError:
                        task.cancel()
                    except Exception:  # noqa: BLE001 - the first failure is what propagates
                        log.exception("component task %s failed while stopping", task.get_name())
    except BaseException:
        failed = True
        raise
    finally:
        for comp in reversed(started):
            try:
                await comp.flush()
            except Exception as exc:  # noqa: BLE001 - re-raised below unless another error is in flight
                log.exception("flush of %s failed", getattr(comp, "name", comp))
                flush_error = flush_error or exc
        if flush_error is not None and not failed:
            raise flush_error
