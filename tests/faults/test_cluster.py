"""Scale-out: a three-node KRaft cluster (private, loopback, 256 MB heaps), replication factor 3,
min.insync.replicas 2, two workers. One broker and one worker are SIGKILLed mid-run; the surviving
worker takes over the dead one's partitions, producers keep writing with acks=all to the two
remaining replicas, and the final index equals the offline incidents."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from infra.processes import wait_for
from tests.harness.pipeline import chunks, indexed_incidents, publish, wait_for_index, worker_log, worker_metrics
from tests.harness.stack import KafkaCluster, fault_settings, private_run_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture()
def cluster(settings: Settings, tmp_path: Path) -> Iterator[KafkaCluster]:
    c = KafkaCluster(settings, private_run_dir(settings, tmp_path / "cluster"), n=3, rf=3, min_isr=2, heap="256m")
    try:
        took = c.start()
        print(f"\n3-node KRaft cluster up in {took:.1f}s: {c.bootstrap}")
        yield c
    finally:
        c.stop()


def describe(bootstrap: str, topics: list[str]) -> dict[str, list[dict]]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        return {d["name"]: d["partitions"] for d in admin.describe_topics(topics)}
    finally:
        admin.close()


def test_three_broker_cluster_survives_a_broker_and_a_worker(stack: Settings, cluster: KafkaCluster, sim_day: Path,
                                                             day_deliveries: list, expected_incidents: dict,
                                                             workers, tmp_path: Path) -> None:
    s = fault_settings(stack, sim_day, tmp_path / "run", kafka_bootstrap=cluster.bootstrap, replication_factor=3)
    provision_topics(s)
    provision_elasticsearch(s)
    alias = f"{s.es_index_prefix}-incidents"
    first, second = chunks(day_deliveries, 2)

    w0, w1 = workers.start(s, 0), workers.start(s, 1)
    wait_for(lambda: all("Worker ready" in worker_log(w) for w in (w0, w1)), 180, 1, "both workers ready")
    publish(s, first)
    wait_for(lambda: len(indexed_incidents(s.es_url, alias) or {}) > 0, 180, 0.5, "first incidents indexed")

    by_county = s.topic("internal.events-by-county.v1")
    changelog = f"{s.app_id}-incidents-changelog"
    layout = describe(cluster.bootstrap, [by_county, changelog])
    assert all(len(p["replica_nodes"]) == 3 for parts in layout.values() for p in parts), layout
    victim = cluster.nodes[layout[by_county][0]["leader_id"] - 1]  # the leader of a partition in use
    before = {0: worker_metrics(s, 0), 1: worker_metrics(s, 1)}

    t0 = time.monotonic()
    victim.kill()
    w1.kill9()
    print(f"killed broker {victim.node_id} (leader of {by_county}[0]) and worker 1; metrics before: {before}")
    publish(s, second)  # acks=all with 2 of 3 in sync
    wait_for_index(s, expected_incidents, [w0], timeout_s=300)
    print(f"recovered {time.monotonic() - t0:.1f}s after the kills; worker 0: {worker_metrics(s, 0)}")
    after = describe(cluster.bootstrap, [by_county])
    assert all(victim.node_id not in p["isr_nodes"] and len(p["isr_nodes"]) >= 2 for p in after[by_county]), after
