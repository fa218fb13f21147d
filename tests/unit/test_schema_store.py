"""The schema store without Kafka: fingerprint notations, entries, the index, the HTTP routes and the
writers' guard (a producer refuses to send while its schemas are not published)."""
from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.ingest.producer import DeliveryError, RecordProducer
from schemas.registry import (
    SchemaIndex, fingerprint_hex, fingerprint_long, missing, parse_fingerprint, schema_entries,
)
from schemas.serde import default_store
from streams.web.schema_routes import SchemaSource, make_schema_app


def test_both_notations_name_the_same_bytes() -> None:
    fp = default_store().fingerprint("Incident")
    assert parse_fingerprint(fingerprint_hex(fp)) == fp
    assert parse_fingerprint(str(fingerprint_long(fp))) == fp
    assert parse_fingerprint(str(int.from_bytes(fp, "little"))) == fp  # unsigned decimal too
    assert fingerprint_long(bytes.fromhex("ffffffffffffffff")) == -1
    # the Avro spec's value for "null": 0x63dd24e7cc258f8a, little-endian on the wire
    wire = (0x63DD24E7CC258F8A).to_bytes(8, "little")
    assert fingerprint_hex(wire) == "8a8f25cce724dd63" and fingerprint_long(wire) == 0x63DD24E7CC258F8A
    for bad in ("xyz", "1" * 30, str(2**64), "0x11"):
        with pytest.raises(ValueError):
            parse_fingerprint(bad)


def test_entries_cover_every_writer_version_and_say_their_release() -> None:
    store = default_store()
    entries = schema_entries(store)
    assert len({e["fingerprint"] for e in entries}) == len(entries) == len(store.writer_versions())
    assert entries == schema_entries(store)  # idempotent republishing
    incident = [e for e in entries if e["name"] == "pingan.Incident"]
    assert {e["release"] for e in incident} == {"v1", "v2"}
    for e in entries:
        store.encode("SchemaEntry", e)  # each is a valid pingan.SchemaEntry
        assert json.loads(e["schema"])["name"] in (e["name"], e["name"].rsplit(".", 1)[-1])
    assert missing(store, [e["fingerprint"] for e in entries]) == ()
    assert [sv.name for sv in missing(store, [])] == list(store.names)
    index = SchemaIndex()
    index.add(entries)
    assert [e["release"] for e in index.versions("Incident")] == ["v1", "v2"]
    assert index.find(store.fingerprint("Link"))["name"] == "pingan.Link"


@pytest.mark.asyncio
async def test_routes_serve_schemas_and_refresh_on_a_miss() -> None:
    store = default_store()
    extra = {"fingerprint": "0011223344556677", "fingerprint_long": fingerprint_long(bytes.fromhex("0011223344556677")),
             "name": "pingan.Incident", "release": "unreleased",
             "schema": '{"type":"record","name":"Incident","namespace":"pingan","fields":[]}'}
    loads: list[int] = []

    def load() -> dict:
        loads.append(1)
        return {extra["fingerprint"]: extra}

    client = TestClient(TestServer(make_schema_app(SchemaSource(store, load, min_refresh_s=0))))
    await client.start_server()
    try:
        fp = store.fingerprint("Incident")
        for text in (fingerprint_hex(fp), str(fingerprint_long(fp))):
            resp = await client.get(f"/schemas/{text}")
            assert resp.status == 200
            assert resp.headers["X-Avro-Fingerprint"] == fingerprint_hex(fp)
            assert resp.headers["X-Avro-Fingerprint-Long"] == str(fingerprint_long(fp))
            assert resp.headers["X-Schema-Release"] == "v2"
            assert (await resp.json()) == store.schema("Incident")
        assert not loads
        resp = await client.get("/schemas/0011223344556677")  # not local: read from the topic
        assert resp.status == 200 and resp.headers["X-Schema-Release"] == "unreleased" and loads
        assert (await client.get("/schemas/nonsense")).status == 400
        assert (await client.get("/schemas/ffffffffffffff00")).status == 404
        versions = await (await client.get("/schemas/pingan.Incident/versions")).json()
        assert [v["release"] for v in versions] == ["v1", "v2", "unreleased"]
        assert versions[1]["schema"] == store.schema("Incident")
        assert (await client.get("/schemas/Nope/versions")).status == 404
        names = {s["name"] for s in (await (await client.get("/schemas")).json())["schemas"]}
        assert set(store.names) <= names
    finally:
        await client.close()


class _FakeKafka:
    def __init__(self) -> None:
        self.started = self.stopped = 0
        self.sent: list = []

    def factory(self, **_: object) -> "_FakeKafka":
        return self

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def send_and_wait(self, *args: object, **kwargs: object) -> None:
        self.sent.append(args)


def test_a_writer_refuses_to_send_until_its_schemas_are_published() -> None:
    kafka = _FakeKafka()
    published: list[str] = []

    def guard(store) -> None:
        absent = missing(store, published)
        if absent:
            raise RuntimeError(f"{len(absent)} schema(s) not published")

    p = RecordProducer("fake:1", producer_factory=kafka.factory, schema_guard=guard)

    async def run() -> None:
        with pytest.raises(DeliveryError, match="not published") as info:
            await p.ensure_started()
        assert info.value.retriable and kafka.stopped == 1 and not p.started
        published.extend(e["fingerprint"] for e in schema_entries(default_store()))
        await p.ensure_started()
        assert p.started

    asyncio.run(run())
