"""kill -9 of the worker, three times during a day, at different points; once with its RocksDB gone.

The day is published in four chunks while the worker runs; each kill is a SIGKILL of the worker's
process group (no shutdown hooks, no final commit). Before the third restart the worker's local
RocksDB directory is deleted, so its tables can only come back from their changelog topics. The
final index must equal the offline pipeline's incidents exactly.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from infra.processes import wait_for
from tests.harness.pipeline import chunks, publish, wait_for_index, worker_log, worker_metrics
from tests.harness.stack import fault_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def test_kill9_three_times_loses_and_duplicates_nothing(stack: Settings, sim_day: Path, day_deliveries: list,
                                                        expected_incidents: dict, workers, tmp_path: Path) -> None:
    s = fault_settings(stack, sim_day, tmp_path / "run")
    provision_topics(s)
    provision_elasticsearch(s)
    parts = chunks(day_deliveries, 4)
    metrics = lambda: worker_metrics(s) or {}  # noqa: E731
    kills: list[str] = []

    w = workers.start(s, 0)
    # 1st kill: while the first chunk is being normalized
    publish(s, parts[0])
    wait_for(lambda: metrics().get("raw_in", 0) > 0, 120, 0.1, "the worker to consume raw records")
    kills.append(f"1: mid-chunk-1 {metrics()}")
    w.kill9()

    # 2nd kill: right after the restart (group join / table recovery), with chunk 2 arriving
    w.start()
    publish(s, parts[1])
    wait_for(lambda: worker_metrics(s) is not None, 120, 0.1, "the restarted worker's web server")
    time.sleep(1.0)
    kills.append(f"2: just after restart {metrics()}")
    w.kill9()

    # 3rd restart without local state: the tables must come back from their changelogs
    worker_dir = s.run_dir / "workers" / f"{s.app_id}-0"
    assert worker_dir.is_dir() and any(worker_dir.rglob("*")), "the worker kept no local RocksDB state?"
    shutil.rmtree(worker_dir)
    w.start()
    publish(s, parts[2])
    # 3rd kill: while chunk 3 is being correlated and indexed
    wait_for(lambda: metrics().get("incidents", 0) > 0, 180, 0.1, "the worker to correlate chunk 3")
    kills.append(f"3: mid-chunk-3 correlate/index {metrics()}")
    w.kill9()

    w.start()
    publish(s, parts[3])
    try:
        wait_for_index(s, expected_incidents, [w], timeout_s=240)
    finally:
        print("\n".join(kills))
    assert worker_dir.is_dir(), "the restarted worker did not rebuild its local store"
    assert "Restore complete" in worker_log(w)
