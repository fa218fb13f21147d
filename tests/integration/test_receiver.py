"""HTTP receiver against the real Kafka: every endpoint lands its record; bad input → 400 + dead letter;
backpressure rules (429 only to retrying senders, 503 only when the spool is full) without Kafka."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.harness.kafka import (
    CLOSED_BOOTSTRAP,
    DOOR_JSON,
    GRID_JSON,
    ISAPI_ANPR,
    ISAPI_HEARTBEAT,
    MEDIATION_JSON,
    consume,
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


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[TestClient, IngestGateway, str]]:
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix)
    settings = tmp_settings(tmp_path, prefix)
    gateway = IngestGateway.from_settings(settings, ReceiverConfig(kafka_timeout_s=10.0), registry=registry())
    client = TestClient(TestServer(create_app(gateway)))
    await client.start_server()
    try:
        yield client, gateway, prefix
    finally:
        await client.close()
        delete_topics(topics)


async def test_every_endpoint_delivers_to_kafka(live: tuple[TestClient, IngestGateway, str]) -> None:
    client, gateway, prefix = live
    posts = [
        ("/gb28181/alarm", gb28181_body(17430), "Application/MANSCDP+xml"),
        ("/isapi/alert", ISAPI_ANPR, "application/xml"),
        ("/grid/reports", GRID_JSON, "application/json"),
        ("/mediation/cases", MEDIATION_JSON, "application/json"),
        ("/door/events", DOOR_JSON, "application/json"),
    ]
    for path, body, ctype in posts:
        resp = await client.post(path, data=body, headers={"Content-Type": ctype})
        payload = await resp.json()
        assert resp.status == 202, (path, payload)
        assert payload["accepted"] == 1 and payload["spooled"] is False, (path, payload)

    store = default_store()
    camera = await consume(prefix + "raw.camera.v1", 2)
    by_system = {}
    for msg in camera:
        name, rec = store.decode(msg.value)
        assert name == "pingan.raw.CameraAlarm"
        assert msg.key == rec["device_id"].encode()
        by_system[rec["source_system"]] = rec
    assert by_system["gb28181"]["native_id"] == "51322110001320000123:17430:2026-07-14T16:23:30"
    assert by_system["gb28181"]["description"] == "岷江河堤区域入侵"  # GB2312 decoded
    assert by_system["gb28181"]["event_type"] == "intrusion"
    assert by_system["isapi"]["plate"] == "川UA1235"
    assert by_system["isapi"]["device_id"] == "51322110001320000123"  # from the registry, by MAC

    (grid,) = await consume(prefix + "raw.grid.v1", 1)
    name, rec = store.decode(grid.value)
    assert (name, grid.key, rec["report_id"]) == ("pingan.raw.GridReport", b"WG20260714000123", "WG20260714000123")
    (med,) = await consume(prefix + "raw.mediation.v1", 1)
    name, rec = store.decode(med.value)
    assert med.key == b"WC-2026-0042" and len(rec["parties"]) == 2
    (door,) = await consume(prefix + "raw.door.v1", 1)
    name, rec = store.decode(door.value)
    assert name == "pingan.raw.DoorAccess" and door.key == b"51322110001320000777" and rec["card_no"] == "3847562"

    assert gateway.metrics.value("accepted", "gb28181") == 1
    assert gateway.metrics.value("delivered", "mediation") == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'pingan_receiver_accepted_total{source="isapi"} 1.0' in metrics
    health = await (await client.get("/healthz")).json()
    assert health["kafka"] == "ok" and health["spool"]["pending_records"] == 0


async def test_bad_input_is_400_and_dead_lettered(live: tuple[TestClient, IngestGateway, str]) -> None:
    client, gateway, prefix = live
    bad = b'{"reportId": "WG1", "gridCode": '
    resp = await client.post("/grid/reports", data=bad, headers={"Content-Type": "application/json"})
    body = await resp.json()
    assert resp.status == 400
    assert body["error"] and body["reason"]
    unknown = ISAPI_ANPR.replace(b"44:19:b6:0a:11:02", b"00:00:00:00:00:01").replace(b"10.51.32.17", b"10.9.9.9")
    resp = await client.post("/isapi/alert", data=unknown, headers={"Content-Type": "application/xml"})
    assert resp.status == 400 and (await resp.json())["error"] == "UnknownDevice"

    letters = await consume(prefix + "deadletters.v1", 2)
    decoded = [default_store().decode(m.value)[1] for m in letters]
    assert [(m.key, d["source"], d["stage"]) for m, d in zip(letters, decoded)] == [
        (b"grid", "grid", "translate"), (b"isapi", "isapi", "translate")]
    assert decoded[0]["raw"] == bad and decoded[0]["error_class"] == "dead_letter"
    assert decoded[1]["raw"] == unknown and "unknown device" in decoded[1]["reason"]
    assert gateway.metrics.value("dead_lettered", "grid") == 1
    assert gateway.metrics.value("rejected", "isapi") == 1


async def test_heartbeat_is_200_with_dropped_count(live: tuple[TestClient, IngestGateway, str]) -> None:
    client, gateway, _ = live
    resp = await client.post("/isapi/alert", data=ISAPI_HEARTBEAT, headers={"Content-Type": "application/xml"})
    assert resp.status == 200
    assert (await resp.json())["dropped"] == 1
    assert gateway.metrics.value("dropped", "isapi") == 1


async def test_body_limit_is_413(tmp_path: Path) -> None:
    settings = tmp_settings(tmp_path, unique_prefix(), bootstrap=CLOSED_BOOTSTRAP)
    gateway = IngestGateway.from_settings(settings, ReceiverConfig(max_body_bytes=1024), registry=registry())
    async with TestClient(TestServer(create_app(gateway))) as client:
        resp = await client.post("/grid/reports", data=b"x" * 4096)
        assert resp.status == 413
        assert gateway.spool.is_empty


async def test_backpressure_rules_without_kafka(tmp_path: Path) -> None:
    """Kafka away: everything spools (202); above high water grid/mediation get 429, cameras keep
    getting 202 until the spool is full, then everyone gets 503 with Retry-After."""
    settings = tmp_settings(tmp_path, unique_prefix(), bootstrap=CLOSED_BOOTSTRAP)
    one = len(gb28181_body(1)) + 300  # rough size of one spooled camera record
    cfg = ReceiverConfig(spool_max_bytes=one * 6, spool_high_water=0.3, retry_after_s=7, kafka_timeout_s=1.0)
    producer = RecordProducer(CLOSED_BOOTSTRAP, config=ProducerConfig(start_timeout_s=1.0))
    gateway = IngestGateway.from_settings(settings, cfg, registry=registry(), producer=producer)
    async with TestClient(TestServer(create_app(gateway))) as client:
        resp = await client.post("/grid/reports", data=GRID_JSON)
        assert resp.status == 202 and (await resp.json())["spooled"] is True
        statuses = []
        for sn in range(1, 40):
            r = await client.post("/gb28181/alarm", data=gb28181_body(sn))
            statuses.append(r.status)
            if r.status == 503:
                assert r.headers["Retry-After"] == "7"
                break
            if gateway.spool.above_high_water:
                g = await client.post("/grid/reports", data=GRID_JSON)
                assert g.status == 429 and g.headers["Retry-After"] == "7"
                m = await client.post("/mediation/cases", data=MEDIATION_JSON)
                assert m.status == 429
        assert statuses[-1] == 503
        assert set(statuses[:-1]) == {202}  # cameras: never 429
        assert len(statuses) > 2
        assert gateway.metrics.value("refused", "gb28181") == 1
        assert gateway.metrics.value("throttled", "grid") >= 1
        assert gateway.metrics.value("spooled", "gb28181") == len(statuses) - 1
        health = await client.get("/healthz")
        assert (await health.json())["kafka"] == "unreachable"
