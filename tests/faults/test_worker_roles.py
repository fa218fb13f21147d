"""Worker roles in one consumer group (streams/worker/app.py `ROLES`): a ``correlate`` worker and an
``edge`` worker (normalize + index) produce exactly the index one worker produces (= the offline
incidents); then the edge worker is replaced by an ``all`` worker (a role change, nothing moved by
hand: the group's offsets carry over) and the rest of the day still lands exactly."""
from __future__ import annotations

from pathlib import Path

import pytest

from infra.processes import wait_for
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from tests.harness.pipeline import chunks, publish, wait_for_index, worker_log, worker_metrics
from tests.harness.stack import fault_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(480)]


def test_correlate_and_edge_roles_match_one_worker_and_survive_a_role_change(
        stack: Settings, sim_day: Path, day_deliveries: list, expected_incidents: dict, workers,
        tmp_path: Path) -> None:
    s = fault_settings(stack, sim_day, tmp_path / "run")
    provision_topics(s)
    provision_elasticsearch(s)
    correlate = workers.start(s, 0, role="correlate")
    edge = workers.start(s, 1, role="edge")
    wait_for(lambda: all("Worker ready" in worker_log(w) for w in (correlate, edge)), 180, 1, "both workers ready")
    first, second = chunks(day_deliveries, 2)
    report = publish(s, first)
    assert report.records > 300
    # the index after the first half: wait until both workers have done their part of it
    wait_for(lambda: (worker_metrics(s, 1) or {}).get("raw_in", 0) >= report.records, 180, 1,
             "the edge worker normalized the first half")
    m0, m1 = worker_metrics(s, 0), worker_metrics(s, 1)
    assert m0 and m1
    # the roles did what they say: only the edge worker normalizes and indexes, only correlate correlates
    assert m0["raw_in"] == 0 and m0["indexed"] == 0, m0
    assert m1["raw_in"] >= report.records and m1["incidents"] == 0 and m1["links"] == 0, m1
    wait_for(lambda: (worker_metrics(s, 0) or {}).get("incidents", 0) > 0, 120, 1, "correlate wrote incidents")
    wait_for(lambda: (worker_metrics(s, 1) or {}).get("indexed", 0) > 0, 120, 1, "edge indexed incidents")

    # role change: the edge worker goes, an all-agents worker of the same group comes (id 2: its own
    # log, port and data dir)
    edge.stop()
    mixed = workers.start(s, 2, role="all")
    wait_for(lambda: "Worker ready" in worker_log(mixed), 180, 1, "the all-agents worker ready")
    second_report = publish(s, second)
    assert second_report.records > 300
    wait_for_index(s, expected_incidents, [correlate, mixed], timeout_s=300)
    m0 = worker_metrics(s, 0)
    assert m0 and m0["raw_in"] == 0 and m0["dead_letters"] == 0, m0
