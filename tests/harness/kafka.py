"""Kafka helpers of the tests: reach the real broker, make unique topics, consume back; sample
native payloads and a two-device registry for the connector tests."""
from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, Iterable

import pytest
from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from connectors.sources.devices import DeviceRegistry
from infra.stack import port_open
from streams.settings import Settings

BOOTSTRAP = "127.0.0.1:19092"
CLOSED_BOOTSTRAP = "127.0.0.1:1"  # nothing listens there: Kafka "unreachable"

RAW_TOPICS = ("raw.camera.v1", "raw.grid.v1", "raw.alarm110.v1", "raw.mediation.v1", "raw.door.v1", "deadletters.v1")

REGISTRY_CSV = """device_id,kind,name,ip,mac,uuid,lat,lon,admin_code,address
51322110001320000123,camera_tianwang,岷江河堤1号,10.51.32.17,44:19:b6:0a:11:02,,31.4788,103.5912,513221100,威州镇岷江河堤
51322110001320000777,door,金竹苑东门,10.51.40.2,44:19:b6:0a:22:01,,31.48,103.59,513221100,威州镇金竹苑
"""


def registry() -> DeviceRegistry:
    """A two-device registry (one camera, one door controller)."""
    return DeviceRegistry.from_csv_text(REGISTRY_CSV)


def kafka_reachable(bootstrap: str = BOOTSTRAP, timeout: float = 2.0) -> bool:
    """True when the broker's port accepts a TCP connection."""
    host, port = bootstrap.rsplit(":", 1)
    return port_open(int(port), host, timeout)


def require_kafka() -> str:
    """The bootstrap address, or skip the test with a clear message."""
    if not kafka_reachable():
        pytest.skip(f"Kafka not reachable at {BOOTSTRAP}: start it with `.venv/bin/pingan infra up`")
    return BOOTSTRAP


def unique_prefix() -> str:
    """`test-<uuid>-` topic prefix (Settings.topic_prefix)."""
    return f"test-{uuid.uuid4().hex[:12]}-"


def create_topics(prefix: str, names: Iterable[str] = RAW_TOPICS, partitions: int = 1) -> list[str]:
    """Create prefixed topics (single partition by default so order is total); returns their names."""
    full = [prefix + n for n in names]
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="pingan-test-admin")
    try:
        admin.create_topics([NewTopic(t, partitions, 1) for t in full])
    finally:
        admin.close()
    return full


def delete_topics(topics: list[str]) -> None:
    """Best-effort cleanup of test topics, and of the schema topic a producer of the same prefix
    created (``schemas.v1``: writers publish their schemas before the first send)."""
    from schemas.catalogue import SCHEMAS_TOPIC, TOPICS

    prefixes = {t[: -len(c.name)] for t in topics for c in TOPICS if t.endswith(c.name) and len(t) > len(c.name)}
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="pingan-test-admin")
    try:
        existing = set(admin.list_topics())
        for batch in (topics, [p + SCHEMAS_TOPIC for p in sorted(prefixes) if p + SCHEMAS_TOPIC in existing]):
            try:
                if batch:
                    admin.delete_topics(batch)
            except Exception:  # noqa: BLE001 - cleanup only; the broker may already be gone
                pass
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    finally:
        admin.close()


async def consume(topic: str, n: int, timeout: float = 20.0) -> list[Any]:
    """Read ``n`` records from the start of ``topic`` (raises AssertionError if fewer arrive)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(out) < n and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for msgs in batches.values():
                out.extend(msgs)
    finally:
        await consumer.stop()
    assert len(out) >= n, f"expected {n} records on {topic}, got {len(out)}"
    return out


async def count_records(topic: str, wait: float = 2.0) -> int:
    """How many records ``topic`` holds after waiting ``wait`` seconds for stragglers."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    n = 0
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while loop.time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=300)).values():
                n += len(msgs)
    finally:
        await consumer.stop()
    return n


def gb28181_body(sn: int, *, device_id: str = "51322110001320000123", encoding: str = "GB2312") -> bytes:
    """A GB/T 28181 alarm Notify in the declared encoding."""
    xml = f"""<?xml version="1.0" encoding="{encoding}"?>
<Notify>
  <CmdType>Alarm</CmdType>
  <SN>{sn}</SN>
  <DeviceID>{device_id}</DeviceID>
  <AlarmPriority>1</AlarmPriority>
  <AlarmMethod>5</AlarmMethod>
  <AlarmTime>2026-07-14T16:23:{sn % 60:02d}</AlarmTime>
  <AlarmDescription>岷江河堤区域入侵</AlarmDescription>
  <Longitude>103.5912</Longitude>
  <Latitude>31.4788</Latitude>
  <Info><AlarmType>6</AlarmType><AlarmTypeParam><EventType>1</EventType></AlarmTypeParam></Info>
</Notify>
"""
    return xml.encode("gb18030" if encoding.upper().startswith("GB") else encoding)


ISAPI_ANPR = """<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
  <ipAddress>10.51.32.17</ipAddress><portNo>80</portNo><protocol>HTTP</protocol>
  <macAddress>44:19:b6:0a:11:02</macAddress><channelID>1</channelID>
  <dateTime>2026-07-14T16:25:10+08:00</dateTime><activePostCount>1</activePostCount>
  <eventType>ANPR</eventType><eventState>active</eventState><eventDescription>ANPR</eventDescription>
  <ANPR><licensePlate>川UA1235</licensePlate><plateColor>blue</plateColor><vehicleType>vehicle</vehicleType>
        <direction>forward</direction><confidenceLevel>92</confidenceLevel></ANPR>
</EventNotificationAlert>""".encode()

ISAPI_HEARTBEAT = """<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver10/XMLSchema">
  <ipAddress>10.51.32.17</ipAddress><macAddress>44:19:b6:0a:11:02</macAddress><channelID>1</channelID>
  <dateTime>2026-07-14T16:25:10+08:00</dateTime><activePostCount>0</activePostCount>
  <eventType>videoloss</eventType><eventState>inactive</eventState><eventDescription>videoloss alarm</eventDescription>
</EventNotificationAlert>""".encode()

GRID_JSON = """{"reportId": "WG20260714000123", "gridCode": "513221107201-03", "reporterId": "WGY-0231",
 "category": {"code": "0102", "name": "邻里纠纷"}, "description": "柒山村村民王某与李某因房屋拆迁补偿发生争执",
 "address": "三江镇柒山村3组", "location": {"lng": 103.3482, "lat": 31.1055, "coordType": "gcj02"},
 "persons": [{"role": "party", "name": "王德学", "idCard": "513221196805120312", "phone": "138 8888 1234"}],
 "reportTime": "2026-07-14 09:12:00", "status": "reported"}""".encode()

MEDIATION_JSON = """{"caseNo": "WC-2026-0042", "workstation": "无忧法治苑", "acceptedDate": "2026-07-15",
 "disputeType": "邻里", "summary": "柒山村宅基地边界纠纷", "address": "三江镇柒山村", "adminCode": "513221107",
 "parties": [{"role": "party", "name": "王德学", "idCard": "513221196805120312", "phone": "13888881234"},
             {"role": "party", "name": "李某", "phone": "13900001111"}],
 "mediator": "张调解", "result": "agreement", "compensation": 2000, "performance": "已履行",
 "judicialConfirmation": false}""".encode()

DOOR_JSON = """{"ipAddress": "10.51.40.2", "macAddress": "44:19:b6:0a:22:01", "dateTime": "2026-07-14T16:25:10+08:00",
 "eventType": "AccessControllerEvent", "AccessControllerEvent": {"deviceName": "金竹苑东门", "majorEventType": 5,
 "subEventType": 75, "name": "王德学", "employeeNoString": "1001", "cardNo": "3847562", "doorNo": 1,
 "attendanceStatus": "checkIn"}}""".encode()


def tmp_settings(tmp_path: Path, prefix: str, bootstrap: str = BOOTSTRAP, **extra: object) -> Settings:
    """Settings isolated to ``tmp_path`` and the test topic prefix. In dev mode (receivers without
    ingest credentials accept unsigned pushes) unless `extra` says otherwise: for the tests that are not
    about authentication (tests/integration/test_receiver_auth.py is)."""
    return Settings(**{"run_dir": tmp_path, "topic_prefix": prefix, "kafka_bootstrap": bootstrap,
                       "dev_mode": True, **extra})


def read_topic(bootstrap: str, topic: str, idle_s: float = 5.0) -> list[Any]:
    """Every message of a topic from the beginning (stops after idle_s without new messages)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                             consumer_timeout_ms=int(idle_s * 1000))
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        return list(consumer)
    finally:
        consumer.close()
