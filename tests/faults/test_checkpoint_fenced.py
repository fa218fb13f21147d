"""A checkpoint that fails while the worker still owns its partition must not lose the batch.

The broker restart test (test_kafka_restart.py) lost 46-103 events in about one run in two: a
checkpoint transaction failed mid-restart ("Unexpected error during batch delivery"), the
correlate agent raised, and Faust restarted the agent *in the same process*, at a consumer position
past the failed batch; the next checkpoint committed an offset beyond it. A fenced checkpoint
(`CheckpointLost`) was dropped the same way. Now either makes the worker read the partition
again from its committed offset (`PinganFaustApp.reinitialize`: skip, rejoin, restore, seek).

Here the failure is made deterministic: between the two halves of the day, a producer with the
same transactional ids as the worker's checkpoint producers is started (as another worker taking
the partition, or a coordinator aborting the transaction with a new epoch, would), so the worker's
next checkpoint is fenced. The final index must equal the offline incidents exactly.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas.catalogue import topic as catalogue_topic
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from streams.worker import topology
from infra.processes import wait_for
from tests.harness.pipeline import chunks, indexed_incidents, publish, wait_for_index, worker_log, worker_metrics
from tests.harness.stack import fault_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


async def fence(settings: Settings, transactional_ids: list[str]) -> None:
    """Start (InitProducerId: a new epoch) and stop one producer per id."""
    for tid in transactional_ids:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, transactional_id=tid,
                                    enable_idempotence=True, **settings.aiokafka_client_options())
        await producer.start()
        await producer.stop()


def test_fenced_checkpoint_reads_the_partition_again(stack: Settings, sim_day: Path, day_deliveries: list,
                                                     expected_incidents: dict, workers, tmp_path: Path) -> None:
    s = fault_settings(stack, sim_day, tmp_path / "run")
    assert s.processing_guarantee == "exactly_once"
    provision_topics(s)
    provision_elasticsearch(s)
    alias = f"{s.es_index_prefix}-incidents"
    first, second = chunks(day_deliveries, 2)
    (by_county,) = topology.CORRELATE.inputs
    ids = [f"{s.app_id}-{topology.CORRELATE.name}-{p}" for p in range(catalogue_topic(by_county).partitions)]

    w = workers.start(s, 0)
    publish(s, first)
    wait_for(lambda: len(indexed_incidents(s.es_url, alias) or {}) > 0, 180, 0.5, "first incidents indexed")
    before = worker_metrics(s) or {}
    assert before.get("checkpoints", 0) > 0, f"no checkpoint before the fence: {before}"

    asyncio.run(fence(s, ids))
    publish(s, second)
    wait_for_index(s, expected_incidents, [w], timeout_s=300)

    after = worker_metrics(s) or {}
    print(f"\nworker before the fence: {before}\nafter: {after}")
    assert after["checkpoints_failed"] >= 1, f"the fence made no checkpoint fail: {after}"
    assert after["checkpoints"] > before["checkpoints"]
    log = worker_log(w)
    assert "is read again from its committed offset" in log
    assert "Seek stream partitions to committed offsets" in log
