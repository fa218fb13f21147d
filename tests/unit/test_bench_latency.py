"""bench.throughput.stage_latencies: per-stage p50/p99 from per-event timestamps (pure)."""
from __future__ import annotations

from bench.throughput import stage_latencies


def test_stages_split_the_end_to_end_time_per_event() -> None:
    acked = {f"e{i}": 100.0 + i for i in range(100)}
    by_county = {e: t + 0.05 for e, t in acked.items()}
    incidents = {e: t + 0.25 for e, t in by_county.items() if e != "e7"}  # e7 never reached an incident
    searchable = {e: t + (2.0 if e == "e99" else 0.5) for e, t in incidents.items()}
    stages = stage_latencies(acked, by_county, incidents, searchable)
    assert list(stages) == ["normalize", "correlate", "commit + index + refresh"]
    p50, p99, n = stages["normalize"]
    assert (round(p50, 3), round(p99, 3), n) == (0.05, 0.05, 100)
    assert stages["correlate"][2] == 99  # e7 left out of the stages it has no timestamp for
    p50, p99, n = stages["commit + index + refresh"]
    # nearest rank: p99 of 99 values is the largest, the one slow event
    assert (round(p50, 3), round(p99, 3), n) == (0.5, 2.0, 99)


def test_correlate_window_is_the_difference_of_two_metrics_readings() -> None:
    from bench.throughput import correlate_window

    before = {"correlate_batches": 10, "correlate_seconds": 1.0, "checkpoints": 10, "checkpoint_seconds": 0.5,
              "checkpoint_seconds_max": 0.2}
    after = {"correlate_batches": 14, "correlate_seconds": 3.0, "checkpoints": 15, "checkpoint_seconds": 1.5,
             "checkpoint_seconds_max": 0.4}
    before.update(gc_full_collections=2, gc_seconds=1.0, gc_seconds_max=0.5)
    after.update(gc_full_collections=3, gc_seconds=2.5, gc_seconds_max=1.25)
    before.update(correlate_wait_seconds=1.0)
    after.update(correlate_wait_seconds=3.0, correlate_wait_seconds_max=0.75)
    before.update(loop_stalls=1, loop_lag_seconds_max=0.3)
    after.update(loop_stalls=4, loop_lag_seconds_max=2.0)
    after.update(correlate_seconds_max=0.9)
    assert correlate_window(before, after) == {"batches": 4, "batch_s": 0.5, "batch_max_s": 0.9,
                                               "wait_s": 0.5, "wait_max_s": 0.75,
                                               "checkpoints": 5, "checkpoint_s": 0.2,
                                               "checkpoint_max_s": 0.4, "gc_full": 1, "gc_s": 1.5,
                                               "gc_max_s": 1.25, "loop_stalls": 3, "loop_lag_max_s": 2.0}
    assert correlate_window({}, {})["batch_s"] == 0.0  # a worker that served no metrics


def test_latency_slices_show_where_in_the_window_the_tail_is() -> None:
    from bench.throughput import latency_slices

    acked = {f"e{i}": 1000.0 + i * 0.1 for i in range(150)}  # 15 s of acks, 10 per second
    seen = {e: t + (3.0 if 60 <= i < 70 else 0.4) for i, (e, t) in enumerate(acked.items()) if i != 5}
    slices = latency_slices(acked, seen, slice_s=5.0)
    assert [(t, n) for t, n, _p50, _p99 in slices] == [(0.0, 49), (5.0, 50), (10.0, 50)]
    assert [round(p99, 2) for *_x, p99 in slices] == [0.4, 3.0, 0.4]  # the stall is in the second slice
    assert [round(p50, 2) for _t, _n, p50, _p99 in slices] == [0.4, 0.4, 0.4]
    assert latency_slices({}, {}) == []
