"""A center's work against the real Kafka and Elasticsearch (issue 15): actions published as
pingan.Disposition on dispositions.v1 and read back, refusals (400/401/403/404/409/503), the audit
chain, the work queue's order, and the live stream filtered by jurisdiction.

Incidents carrying lifecycle fields are indexed into a throw-away ``pingan-test-<hex>`` index;
the topics live under a ``test-<hex>-`` prefix; both are deleted afterwards."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from elasticsearch import AsyncElasticsearch

from connectors.elasticsearch.admin import IndexNames, drop_all, ensure_incident_index
from connectors.elasticsearch.sink import IncidentSink
from connectors.ingest.producer import RecordProducer
from schemas.examples import example
from schemas.serde import default_store
from streams.domain import lifecycle
from streams.settings import Settings
from streams.web.audit import AuditLog, iter_records, verify_chain
from streams.web.auth import Credentials
from streams.web.server import make_app
from tests.harness.kafka import CLOSED_BOOTSTRAP, create_topics, delete_topics, read_topic, require_kafka

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

ES_URL = Settings().es_url
QISHAN, CAOPING, SANJIANG, COUNTY = "513221107201", "513221107202", "513221107", "513221"
TOKENS = {
    "tok-ops-qishan-00000001": ("柒山村网格员", QISHAN),
    "tok-ops-caoping-0000001": ("草坪村网格员", CAOPING),
    "tok-ops-sanjiang-000001": ("三江镇综治中心", SANJIANG),
    "tok-ops-county-00000001": ("汶川县综治中心", COUNTY),
}
NOW = int(time.time() * 1000)
HOUR = 3_600_000


def _h(prefix: str) -> dict[str, str]:
    token = next(t for t in TOKENS if t.startswith(prefix))
    return {"Authorization": f"Bearer {token}"}


def _inc(inc_id: str, villages: list[str], *, tier: str = "village", status: str = "open", severity: int = 2,
         deadline: int | None = None, actionable: bool = True, history: list | None = None) -> dict[str, Any]:
    events = [{"event_id": f"grid:{inc_id}-{i}", "source": "grid", "kind": "dispute", "occurred_at": NOW - HOUR + i,
               "text": f"{inc_id} 邻里纠纷", "lat": 31.1 + i / 100, "lon": 103.34, "admin_code": v,
               "persons": ["王某学"], "severity": severity} for i, v in enumerate(villages)]
    return {
        "incident_id": inc_id, "status": status, "merged_into": None, "kind": "dispute", "severity": severity,
        "tier": tier, "admin_code": villages[0] if len(villages) == 1 else villages[0][:9], "county_code": COUNTY,
        "town_codes": sorted({v[:9] for v in villages}), "village_codes": sorted(set(villages)),
        "first_seen": NOW - HOUR, "last_seen": NOW - HOUR + len(villages), "event_ids": [e["event_id"] for e in events],
        "events": events, "links": [], "person_keys": [], "vehicle_keys": [], "version": 1, "updated_at": NOW,
        "actionable": actionable, "escalated": bool(history), "escalation_history": history or [],
        "opened_at": NOW - HOUR, "deadline_at": deadline, "dispositions": [],
    }


SPREAD = [{"from_tier": "village", "to_tier": "town", "reason_code": "spread", "reason": "事件涉及2个村，升级至镇级",
           "at": NOW - HOUR + 1}]
INCIDENTS = [
    _inc("inc-q-open", [QISHAN], deadline=NOW + 2 * HOUR),
    _inc("inc-q-accepted", [QISHAN], status="accepted", severity=3, deadline=NOW + 50 * HOUR),
    _inc("inc-cross-town", [QISHAN, CAOPING], tier="town", deadline=NOW + 1 * HOUR, history=SPREAD),
    _inc("inc-caoping", [CAOPING], deadline=NOW + 3 * HOUR),
    _inc("inc-q-resolved", [QISHAN], status="resolved"),
    _inc("inc-q-evidence", [QISHAN], actionable=False),
    _inc("inc-county", ["513221100201"], tier="county", severity=4),
]


@pytest.fixture(scope="module")
def namespace() -> Iterator[tuple[str, str]]:
    """(topic prefix, index prefix): topics incidents.v1/dispositions.v1 and a populated index."""
    require_kafka()
    prefix = f"test-{uuid.uuid4().hex[:12]}-"
    index_prefix = f"pingan-test-{uuid.uuid4().hex[:10]}"
    topics = create_topics(prefix, ("incidents.v1", "dispositions.v1"), partitions=1)
    names = IndexNames(index_prefix)

    async def setup() -> None:
        es = AsyncElasticsearch([ES_URL])
        try:
            await ensure_incident_index(es, names, "1s")
            sink = IncidentSink(es, names.alias, refresh=True)
            await sink.setup()
            for inc in INCIDENTS:
                sink.add(inc)
            assert (await sink.flush()).indexed == len(INCIDENTS)
        finally:
            await es.close()

    async def teardown() -> None:
        es = AsyncElasticsearch([ES_URL])
        try:
            await drop_all(es, names)
        finally:
            await es.close()

    try:
        asyncio.run(setup())
        yield prefix, index_prefix
    finally:
        asyncio.run(teardown())
        delete_topics(topics)


def _settings(namespace: tuple[str, str], **kw: Any) -> Settings:
    return Settings(topic_prefix=namespace[0], es_index_prefix=namespace[1], **kw)


@pytest.fixture()
async def api(namespace: tuple[str, str], tmp_path: Path) -> AsyncIterator[tuple[TestClient, Path]]:
    es = AsyncElasticsearch([ES_URL])
    creds = Credentials.from_mapping({t: {"user": u, "admin_code": c} for t, (u, c) in TOKENS.items()})
    audit_path = tmp_path / "audit.jsonl"
    client = TestClient(TestServer(make_app(_settings(namespace), es, creds, AuditLog(audit_path, key=b"k" * 32))))
    await client.start_server()
    try:
        yield client, audit_path
    finally:
        await client.close()
        await es.close()


async def _act(client: TestClient, inc: str, token: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, str) else json.dumps(body)
    resp = await client.post(f"/api/incidents/{inc}/actions", data=data, headers=_h(token))
    return resp.status, await resp.json()


async def test_actions_publish_dispositions_and_refusals_are_audited(api: tuple[TestClient, Path],
                                                                    namespace: tuple[str, str]) -> None:
    client, audit_path = api
    happy = [
        ("inc-q-open", {"action": "accept", "request_id": "req-1"}),
        ("inc-q-open", {"action": "assign", "assignee": "李某网格员", "request_id": "req-2"}),
        ("inc-q-open", {"action": "note", "note": "已电话联系，号码13812345678", "request_id": "req-3"}),
        ("inc-q-open", {"action": "resolve", "outcome": "双方达成调解协议", "request_id": "req-4"}),
        ("inc-q-open", {"action": "escalate", "to_tier": "town", "note": "涉及宅基地", "request_id": "req-5"}),
        ("inc-q-resolved", {"action": "reopen", "request_id": "req-6"}),
    ]
    ids = []
    for inc, body in happy:
        status, out = await _act(client, inc, "tok-ops-qishan", body)
        assert status == 202, out
        assert out["status"] == "queued"
        ids.append(out["disposition_id"])
    # a retried request (same request_id) gets the same deterministic id
    assert (await _act(client, "inc-q-open", "tok-ops-qishan", happy[0][1]))[1]["disposition_id"] == ids[0]

    refusals = [
        ("inc-q-accepted", "tok-ops-qishan", {"action": "accept"}, 409),      # already accepted
        ("inc-q-open", "tok-ops-qishan", {"action": "reopen"}, 409),          # not resolved
        ("inc-q-evidence", "tok-ops-qishan", {"action": "accept"}, 409),      # evidence only
        ("inc-cross-town", "tok-ops-qishan", {"action": "accept"}, 403),      # town's incident, village credential
        ("inc-caoping", "tok-ops-qishan", {"action": "accept"}, 404),         # another village: not visible
        ("inc-nope", "tok-ops-qishan", {"action": "accept"}, 404),            # unknown
        ("inc-q-open", "tok-ops-qishan", "{not json", 400),
        ("inc-q-open", "tok-ops-qishan", {"action": "dance"}, 400),
        ("inc-q-open", "tok-ops-qishan", {"action": "assign"}, 400),          # assignee missing
    ]
    for inc, token, body, expected in refusals:
        status, out = await _act(client, inc, token, body)
        assert status == expected, (inc, body, out)
        assert out["error"]
    # the town may act on its own incident
    assert (await _act(client, "inc-cross-town", "tok-ops-sanjiang", {"action": "accept"}))[0] == 202
    resp = await client.post("/api/incidents/inc-q-open/actions", data="{}")
    assert resp.status == 401

    records = [default_store().decode(m.value)[1] for m in
               read_topic(require_kafka(), namespace[0] + "dispositions.v1", idle_s=3)]
    by_id = {r["disposition_id"]: r for r in records}
    assert set(ids) <= set(by_id) and len(records) == len(happy) + 2  # + the retry + the town's accept
    first = by_id[ids[0]]
    assert first["incident_id"] == "inc-q-open" and first["anchor_event_id"] == "grid:inc-q-open-0"
    assert first["actor"] == "柒山村网格员" and first["actor_admin_code"] == QISHAN
    assert first["disposition_id"] == lifecycle.disposition_id("grid:inc-q-open-0", "accept", "柒山村网格员", "req-1")
    assert by_id[ids[1]]["assignee"] == "李某网格员"
    assert "13812345678" not in by_id[ids[2]]["note"]
    assert by_id[ids[3]]["outcome"] == "双方达成调解协议"
    assert by_id[ids[4]]["to_tier"] == "town"
    msgs = read_topic(require_kafka(), namespace[0] + "dispositions.v1", idle_s=1)
    assert {m.key for m in msgs} == {b"inc-q-open", b"inc-q-resolved", b"inc-cross-town"}

    check = verify_chain(audit_path, b"k" * 32)
    assert check.ok, check.reason
    acts = [r for r in iter_records(audit_path) if r["action"] == "action"]
    statuses = sorted(r["status"] for r in acts if r["user"])
    assert statuses == sorted([202] * 8 + [409, 409, 409, 403, 404, 404, 400, 400, 400])
    refused = next(r for r in acts if r["status"] == 403)
    assert "镇级" in refused["filter"]["reason"]
    assert all("13812345678" not in json.dumps(r, ensure_ascii=False) for r in iter_records(audit_path))


async def test_detail_shows_lifecycle(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    resp = await client.get("/api/incidents/inc-cross-town", headers=_h("tok-ops-sanjiang"))
    body = await resp.json()
    assert resp.status == 200
    assert body["status"] == "open" and body["status_name"] == "待受理"
    assert body["handling_tier"] == "town" and body["deadline_at"] == NOW + HOUR
    assert body["escalation_history"][0]["reason"] == "事件涉及2个村，升级至镇级"
    assert body["dispositions"] == [] and body["escalated"] is True


async def test_queue_order_and_scope(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    resp = await client.get("/api/queue", headers=_h("tok-ops-county"))
    body = await resp.json()
    assert resp.status == 200, body
    assert [i["incident_id"] for i in body["items"]] == \
        ["inc-cross-town", "inc-q-open", "inc-caoping", "inc-q-accepted", "inc-county"]
    assert [i["due"] for i in body["items"]][:4] == ["due_soon", "due_soon", "due_soon", None]
    village = await (await client.get("/api/queue", headers=_h("tok-ops-qishan"))).json()
    # the town's cross-village incident is in the village's queue, without the town's deadline (the
    # village sees only its part of it: server._lifecycle_source), so after the village's own work
    assert [i["incident_id"] for i in village["items"]] == ["inc-q-open", "inc-q-accepted", "inc-cross-town"]
    assert village["items"][-1]["deadline_at"] is None
    town_only = await (await client.get("/api/queue?tier=town", headers=_h("tok-ops-county"))).json()
    assert [i["incident_id"] for i in town_only["items"]] == ["inc-cross-town"]
    accepted = await (await client.get("/api/queue?status=accepted", headers=_h("tok-ops-county"))).json()
    assert [i["incident_id"] for i in accepted["items"]] == ["inc-q-accepted"]
    assert (await client.get("/api/queue?tier=province", headers=_h("tok-ops-county"))).status == 400


async def _events(resp: Any, until: str, timeout: float = 20.0) -> list[tuple[str, dict[str, Any]]]:
    """SSE events read from `resp` until one named `until` arrived."""
    out: list[tuple[str, dict[str, Any]]] = []
    name = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), max(0.1, deadline - loop.time()))).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            out.append((name, json.loads(line[6:])))
            if name == until:
                return out


def _record(inc_id: str, village: str) -> dict[str, Any]:
    rec = example("pingan.Incident")
    ev = dict(rec["events"][0], event_id=f"grid:{inc_id}", admin_code=village, text=f"{inc_id} 实时事件")
    return dict(rec, incident_id=inc_id, admin_code=village, town_codes=[village[:9]], village_codes=[village],
                events=[ev], event_ids=[ev["event_id"]], links=[])


async def test_stream_is_filtered_by_jurisdiction(api: tuple[TestClient, Path], namespace: tuple[str, str]) -> None:
    client, _ = api
    qishan = await client.get("/api/stream", headers=_h("tok-ops-qishan"))
    caoping = await client.get("/api/stream", headers=_h("tok-ops-caoping"))
    assert qishan.status == 200 and qishan.headers["Content-Type"].startswith("text/event-stream")
    await _events(qishan, "ready")
    await _events(caoping, "ready")
    producer = RecordProducer(require_kafka())
    try:
        for inc_id, village in (("live-qishan", QISHAN), ("live-caoping", CAOPING)):
            await producer.send(namespace[0] + "incidents.v1", inc_id,
                                producer.encode("pingan.Incident", _record(inc_id, village)), timeout=10)
    finally:
        await producer.stop()
    got_q = await _events(qishan, "incident")
    assert [d["incident_id"] for n, d in got_q if n == "incident"] == ["live-qishan"]
    assert got_q[-1][1]["status_name"] == "待受理" and got_q[-1][1]["deadline_at"] is not None
    got_c = await _events(caoping, "incident")
    assert [d["incident_id"] for n, d in got_c if n == "incident"] == ["live-caoping"]  # never the other village's
    assert "person_keys" not in got_c[-1][1] and "admin_path" not in got_c[-1][1]
    qishan.close()
    caoping.close()


async def test_kafka_down_answers_503(namespace: tuple[str, str], tmp_path: Path) -> None:
    es = AsyncElasticsearch([ES_URL])
    creds = Credentials.from_mapping({t: {"user": u, "admin_code": c} for t, (u, c) in TOKENS.items()})
    app = make_app(_settings(namespace, kafka_bootstrap=CLOSED_BOOTSTRAP), es, creds, AuditLog(tmp_path / "a.jsonl"))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.post("/api/incidents/inc-q-open/actions", json={"action": "accept"},
                                 headers=_h("tok-ops-qishan"))
        assert resp.status == 503, await resp.text()
        assert int(resp.headers["Retry-After"]) > 0
    finally:
        await client.close()
        await es.close()
