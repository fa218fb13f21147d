"""Two workers (worker_id 0 and 1, their own web ports and RocksDB dirs) share the partitions of one
consumer group and produce exactly the index one worker produces (= the offline incidents)."""
from __future__ import annotations

from pathlib import Path

import pytest

from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from infra.processes import wait_for
from tests.harness.pipeline import publish, wait_for_index, worker_log, worker_metrics
from tests.harness.stack import fault_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]


def test_two_workers_share_partitions_and_match_one(stack: Settings, sim_day: Path, day_deliveries: list,
                                                    expected_incidents: dict, workers, tmp_path: Path) -> None:
    s = fault_settings(stack, sim_day, tmp_path / "run")
    provision_topics(s)
    provision_elasticsearch(s)
    w0 = workers.start(s, 0)
    w1 = workers.start(s, 1)
    # both members of the group, assignment settled (each logs "Worker ready" after its last rebalance)
    wait_for(lambda: all("Worker ready" in worker_log(w) for w in (w0, w1)), 180, 1, "both workers ready")
    report = publish(s, day_deliveries)
    assert report.records > 1000

    wait_for_index(s, expected_incidents, [w0, w1], timeout_s=240)
    m0, m1 = worker_metrics(s, 0), worker_metrics(s, 1)
    assert m0 and m1, "a worker stopped serving its metrics"
    print(f"\nworker 0: {m0}\nworker 1: {m1}")
    # the raw topics (6 + 4×3 partitions) were split between the two: both normalized some of the day
    assert m0["raw_in"] > 0 and m1["raw_in"] > 0, (m0, m1)
    assert m0["raw_in"] + m1["raw_in"] >= report.records
    assert m0["dead_letters"] == m1["dead_letters"] == 0
    assert (s.run_dir / "workers" / f"{s.app_id}-0").is_dir() and (s.run_dir / "workers" / f"{s.app_id}-1").is_dir()
