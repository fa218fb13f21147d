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
