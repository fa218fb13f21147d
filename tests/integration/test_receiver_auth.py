"""Authenticated sources against the real Kafka: unsigned, badly signed, stale and replayed pushes are
answered 401 and never reach Kafka; signed pushes and ISAPI digest pushes are accepted; an alarm of a
device not in the registry is a dead letter (UnknownDevice) that `redrive` delivers once the device is
registered; a receiver outside dev mode refuses to start without credentials."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.ingest.receiver import IngestGateway, ReceiverConfig, create_app
from connectors.sources.auth import digest_header
from connectors.sources.devices import DeviceRegistry
from schemas.serde import default_store
from streams.ops.dlq import read_dead_letters, redrive
from streams.settings import MissingSecrets, Settings
from tests.harness.auth import DIGEST_PASSWORD, DIGEST_USER, DOOR_TOKEN, signed, write_ingest_credentials
from tests.harness.kafka import (
    DOOR_JSON,
    GRID_JSON,
    ISAPI_ANPR,
    REGISTRY_CSV,
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

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

UNKNOWN_CAMERA = "51322110701320000999"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[TestClient, IngestGateway, Settings]]:
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix)
    settings = tmp_settings(tmp_path, prefix, dev_mode=False,
                            ingest_credentials=write_ingest_credentials(tmp_path / "ingest.toml"))
    gateway = IngestGateway.from_settings(settings, ReceiverConfig(kafka_timeout_s=10.0), registry=registry())
    client = TestClient(TestServer(create_app(gateway)))
    await client.start_server()
    try:
        yield client, gateway, settings
    finally:
        await client.close()
        delete_topics(topics)


async def post(client: TestClient, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    resp = await client.post(path, data=body, headers={"Content-Type": "application/json", **headers})
    return resp.status, await resp.json()


async def test_unsigned_bad_stale_and_replayed_pushes_are_refused(
        live: tuple[TestClient, IngestGateway, Settings]) -> None:
    client, gateway, settings = live
    now = time.time()
    refused = [
        ({}, "missing"),
        ({**signed(GRID_JSON, now), "X-Pingan-Signature": "0" * 64}, "bad-signature"),
        (signed(GRID_JSON + b" ", now), "bad-signature"),  # signed another body
        (signed(GRID_JSON, now - 3600), "stale"),
        ({**signed(GRID_JSON, now), "X-Pingan-Key-Id": "someone-else"}, "unknown-key"),
    ]
    for headers, code in refused:
        status, body = await post(client, "/grid/reports", GRID_JSON, headers)
        assert status == 401 and body["error"] == "Unauthorized" and body["code"] == code, (code, body)
        assert body["reason"]
    good = signed(GRID_JSON, now)
    status, body = await post(client, "/grid/reports", GRID_JSON, good)
    assert status == 202 and body["accepted"] == 1, body
    status, body = await post(client, "/grid/reports", GRID_JSON, good)  # the same request again
    assert (status, body["code"]) == (401, "replayed"), body

    assert await count_records(settings.topic("raw.grid.v1")) == 1
    assert await count_records(settings.topic("deadletters.v1"), wait=0.5) == 0
    m = gateway.metrics
    assert m.value("auth_failed", "grid", None) == 0  # labelled by code too
    text = m.exposition().decode()
    for code in ("missing", "bad-signature", "stale", "unknown-key", "replayed"):
        assert f'pingan_receiver_auth_failed_total{{code="{code}",source="grid"}}' in text, code
    assert m.value("accepted", "grid") == 1


async def test_digest_isapi_and_token_door(live: tuple[TestClient, IngestGateway, Settings]) -> None:
    client, _gateway, settings = live
    first = await client.post("/isapi/alert", data=ISAPI_ANPR, headers={"Content-Type": "application/xml"})
    assert first.status == 401 and (await first.json())["code"] == "challenge"
    challenge = first.headers["WWW-Authenticate"]
    assert challenge.startswith("Digest ") and 'qop="auth"' in challenge
    wrong = digest_header(challenge, DIGEST_USER, "not-the-password", "POST", "/isapi/alert")
    resp = await client.post("/isapi/alert", data=ISAPI_ANPR, headers={"Authorization": wrong})
    assert resp.status == 401 and (await resp.json())["code"] == "bad-password"
    auth = digest_header(challenge, DIGEST_USER, DIGEST_PASSWORD, "POST", "/isapi/alert", nc=2)
    resp = await client.post("/isapi/alert", data=ISAPI_ANPR,
                             headers={"Authorization": auth, "Content-Type": "application/xml"})
    assert resp.status == 202, await resp.text()
    status, body = await post(client, "/door/events", DOOR_JSON, {"Authorization": f"Bearer {DOOR_TOKEN}"})
    assert status == 202, body
    status, body = await post(client, "/door/events", DOOR_JSON, {"Authorization": "Bearer guessed"})
    assert (status, body["code"]) == (401, "bad-token")
    assert await count_records(settings.topic("raw.camera.v1")) == 1
    assert await count_records(settings.topic("raw.door.v1"), wait=0.5) == 1


async def test_unknown_device_is_a_dead_letter_redriven_once_registered(
        live: tuple[TestClient, IngestGateway, Settings], tmp_path: Path) -> None:
    client, gateway, settings = live
    body = gb28181_body(4711, device_id=UNKNOWN_CAMERA)
    status, answer = await post(client, "/gb28181/alarm", body, signed(body))
    assert status == 400 and answer["error"] == "UnknownDevice", answer
    assert "not in the device registry" in answer["reason"]
    assert await count_records(settings.topic("raw.camera.v1"), wait=1.0) == 0  # never indexed as if known
    (letter,) = await consume(settings.topic("deadletters.v1"), 1)
    _name, record = default_store().decode(letter.value)
    assert record["source"] == "gb28181" and record["error_type"] == "UnknownDevice"
    assert gateway.metrics.value("dead_lettered", "gb28181") == 1

    # the device is registered: `pingan dlq redrive` translates the letter again with the new registry
    csv = tmp_path / "registry.csv"
    csv.write_text(REGISTRY_CSV + f"{UNKNOWN_CAMERA},camera_xueliang,三江镇新装探头,,,,31.09,103.35,513221107,"
                                  "三江镇场镇\n", encoding="utf-8")
    assert UNKNOWN_CAMERA in DeviceRegistry.from_csv(csv)
    ops = Settings(**{**settings.model_dump(), "registry_path": csv})
    letters = await asyncio.to_thread(read_dead_letters, ops, source="gb28181", reason_contains="unknown device")
    assert len(letters) == 1
    (outcome,) = await asyncio.to_thread(redrive, ops, letters)
    assert (outcome.action, outcome.records) == ("translated", 1), outcome
    (msg,) = await consume(settings.topic("raw.camera.v1"), 1)
    assert default_store().decode(msg.value)[1]["device_id"] == UNKNOWN_CAMERA


async def test_receivers_refuse_to_start_without_credentials_outside_dev_mode(tmp_path: Path) -> None:
    settings = tmp_settings(tmp_path, unique_prefix(), dev_mode=False)
    with pytest.raises(MissingSecrets, match="PINGAN_INGEST_CREDENTIALS"):
        IngestGateway.from_settings(settings, registry=registry())
