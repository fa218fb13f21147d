"""The spool path end to end: Kafka unreachable → 202 + spooled → drained to the real broker in order.

(Named test_spool_kafka.py: tests/ has no __init__.py, so two test_spool.py modules would clash.)"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.harness.kafka import (
    BOOTSTRAP,
    CLOSED_BOOTSTRAP,
    GRID_JSON,
    consume,
    count_records,
    create_topics,
    delete_topics,
    gb28181_body,
    registry,
    require_kafka,
    tmp_settings,
    unique_prefix,
)
from connectors.ingest.producer import ProducerConfig, RecordProducer
from connectors.ingest.receiver import IngestGateway, ReceiverConfig, create_app
from schemas.serde import default_store

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _sn_of(value: bytes) -> int:
    return int(default_store().decode(value)[1]["native_id"].split(":")[1])


async def test_outage_spools_then_drains_in_order_when_kafka_returns(tmp_path: Path) -> None:
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix)
    settings = tmp_settings(tmp_path, prefix, bootstrap=CLOSED_BOOTSTRAP)
    cfg = ReceiverConfig(kafka_timeout_s=1.0, drain_backoff_max_s=0.5, drain_timeout_s=10.0)
    down = RecordProducer(CLOSED_BOOTSTRAP, deadletter_topic=prefix + "deadletters.v1",
                          config=ProducerConfig(start_timeout_s=1.0))
    gateway = IngestGateway.from_settings(settings, cfg, registry=registry(), producer=down)
    try:
        async with TestClient(TestServer(create_app(gateway))) as client:
            for sn in range(1, 21):
                resp = await client.post("/gb28181/alarm", data=gb28181_body(sn))
                assert resp.status == 202
                assert (await resp.json())["spooled"] is True
            bad = await client.post("/grid/reports", data=b"not json")
            assert bad.status == 400  # its dead letter is spooled too
            assert gateway.spool.pending_count == 21
            assert gateway.metrics.value("spooled", "gb28181") == 20

            # Kafka "comes back": the drainer (backing off) picks up a working producer
            gateway.producer = RecordProducer(BOOTSTRAP, deadletter_topic=prefix + "deadletters.v1")
            for _ in range(100):
                if gateway.spool.is_empty:
                    break
                await asyncio.sleep(0.1)
            assert gateway.spool.is_empty
            # with the spool empty, new records go straight to Kafka again
            resp = await client.post("/gb28181/alarm", data=gb28181_body(21))
            assert resp.status == 202 and (await resp.json())["spooled"] is False
            await down.stop()

        msgs = await consume(prefix + "raw.camera.v1", 21)
        assert [_sn_of(m.value) for m in msgs] == list(range(1, 22))  # in order, nothing lost
        assert await count_records(prefix + "raw.camera.v1") == 21  # no duplicates this time
        (letter,) = await consume(prefix + "deadletters.v1", 1)
        name, dl = default_store().decode(letter.value)
        assert name == "pingan.DeadLetter" and dl["raw"] == b"not json" and letter.key == b"grid"
        assert gateway.metrics.value("drained") == 21
    finally:
        delete_topics(topics)


async def test_spool_survives_restart_and_drains(tmp_path: Path) -> None:
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix)
    try:
        # run 1: Kafka unreachable, records acknowledged from the spool, then the process "dies"
        settings = tmp_settings(tmp_path, prefix, bootstrap=CLOSED_BOOTSTRAP)
        gw1 = IngestGateway.from_settings(
            settings, ReceiverConfig(kafka_timeout_s=1.0), registry=registry(),
            producer=RecordProducer(CLOSED_BOOTSTRAP, config=ProducerConfig(start_timeout_s=1.0)))
        await gw1.setup()
        for sn in range(100, 110):
            out = await gw1.ingest("gb28181", gb28181_body(sn))
            assert out.status == 202 and out.spooled
        out = await gw1.ingest("grid", GRID_JSON, content_type="application/json")
        assert out.status == 202 and out.spooled
        gw1.spool.close()  # no drain, no graceful stop

        # run 2: a new process with Kafka back
        settings2 = tmp_settings(tmp_path, prefix)
        gw2 = IngestGateway.from_settings(settings2, ReceiverConfig(), registry=registry())
        await gw2.setup()
        assert gw2.spool.pending_count == 11
        assert await gw2.drain_once() == 11
        assert gw2.spool.is_empty
        await gw2.close()

        msgs = await consume(prefix + "raw.camera.v1", 10)
        assert [_sn_of(m.value) for m in msgs] == list(range(100, 110))
        (grid,) = await consume(prefix + "raw.grid.v1", 1)
        assert grid.key == b"WG20260714000123"
        # a third start finds nothing left to send
        gw3 = IngestGateway.from_settings(settings2, ReceiverConfig(), registry=registry())
        await gw3.setup()
        assert gw3.spool.is_empty
        await gw3.close()
    finally:
        delete_topics(topics)
