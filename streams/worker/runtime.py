"""Interpreter tuning a long-running process applies once, at its entry point (never at import).

`tune_gc(settings)`: CPython's cyclic garbage collector with the worker's thresholds. A worker keeps a
large, steadily renewed heap (table caches, incident state, fetched batches); with Python's default
gen-0 threshold (700) batch-lived objects are promoted and full collections of the whole heap run
every few seconds (~180 ms each in a correlate worker, measured with gc.callbacks; the split
pipeline went from ~1,070 to ~1,200 records/s with the settings below, docs/sizing.md §8).

- gen-0 threshold ``settings.gc_threshold0`` (0 keeps Python's thresholds untouched), gen-1 20,
  gen-2 10: objects that live for one batch die before a collection sees them;
- ``gc.freeze()`` after start-up: what exists then (modules, the app, rules) moves to the permanent
  generation and is never scanned again. Frozen objects are still freed by reference counting;
  only reference cycles created before the freeze stay.

`watch_gc(record)` reports every collection's pause (the worker counts them in its metrics);
`watch_loop(record)` reports how late each tick of a `LOOP_TICK_S` timer ran: the event-loop lag.

The benchmarks apply the same to their baselines and the pure in-process run, so a ratio never
measures a GC setting."""
from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from streams.settings import Settings

GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 10

#: the loop watch's timer period, and the lag from which a late tick counts as a stall
LOOP_TICK_S = 0.05
LOOP_STALL_S = 0.25


def tune_gc(settings: Settings) -> tuple[int, int, int]:
    """Apply the collector thresholds and freeze the current heap; returns the thresholds in force."""
    if settings.gc_threshold0 > 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(settings.gc_threshold0, GEN1_THRESHOLD, GEN2_THRESHOLD)
    return gc.get_threshold()


@contextmanager
def tuned_gc(settings: Settings) -> Iterator[tuple[int, int, int]]:
    """`tune_gc` for a block of a process that lives on (the benchmark inside a test run): the
    previous thresholds come back and the heap is unfrozen at exit."""
    before = gc.get_threshold()
    try:
        yield tune_gc(settings)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def watch_gc(record: Callable[[int, float], None]) -> Callable[[str, dict[str, Any]], None]:
    """Call ``record(generation, seconds)`` after every collection of the cyclic collector (a
    ``gc.callbacks`` hook, installed here and returned so that it can be removed): how long the
    process stood still in it. A full (generation 2) collection of a big heap stops the worker's
    event loop for its whole duration."""
    started: list[float] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            record(int(info.get("generation", 0)), time.perf_counter() - started[0])
            started.clear()

    gc.callbacks.append(callback)
    return callback


async def watch_loop(record: Callable[[float], None], tick_s: float = LOOP_TICK_S) -> None:
    """Sleep `tick_s` at a time for ever and ``record(seconds)`` how late each wake-up came: how
    long the event loop was busy with something else (a long batch, a big document, a collection)."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(tick_s)
        record(max(0.0, time.perf_counter() - started - tick_s))
