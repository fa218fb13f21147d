"""Search API against the real Elasticsearch 7.10 node: jurisdiction scoping, leaks, CJK, geo, audit.

Indexes a handful of incidents for different villages/towns into a throw-away
``pingan-test-<uuid>-incidents-v000001`` (alias ``pingan-test-<uuid>-incidents``) through the real
`IncidentSink`, then talks to `make_app` through aiohttp's TestServer/TestClient.
"""
from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from elasticsearch import AsyncElasticsearch

from connectors.elasticsearch.admin import IndexNames, drop_all, ensure_incident_index
from connectors.elasticsearch.sink import IncidentSink
from streams.domain.identity import PersonKeyer, id_check_char
from streams.settings import Settings
from streams.web.audit import AuditLog, verify_chain
from streams.web.auth import Credentials
from streams.web.server import make_app

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

ES_URL = Settings().es_url
SECRET = "test-person-key-secret"
ID_NUMBER = "51322119900101123" + id_check_char("51322119900101123")
PHONE = "13812345678"
KEYER = PersonKeyer(SECRET.encode())

TOKENS = {
    "tok-village-qishan-000001": ("柒山村网格员", "513221107201"),
    "tok-village-qipangou-0001": ("七盘沟村网格员", "513221100201"),
    "tok-town-sanjiang-000001": ("三江镇综治中心", "513221107"),
    "tok-county-wenchuan-0001": ("汶川县综治中心", "513221"),
    "tok-prefecture-aba-00001": ("阿坝州综治中心", "5132"),
}


def _es_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"{ES_URL}/_cluster/health", timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def _ev(eid: str, village: str | None, text: str, t: int, lat: float | None = None, lon: float | None = None,
        kind: str = "dispute", source: str = "grid") -> dict:
    return {"event_id": eid, "source": source, "kind": kind, "occurred_at": t, "text": text, "lat": lat,
            "lon": lon, "admin_code": village, "persons": ["王某学"]}


def _inc(inc_id: str, kind: str, tier: str, owner: str, events: list[dict], *, status: str = "open",
         person_keys: tuple[str, ...] = (), vehicle_keys: tuple[str, ...] = (), links: list | None = None) -> dict:
    villages = sorted({e["admin_code"] for e in events if e["admin_code"] and len(e["admin_code"]) == 12})
    return {
        "incident_id": inc_id, "status": status, "merged_into": None, "kind": kind, "severity": 2, "tier": tier,
        "admin_code": owner, "county_code": "513221", "town_codes": sorted({v[:9] for v in villages}),
        "village_codes": villages, "first_seen": min(e["occurred_at"] for e in events),
        "last_seen": max(e["occurred_at"] for e in events), "event_ids": sorted(e["event_id"] for e in events),
        "events": events, "links": links or [], "person_keys": list(person_keys),
        "vehicle_keys": list(vehicle_keys), "version": 1, "updated_at": max(e["occurred_at"] for e in events),
    }


T0 = 1_714_521_600_000  # 2024-05-01 08:00 +08:00
INCIDENTS = [
    _inc("inc-a-qishan", "dispute", "village", "513221107201",
         [_ev("grid:A1", "513221107201", "柒山村邻里因宅基地边界发生纠纷", T0, 31.1080, 103.3420)],
         person_keys=(KEYER.id_key(ID_NUMBER), KEYER.phone_key(PHONE))),
    _inc("inc-b-caoping", "theft", "village", "513221107202",
         [_ev("alarm110:B1", "513221107202", "草坪村村民报告摩托车被盗", T0 + 3_600_000, 31.0850, 103.3700,
              kind="theft", source="alarm110")],
         vehicle_keys=(KEYER.plate_key("川UA1235"),)),
    _inc("inc-c-qipangou", "rescue", "village", "513221100201",
         [_ev("alarm110:C1", "513221100201", "七盘沟河边有人落水，群众报警求助", T0 + 7_200_000, 31.4560, 103.5720,
              kind="rescue", source="alarm110")]),
    _inc("inc-d-buwa", "dispute", "village", "513221100202",
         [_ev("mediation:D1", "513221100202", "布瓦村家庭纠纷调解成功", T0 + 86_400_000, 31.4960, 103.6030,
              source="mediation")], status="closed"),
    _inc("inc-e-sanjiang-cross", "dispute", "town", "513221107",
         [_ev("grid:E1", "513221107201", "柒山村与草坪村山林土地纠纷", T0 + 600_000, 31.1082, 103.3425),
          _ev("grid:E2", "513221107202", "草坪村村民称对方毁坏林木", T0 + 1_200_000, 31.0851, 103.3701)],
         links=[{"link_id": "l-e", "event_a": "grid:E1", "event_b": "grid:E2", "score": 0.8,
                 "reasons": ["同一地址 草坪村3组"], "rule": "grid_grid", "county_code": "513221",
                 "created_at": T0 + 1_200_100}]),
    _inc("inc-g-county", "mass_gathering", "county", "513221",
         [_ev("alarm110:G1", None, "县城广场发生群体性聚集", T0 + 10_000_000, kind="mass_gathering",
              source="alarm110")]),
]
MERGED = dict(INCIDENTS[0], incident_id="inc-f-retired", status="merged", merged_into="inc-a-qishan")


@pytest.fixture(scope="module")
def index_prefix() -> Iterator[str]:
    """A populated throw-away index behind its alias; deleted afterwards."""
    if not _es_reachable():
        pytest.skip(f"Elasticsearch not reachable at {ES_URL} (start it with `pingan infra up`)")
    prefix = f"pingan-test-{uuid.uuid4().hex[:10]}"
    names = IndexNames(prefix)

    async def setup() -> None:
        es = AsyncElasticsearch([ES_URL])
        try:
            await ensure_incident_index(es, names, "1s")
            sink = IncidentSink(es, names.alias, refresh=True)
            await sink.setup()
            for inc in INCIDENTS:
                sink.add(inc)
            sink.add(dict(MERGED, status="open", merged_into=None))  # first live …
            assert (await sink.flush()).indexed == len(INCIDENTS) + 1
            sink.add(MERGED)  # … then merged away: deleted
            assert (await sink.flush()).deleted == 1
        finally:
            await es.close()

    async def teardown() -> None:
        es = AsyncElasticsearch([ES_URL])
        try:
            await drop_all(es, names)
        finally:
            await es.close()

    asyncio.run(setup())
    yield prefix
    asyncio.run(teardown())


@pytest.fixture()
async def api(index_prefix: str, tmp_path: Path) -> AsyncIterator[tuple[TestClient, Path]]:
    settings = Settings(es_index_prefix=index_prefix, person_key_secret=SECRET)
    es = AsyncElasticsearch([ES_URL])
    creds = Credentials.from_mapping({t: {"user": u, "admin_code": c} for t, (u, c) in TOKENS.items()})
    audit_path = tmp_path / "audit.jsonl"
    client = TestClient(TestServer(make_app(settings, es, creds, AuditLog(audit_path))))
    await client.start_server()
    try:
        yield client, audit_path
    finally:
        await client.close()
        await es.close()


def _h(token_prefix: str) -> dict[str, str]:
    token = next(t for t in TOKENS if t.startswith(token_prefix))
    return {"Authorization": f"Bearer {token}"}


async def _ids(client: TestClient, who: str, **params: str) -> set[str]:
    resp = await client.get("/api/incidents", params=params, headers=_h(who))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["total"] == len(body["items"])
    return {i["incident_id"] for i in body["items"]}


async def test_each_level_sees_its_jurisdiction(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    assert await _ids(client, "tok-village-qishan") == {"inc-a-qishan", "inc-e-sanjiang-cross"}
    assert await _ids(client, "tok-village-qipangou") == {"inc-c-qipangou"}
    assert await _ids(client, "tok-town-sanjiang") == {"inc-a-qishan", "inc-b-caoping", "inc-e-sanjiang-cross"}
    everything = {i["incident_id"] for i in INCIDENTS}
    assert await _ids(client, "tok-county") == everything  # the merged-away id is gone
    assert await _ids(client, "tok-prefecture") == everything


async def test_auth_required(api: tuple[TestClient, Path]) -> None:
    client, audit = api
    for headers in ({}, {"Authorization": "Bearer nope-nope-nope-nope"}, {"Authorization": "Basic abc"}):
        resp = await client.get("/api/incidents", headers=headers)
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.post("/api/lookup", json={"phone": PHONE})).status == 401
    assert (await client.get("/api/incidents/inc-a-qishan")).status == 401
    # denied requests are audited: one full record per client per second, the rest counted
    recs = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    assert [(r["action"], r["status"], r["user"]) for r in recs] == [("search", 401, "")]
    assert recs[0]["filter"]["reason"] == "no bearer token" and "nope-nope" not in audit.read_text()


async def test_admin_code_param_only_narrows(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    assert await _ids(client, "tok-village-qishan", admin_code="513221100201") == set()
    assert await _ids(client, "tok-village-qishan", admin_code="513221100") == set()
    assert await _ids(client, "tok-village-qishan", admin_code="513221") == {"inc-a-qishan", "inc-e-sanjiang-cross"}
    assert await _ids(client, "tok-town-sanjiang", admin_code="513221107202") == {"inc-b-caoping",
                                                                                 "inc-e-sanjiang-cross"}
    # a village credential cannot ask "which of my incidents also touch 草坪村" (issue 14): nothing
    assert await _ids(client, "tok-village-qishan", admin_code="513221107202") == set()
    resp = await client.get("/api/incidents", params={"admin_code": "*"}, headers=_h("tok-village-qishan"))
    assert resp.status == 400


async def test_crafted_q_leaks_nothing(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    for q in ["admin_code:513221100201 OR *", "*", "七盘沟", "落水", '{"match_all": {}}',
              "admin_path:513221100201", ") OR (admin_path:*", "513221100201"]:
        got = await _ids(client, "tok-village-qishan", q=q)
        assert got <= {"inc-a-qishan", "inc-e-sanjiang-cross"}, q
        assert "inc-c-qipangou" not in got
    # the same words do find the incident for the jurisdiction that owns it
    assert await _ids(client, "tok-village-qipangou", q="落水") == {"inc-c-qipangou"}


async def test_q_does_not_reveal_words_of_hidden_events(api: tuple[TestClient, Path]) -> None:
    """inc-e is visible to 柒山村 through its event E1; the words of E2 (草坪村) must not find it there."""
    client, _ = api
    assert await _ids(client, "tok-village-qishan", q="毁坏林木") == set()
    assert await _ids(client, "tok-village-qishan", q="山林土地") == {"inc-e-sanjiang-cross"}
    assert await _ids(client, "tok-town-sanjiang", q="毁坏林木") == {"inc-e-sanjiang-cross"}
    assert await _ids(client, "tok-county", q="毁坏林木") == {"inc-e-sanjiang-cross"}


async def test_other_areas_ids_answer_404_like_unknown(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    other = await client.get("/api/incidents/inc-c-qipangou", headers=_h("tok-village-qishan"))
    unknown = await client.get("/api/incidents/inc-does-not-exist", headers=_h("tok-village-qishan"))
    assert other.status == unknown.status == 404
    assert await other.json() == await unknown.json()
    retired = await client.get("/api/incidents/inc-f-retired", headers=_h("tok-county"))
    assert retired.status == 404
    ok = await client.get("/api/incidents/inc-c-qipangou", headers=_h("tok-county"))
    assert ok.status == 200 and (await ok.json())["events"][0]["text"] == "七盘沟河边有人落水，群众报警求助"


async def test_detail_timeline_links_and_redaction(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    town = await (await client.get("/api/incidents/inc-e-sanjiang-cross", headers=_h("tok-town"))).json()
    assert [e["event_id"] for e in town["events"]] == ["grid:E1", "grid:E2"]
    assert town["links"][0]["reasons"] == ["同一地址 草坪村3组"]
    assert town["tier"] == "town" and town["status"] == "open" and "hidden_events" not in town
    village = await (await client.get("/api/incidents/inc-e-sanjiang-cross",
                                      headers=_h("tok-village-qishan"))).json()
    assert [e["event_id"] for e in village["events"]] == ["grid:E1"]
    assert village["links"] == [] and "hidden_events" not in village  # not even how many are hidden
    # the incident as its visible event makes it: a village matter of 柒山村, not the town's (issue 14)
    assert (village["tier"], village["admin_code"], village["first_seen"], village["last_seen"]) == (
        "village", "513221107201", T0 + 600_000, T0 + 600_000)
    assert (town["tier"], town["admin_code"], town["last_seen"]) == ("town", "513221107", T0 + 1_200_000)
    assert village["village_codes"] == ["513221107201"]
    assert "草坪村村民称" not in json.dumps(village, ensure_ascii=False)
    for body in (town, village):
        for private in ("person_keys", "vehicle_keys", "admin_path", "search_text"):
            assert private not in body


async def test_chinese_full_text_simplified_and_traditional(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    expected = {"inc-a-qishan", "inc-d-buwa", "inc-e-sanjiang-cross"}
    assert await _ids(client, "tok-county", q="纠纷") == expected
    assert await _ids(client, "tok-county", q="糾紛") == expected
    assert await _ids(client, "tok-county", q="宅基地") == {"inc-a-qishan"}
    assert await _ids(client, "tok-county", q="盗") == {"inc-b-caoping"}  # one character (unigram subfield)
    assert await _ids(client, "tok-county", q="纠纷", status="closed") == {"inc-d-buwa"}
    assert await _ids(client, "tok-county", kind="theft,rescue") == {"inc-b-caoping", "inc-c-qipangou"}
    assert await _ids(client, "tok-county", tier="town") == {"inc-e-sanjiang-cross"}


async def test_time_and_geo_filters(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    assert await _ids(client, "tok-county", near="31.1080,103.3420", radius_m="500") == {
        "inc-a-qishan", "inc-e-sanjiang-cross"}
    assert await _ids(client, "tok-county", near="31.4560,103.5720", radius_m="100") == {"inc-c-qipangou"}
    assert await _ids(client, "tok-county", bbox="31.4,103.5,31.6,103.7") == {"inc-c-qipangou", "inc-d-buwa"}
    assert await _ids(client, "tok-village-qishan", bbox="31.4,103.5,31.6,103.7") == set()
    assert await _ids(client, "tok-county", **{"from": "2024-05-02"}) == {"inc-d-buwa"}
    assert "inc-d-buwa" not in await _ids(client, "tok-county", to="2024-05-01")


async def test_lookup_hashes_server_side_and_never_logs_clear_values(api: tuple[TestClient, Path]) -> None:
    client, audit = api
    resp = await client.post("/api/lookup", json={"id_number": ID_NUMBER}, headers=_h("tok-village-qishan"))
    assert resp.status == 200 and {i["incident_id"] for i in (await resp.json())["items"]} == {"inc-a-qishan"}
    resp = await client.post("/api/lookup", json={"phone": "+86 138-1234-5678"}, headers=_h("tok-town"))
    assert {i["incident_id"] for i in (await resp.json())["items"]} == {"inc-a-qishan"}
    resp = await client.post("/api/lookup", json={"plate": "川U·A1235"}, headers=_h("tok-county"))
    assert {i["incident_id"] for i in (await resp.json())["items"]} == {"inc-b-caoping"}
    resp = await client.post("/api/lookup", json={"id_number": ID_NUMBER}, headers=_h("tok-village-qipangou"))
    assert (await resp.json())["total"] == 0
    bad = await client.post("/api/lookup", json={"id_number": "123"}, headers=_h("tok-county"))
    assert bad.status == 400 and "123" not in await bad.text()
    log_text = audit.read_text(encoding="utf-8")
    assert ID_NUMBER not in log_text and PHONE not in log_text and "A1235" not in log_text
    assert KEYER.id_key(ID_NUMBER) in log_text  # the pseudonymous key is what is audited


async def test_every_search_is_audited_in_a_valid_chain(api: tuple[TestClient, Path]) -> None:
    client, audit = api
    await client.get("/api/incidents", params={"q": "纠纷 513221199001011234"}, headers=_h("tok-town"))
    await client.get("/api/incidents/inc-c-qipangou", headers=_h("tok-village-qishan"))
    await client.get("/api/stats", headers=_h("tok-county"))
    recs = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    assert [r["action"] for r in recs] == ["search", "detail", "stats"]
    assert recs[0]["user"] == "三江镇综治中心" and recs[0]["admin_code"] == "513221107"
    # the ID number is not in any text (operator and → no hit) and is masked in the audit record
    assert recs[0]["result_count"] == 0 and "513221199001011234" not in json.dumps(recs[0])
    assert recs[0]["filter"]["q"].startswith("纠纷 513")
    assert recs[1]["status"] == 404 and recs[1]["result_count"] == 0
    assert verify_chain(audit).ok


async def test_stats_per_area_and_kind(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    county = await (await client.get("/api/stats", headers=_h("tok-county"))).json()
    assert county["total"] == 6
    towns = {b["code"]: b for b in county["by_town"]}
    assert towns["513221107"]["count"] == 3 and towns["513221107"]["name"] == "三江镇"
    assert towns["513221107"]["by_kind"] == {"dispute": 2, "theft": 1}
    assert towns["513221100"]["count"] == 2
    assert county["by_kind"]["dispute"] == 3 and county["by_tier"]["county"] == 1
    village = await (await client.get("/api/stats", headers=_h("tok-village-qishan"))).json()
    assert village["total"] == 2
    assert [b["code"] for b in village["by_village"]] == ["513221107201"]  # not the neighbour it touches
    assert village["by_town"] == []
    assert village["by_tier"] == {"village": 2} and village["by_kind"] == {"dispute": 2}


async def test_page_health_and_static(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    assert (await client.get("/healthz")).status == 200
    page = await client.get("/")
    html = await page.text()
    assert page.status == 200 and "平安总线" in html and "综治中心事件检索" in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        resp = await client.get(asset)
        assert resp.status == 200
        assert "http://" not in await resp.text() and "https://" not in await resp.text()
    assert "https://" not in html and "http://" not in html
    assert "openapi: 3.0" in await (await client.get("/api/openapi.yaml")).text()
    resp = await client.get("/api/incidents", params={"size": "101"}, headers=_h("tok-county"))
    assert resp.status == 400
