"""streams/worker/runtime.py: the collector settings a worker (and the benchmarks) apply."""
from __future__ import annotations

import gc

from streams.settings import Settings
from streams.worker.runtime import GEN1_THRESHOLD, GEN2_THRESHOLD, tuned_gc


def test_tuned_gc_sets_the_thresholds_freezes_and_restores() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with tuned_gc(Settings(gc_threshold0=12345)) as thresholds:
        assert thresholds == gc.get_threshold() == (12345, GEN1_THRESHOLD, GEN2_THRESHOLD)
        assert gc.get_freeze_count() > frozen_before  # the heap at that point is in the permanent generation
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_zero_keeps_pythons_thresholds() -> None:
    before = gc.get_threshold()
    with tuned_gc(Settings(gc_threshold0=0)) as thresholds:
        assert thresholds == before and gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_the_default_is_the_measured_one() -> None:
    assert Settings().gc_threshold0 == 50000


def test_watch_gc_reports_each_collection_with_its_generation_and_pause() -> None:
    from streams.worker.app import Metrics
    from streams.worker.runtime import watch_gc

    metrics = Metrics()
    callback = watch_gc(metrics.gc_paused)
    try:
        gc.collect(0)
        gc.collect()  # a full collection
    finally:
        gc.callbacks.remove(callback)
    assert metrics.gc_full_collections == 1
    assert 0 < metrics.gc_seconds_max <= metrics.gc_seconds
    gc.collect()
    assert metrics.gc_full_collections == 1  # removed: no longer counted


def test_loop_lag_counts_stalls_from_the_threshold_and_keeps_the_longest() -> None:
    from streams.worker.app import Metrics
    from streams.worker.runtime import LOOP_STALL_S

    metrics = Metrics()
    for lag in (0.001, LOOP_STALL_S - 0.01, LOOP_STALL_S, 1.5, 0.0):
        metrics.loop_lagged(lag)
    assert metrics.loop_stalls == 2
    assert metrics.loop_lag_seconds_max == 1.5
    assert abs(metrics.loop_lag_seconds - (0.001 + LOOP_STALL_S - 0.01 + LOOP_STALL_S + 1.5)) < 1e-9
    assert {"loop_stalls", "loop_lag_seconds", "loop_lag_seconds_max"} <= set(metrics.as_dict())


def test_watch_loop_reports_how_long_the_loop_was_blocked() -> None:
    import asyncio
    import time

    from streams.worker.runtime import watch_loop

    lags: list[float] = []

    async def main() -> None:
        watcher = asyncio.create_task(watch_loop(lags.append, tick_s=0.01))
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # the loop is blocked: the watch's next tick comes that late
        await asyncio.sleep(0.05)
        watcher.cancel()

    asyncio.run(main())
    assert len(lags) >= 3 and max(lags) >= 0.15 and min(lags) >= 0.0
