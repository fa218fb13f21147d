"""IncidentSink: retry classification with a fake transport (no network), then the real ES node:
mapping rejections become dead letters, stale versions are skipped, merges delete, and an outage
(a closed port that opens later) causes backlog, never loss."""
from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch.serializer import JSONSerializer

from connectors.elasticsearch.admin import IndexNames, drop_all, ensure_incident_index
from connectors.elasticsearch.templates import incident_mappings, index_settings
from connectors.elasticsearch.sink import IncidentSink, Outcome, SinkUnavailable, classify_item
from infra.processes import free_port
from streams.settings import Settings

ES_URL = Settings().es_url


def _inc(n: int, **over: Any) -> dict[str, Any]:
    inc = {"incident_id": f"inc-{n:016x}", "status": "open", "kind": "dispute", "severity": 2, "tier": "village",
           "admin_code": "513221107201", "county_code": "513221", "town_codes": ["513221107"],
           "village_codes": ["513221107201"], "first_seen": 1_714_521_600_000, "last_seen": 1_714_521_600_000,
           "event_ids": [f"grid:{n}"],
           "events": [{"event_id": f"grid:{n}", "source": "grid", "kind": "dispute", "occurred_at": 1_714_521_600_000,
                       "text": f"柒山村纠纷{n}", "lat": 31.108, "lon": 103.342, "admin_code": "513221107201",
                       "persons": []}],
           "links": [], "person_keys": [], "vehicle_keys": [], "version": 1, "updated_at": 1_714_521_600_000}
    inc.update(over)
    return inc


# ---------------------------------------------------------------- fake transport (unit level)
class _Transport:
    serializer = JSONSerializer()


class FakeES:
    """Answers `bulk` from a script: each step is an exception or a function(ids) -> {id: status}."""

    def __init__(self, script: list[Any]) -> None:
        self.transport = _Transport()
        self.script = list(script)
        self.calls: list[list[str]] = []

    async def bulk(self, body: str, **_: Any) -> dict[str, Any]:
        lines = [json.loads(x) for x in body.strip().split("\n")]
        ops = []
        i = 0
        while i < len(lines):
            op, meta = next(iter(lines[i].items()))
            ops.append((op, meta["_id"]))
            i += 1 if op == "delete" else 2
        self.calls.append([doc_id for _, doc_id in ops])
        step = self.script.pop(0) if self.script else (lambda ids: {})
        if isinstance(step, BaseException):
            raise step
        statuses = step([d for _, d in ops])
        items = []
        for op, doc_id in ops:
            status = statuses.get(doc_id, 201 if op != "delete" else 200)
            item: dict[str, Any] = {"_index": "x", "_id": doc_id, "status": status}
            if status >= 300:
                item["error"] = ({"type": "mapper_parsing_exception", "reason": "failed to parse field [severity]"}
                                 if status == 400 else {"type": "es_rejected_execution_exception", "reason": "busy"})
            items.append({op: item})
        return {"took": 1, "errors": any(s >= 300 for s in statuses.values()), "items": items}


def test_classify_item() -> None:
    assert classify_item("index", {"status": 201}) is Outcome.OK
    assert classify_item("delete", {"status": 404}) is Outcome.OK
    assert classify_item("index", {"status": 404}) is Outcome.DEAD
    assert classify_item("index", {"status": 409}) is Outcome.STALE
    assert classify_item("index", {"status": 429}) is Outcome.RETRY
    assert classify_item("index", {"status": 503}) is Outcome.RETRY
    assert classify_item("index", {"status": 400}) is Outcome.DEAD
    assert classify_item("index", {"status": "N/A", "exception": ESConnectionError("N/A", "refused", None)}) \
        is Outcome.RETRY


async def test_retries_until_success_and_dead_letters_rejections() -> None:
    sleeps: list[float] = []

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    es = FakeES([
        ESConnectionError("N/A", "connection refused", None),            # outage
        ESConnectionError("N/A", "connection refused", None),            # still out
        lambda ids: {ids[0]: 503, ids[1]: 400},                          # one 5xx, one mapping rejection
        lambda ids: {},                                                  # the 5xx one succeeds
    ])
    sink = IncidentSink(es, "idx", max_retries=0, initial_backoff=1.0, max_backoff=1.5, sleep=fake_sleep,
                        clock_ms=lambda: 123)
    for n in range(3):
        sink.add(_inc(n))
    sink.add(_inc(1, version=2))  # same id again: only the latest is sent
    result = await sink.flush()
    assert es.calls[0] == ["inc-0000000000000000", "inc-0000000000000002", "inc-0000000000000001"]
    assert es.calls[-1] == ["inc-0000000000000000"]  # only the retriable failure was resent
    assert result.indexed == 2 and len(result.dead_letters) == 1 and result.attempts == 4
    dl = result.dead_letters[0]
    assert dl["error_type"] == "mapper_parsing_exception" and dl["stage"] == "index"
    assert dl["source"] == "incidents" and dl["at"] == 123 and dl["error_class"] == "dead_letter"
    assert json.loads(dl["raw"])["incident_id"] == "inc-0000000000000002"
    assert sleeps == [1.0, 1.5, 1.5]  # capped exponential backoff
    assert sink.pending == 0


async def test_max_flush_attempts_raises_and_keeps_the_buffer() -> None:
    es = FakeES([ESConnectionError("N/A", "refused", None)] * 2 + [lambda ids: {}])

    async def no_sleep(_: float) -> None:
        return None

    sink = IncidentSink(es, "idx", max_retries=0, initial_backoff=0.01, max_flush_attempts=2, sleep=no_sleep)
    sink.add(_inc(1))
    sink.add({"status": "open"})  # no id: a dead letter at add time
    with pytest.raises(SinkUnavailable):
        await sink.flush()
    assert sink.pending == 2  # nothing lost, dead letter kept for the next flush
    result = await sink.flush()
    assert result.indexed == 1 and len(result.dead_letters) == 1 and sink.pending == 0


async def test_helper_level_429_retry_and_stale_version() -> None:
    es = FakeES([lambda ids: {ids[0]: 429, ids[1]: 409}, lambda ids: {}])
    sink = IncidentSink(es, "idx", max_retries=2, initial_backoff=0.001, max_backoff=0.002)
    sink.add(_inc(1))
    sink.add(_inc(2))
    sink.add(_inc(3, status="merged", merged_into="inc-1"))
    result = await sink.flush()
    assert (result.indexed, result.stale, result.deleted, result.attempts) == (1, 1, 1, 1)


def test_batch_full_signal() -> None:
    sink = IncidentSink(FakeES([]), "idx", batch_size=2)
    assert sink.add(_inc(1)) is False
    assert sink.add(_inc(1)) is False  # same id replaces
    assert sink.add(_inc(2)) is True


async def test_documents_are_built_at_flush_for_the_latest_record_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import connectors.elasticsearch.sink as sink_mod

    built: list[tuple[str, int]] = []
    real = sink_mod.incident_action

    def counting(incident: Any, index: str, **kw: Any) -> dict[str, Any]:
        built.append((incident["incident_id"], incident["version"]))
        if incident.get("kind") == "unindexable":
            raise sink_mod.DocumentError("cannot be a document")
        return real(incident, index, **kw)

    monkeypatch.setattr(sink_mod, "incident_action", counting)
    es = FakeES([lambda ids: {}])
    sink = IncidentSink(es, "idx", clock_ms=lambda: 7)
    for v in (1, 2, 3):
        sink.add(_inc(1, version=v))  # a flood incident updated three times in one batch
    sink.add(_inc(2, kind="unindexable"))
    assert built == [] and sink.pending == 2  # nothing built before the flush
    result = await sink.flush()
    assert built == [("inc-0000000000000001", 3), ("inc-0000000000000002", 1)]  # superseded versions cost nothing
    assert es.calls == [["inc-0000000000000001"]]
    assert result.indexed == 1 and [d["error_type"] for d in result.dead_letters] == ["DocumentError"]
    assert json.loads(result.dead_letters[0]["raw"])["incident_id"] == "inc-0000000000000002"
    assert result.total == 2 and sink.pending == 0


# ---------------------------------------------------------------- real Elasticsearch
def _es_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"{ES_URL}/_cluster/health", timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture()
def names() -> Iterator[IndexNames]:
    if not _es_reachable():
        pytest.skip(f"Elasticsearch not reachable at {ES_URL} (start it with `pingan infra up`)")
    n = IndexNames(f"pingan-test-{uuid.uuid4().hex[:10]}")
    yield n

    async def drop() -> None:
        es = AsyncElasticsearch([ES_URL])
        try:
            await drop_all(es, n)
        finally:
            await es.close()

    asyncio.run(drop())


@pytest.mark.integration
async def test_real_es_rejection_stale_and_merge(names: IndexNames) -> None:
    es = AsyncElasticsearch([ES_URL])
    try:
        await ensure_incident_index(es, names)
        sink = IncidentSink(es, names.alias, refresh=True)
        await sink.setup()
        sink.add(_inc(1, version=3))
        sink.add(_inc(2, severity="high"))          # not an integer → 400 mapper_parsing_exception
        sink.add(_inc(3))
        r1 = await sink.flush()
        assert r1.indexed == 2 and [d["error_type"] for d in r1.dead_letters] == ["mapper_parsing_exception"]
        sink.add(_inc(1, version=2, kind="theft"))  # older redelivery
        sink.add(_inc(3, status="merged", merged_into=_inc(1)["incident_id"]))
        r2 = await sink.flush()
        assert (r2.stale, r2.deleted) == (1, 1)
        doc = await es.get(index=names.alias, id=_inc(1)["incident_id"])
        assert doc["_source"]["kind"] == "dispute" and doc["_version"] == 3
        assert not await es.exists(index=names.alias, id=_inc(3)["incident_id"])
    finally:
        await es.close()


@pytest.mark.integration
async def test_setup_fails_on_missing_alias(names: IndexNames) -> None:
    from connectors.elasticsearch.sink import SinkError

    es = AsyncElasticsearch([ES_URL])
    try:
        with pytest.raises(SinkError):
            await IncidentSink(es, names.alias).setup()
    finally:
        await es.close()


@pytest.mark.integration
async def test_outage_is_backlog_not_loss(names: IndexNames) -> None:
    """The sink points at a closed port; after two failed rounds a proxy to ES opens there."""
    es_port = int(ES_URL.rsplit(":", 1)[1].split("/")[0])
    port = free_port()
    servers: list[asyncio.AbstractServer] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", es_port)
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    rounds: list[float] = []

    async def sleep_and_maybe_recover(delay: float) -> None:
        rounds.append(delay)
        if len(rounds) == 2 and not servers:
            servers.append(await asyncio.start_server(handle, "127.0.0.1", port))
        await asyncio.sleep(0.01)

    admin_es = AsyncElasticsearch([ES_URL])
    proxied = AsyncElasticsearch([f"http://127.0.0.1:{port}"], max_retries=0)
    try:
        await ensure_incident_index(admin_es, names)
        sink = IncidentSink(proxied, names.alias, refresh=True, max_retries=0, initial_backoff=0.05,
                            max_backoff=0.1, sleep=sleep_and_maybe_recover)
        for n in range(20):
            sink.add(_inc(n))
        result = await sink.flush()
        assert result.indexed == 20 and result.dead_letters == () and result.attempts == 3
        count = await admin_es.count(index=names.alias)
        assert count["count"] == 20
    finally:
        await proxied.close()
        await admin_es.close()
        for s in servers:
            s.close()
            await s.wait_closed()


@pytest.mark.integration
async def test_setup_adds_new_template_fields_to_the_live_index(names: IndexNames) -> None:
    """An index made by an older template gets the new fields (here `views`) when setup runs again,
    so an upgraded worker can index into it without a replay first."""
    es = AsyncElasticsearch([ES_URL])
    try:
        index = await ensure_incident_index(es, names)
        old = incident_mappings()
        del old["properties"]["views"]
        await es.indices.delete(index=index)
        await es.indices.delete_index_template(name=names.template)  # as if made before this template
        await es.indices.create(index=index, mappings=old, settings=index_settings())
        await es.indices.put_alias(index=index, name=names.alias)
        assert "views" not in (await es.indices.get_mapping(index=index))[index]["mappings"]["properties"]
        assert await ensure_incident_index(es, names) == index
        assert "views" in (await es.indices.get_mapping(index=index))[index]["mappings"]["properties"]
    finally:
        await es.close()


@pytest.mark.integration
async def test_setup_puts_the_refresh_interval_on_the_live_index(names: IndexNames) -> None:
    """A changed refresh interval reaches the index the alias serves when setup runs again (the
    template alone would apply it to the next index version only)."""
    es = AsyncElasticsearch([ES_URL])
    try:
        index = await ensure_incident_index(es, names, "1s")
        assert await ensure_incident_index(es, names, "250ms") == index
        got = await es.indices.get_settings(index=index, name="index.refresh_interval")
        assert got[index]["settings"]["index"]["refresh_interval"] == "250ms"
    finally:
        await es.close()
