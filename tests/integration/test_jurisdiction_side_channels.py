"""Jurisdiction by visible events only (issue 14), against the real Elasticsearch 7.10 node.

A village credential (柒山村) must learn nothing about the events of a cross-area incident that lie
outside its area: not where they are (``near``/``bbox``), not when (``from``/``to``, first/last
seen, sort order), not what (kind, severity, tier, owner, stats). One test per vector on a small
fixed set of incidents, then a property-style test: incidents built by the real pipeline
(`IncidentState`) from seeded random events are indexed twice — with every event, and without the
events a credential may not see — and the credential's answers (ids, every returned field, detail
views and stats) are identical on both indices.

The one field deliberately not compared is ``hidden_events`` (the page says "另有 N 条事件不在本辖区"):
it discloses how many events are hidden, by design, and nothing about them.
"""
from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from elasticsearch import AsyncElasticsearch

from connectors.elasticsearch.admin import IndexNames, drop_all, ensure_incident_index
from connectors.elasticsearch.sink import IncidentSink
from streams.domain import admin
from streams.domain.incidents import IncidentState
from streams.domain.kinds import DEFAULT_SEVERITY
from streams.settings import Settings
from streams.web.audit import AuditLog
from streams.web.auth import Credentials
from streams.web.server import make_app

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

ES_URL = Settings().es_url
VILLAGE, NEIGHBOUR, FAR = "513221107201", "513221107202", "513221100201"  # 柒山村, 草坪村 (same town), 七盘沟村
TOWN, COUNTY = "513221107", "513221"
TOKENS = {
    "tok-village-qishan-000001": ("柒山村网格员", VILLAGE),
    "tok-town-sanjiang-000001": ("三江镇综治中心", TOWN),
    "tok-county-wenchuan-0001": ("汶川县综治中心", COUNTY),
}
PLACES = {VILLAGE: (31.1080, 103.3420), NEIGHBOUR: (31.0850, 103.3700), FAR: (31.4560, 103.5720)}
NAMES = {VILLAGE: "柒山村", NEIGHBOUR: "草坪村", FAR: "七盘沟"}
PREFIX = {VILLAGE: "a", NEIGHBOUR: "m", FAR: "z"}  # the smallest event id (→ incident id) is the most visible
WORDS = {"dispute": "纠纷", "fire": "山火", "theft": "被盗", "rescue": "落水", "traffic": "车祸",
         "mass_gathering": "聚集", "help": "求助"}
T0 = 1_714_521_600_000  # 2024-05-01 08:00 +08:00
HOUR = 3_600_000


def event(eid: str, code: str, t: int, kind: str, *, severity: int | None = None,
          at: tuple[float, float] | None = None, text: str | None = None) -> dict[str, Any]:
    """A canonical event as the correlate stage sees it. Visible events carry their kind's default
    severity: incident records do not carry per-event severities yet (see documents.area_view)."""
    lat, lon = at or PLACES[code]
    return {"event_id": eid, "source": "grid", "kind": kind, "severity": severity or DEFAULT_SEVERITY[kind],
            "occurred_at": t, "text": text or f"{NAMES[code]}{WORDS[kind]}", "persons": [],
            "location": {"admin_code": code, "lat": lat, "lon": lon}}


def incidents_of(groups: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The live incident records the real pipeline builds: each group's events linked in a chain."""
    state = IncidentState()
    for group in groups:
        ordered = sorted(group, key=lambda e: e["event_id"])
        for ev in ordered:
            state.apply_event(ev)
        for a, b in zip(ordered, ordered[1:]):
            state.apply_link({"link_id": f"l-{a['event_id']}-{b['event_id']}", "event_a": a["event_id"],
                              "event_b": b["event_id"], "score": 0.9, "reasons": ["同一地点"], "rule": "test",
                              "county_code": COUNTY, "created_at": max(a["occurred_at"], b["occurred_at"])})
    return list(state.live().values())


def visible_only(groups: list[list[dict[str, Any]]], area: str) -> list[list[dict[str, Any]]]:
    """The same groups as if the events outside `area` had never existed."""
    kept = [[e for e in g if admin.within(e["location"]["admin_code"], area)] for g in groups]
    return [g for g in kept if g]


# ----------------------------------------------------------------------------- fixed incidents

V1 = event("a-v1", VILLAGE, T0, "dispute", text="柒山村邻里因宅基地发生纠纷")
H1 = event("m-h1", NEIGHBOUR, T0 + 5 * HOUR, "fire", severity=4, text="草坪村后山起火")
V2 = event("a-v2", VILLAGE, T0 + 2 * HOUR, "dispute", text="柒山村两户因灌溉用水争执")
H3 = event("z-h3", FAR, T0 + 3 * HOUR, "rescue", text="七盘沟河边有人落水")
FIXED = [[V1, H1], [V2], [H3]]  # cross-area (village sees V1 only), village-only, hidden-only


async def _populate(es: AsyncElasticsearch, prefix: str, incidents: list[dict[str, Any]]) -> None:
    names = IndexNames(prefix)
    await ensure_incident_index(es, names, "1s")
    sink = IncidentSink(es, names.alias, refresh=True)
    await sink.setup()
    for inc in incidents:
        sink.add(inc)
    assert (await sink.flush()).indexed == len(incidents)


@pytest.fixture(scope="module")
def indices() -> Iterator[dict[str, str]]:
    """Index prefixes: ``fixed``; ``with`` (random incidents, every event) and ``without-<area>``
    (the same incidents without the events `area` may not see); all deleted afterwards."""
    async def reachable() -> bool:
        es = AsyncElasticsearch([ES_URL])
        try:
            return bool(await es.ping())
        finally:
            await es.close()

    if not asyncio.run(reachable()):
        pytest.skip(f"Elasticsearch not reachable at {ES_URL} (start it with `pingan infra up`)")
    run = uuid.uuid4().hex[:10]
    groups = random_groups(random.Random(14))
    sets = {"fixed": incidents_of(FIXED), "with": incidents_of(groups),
            f"without-{VILLAGE}": incidents_of(visible_only(groups, VILLAGE)),
            f"without-{TOWN}": incidents_of(visible_only(groups, TOWN))}
    prefixes = {name: f"pingan-test-{run}-{name}" for name in sets}

    async def setup() -> None:
        es = AsyncElasticsearch([ES_URL])
        try:
            for name, incs in sets.items():
                await _populate(es, prefixes[name], incs)
        finally:
            await es.close()

    async def teardown() -> None:
        es = AsyncElasticsearch([ES_URL])
        try:
            for prefix in prefixes.values():
                await drop_all(es, IndexNames(prefix))
        finally:
            await es.close()

    try:
        asyncio.run(setup())
        yield prefixes
    finally:
        asyncio.run(teardown())


async def _client(prefix: str, tmp_path: Any) -> tuple[TestClient, AsyncElasticsearch]:
    es = AsyncElasticsearch([ES_URL])
    creds = Credentials.from_mapping({t: {"user": u, "admin_code": c} for t, (u, c) in TOKENS.items()})
    app = make_app(Settings(es_index_prefix=prefix), es, creds, AuditLog(tmp_path / f"{uuid.uuid4().hex}.jsonl"))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, es


@pytest.fixture()
async def fixed(indices: dict[str, str], tmp_path: Any) -> AsyncIterator[TestClient]:
    client, es = await _client(indices["fixed"], tmp_path)
    try:
        yield client
    finally:
        await client.close()
        await es.close()


def _h(code: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {next(t for t, (_, c) in TOKENS.items() if c == code)}"}


async def _get(client: TestClient, path: str, code: str, **params: str) -> Any:
    resp = await client.get(path, params=params, headers=_h(code))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _items(client: TestClient, code: str, **params: str) -> list[dict[str, Any]]:
    body = await _get(client, "/api/incidents", code, **params)
    assert body["total"] == len(body["items"])
    return body["items"]


async def _ids(client: TestClient, code: str, **params: str) -> list[str]:
    return [i["incident_id"] for i in await _items(client, code, **params)]


INC1 = incidents_of([[V1, H1]])[0]["incident_id"]
INC2 = incidents_of([[V2]])[0]["incident_id"]
INC3 = incidents_of([[H3]])[0]["incident_id"]


# ----------------------------------------------------------------------------- one test per vector

async def test_near_a_hidden_event_finds_nothing(fixed: TestClient) -> None:
    """Before: ``near=<hidden event>&radius_m=20`` returned the incident (geo on every event)."""
    hidden = f"{PLACES[NEIGHBOUR][0]},{PLACES[NEIGHBOUR][1]}"
    assert await _ids(fixed, VILLAGE, near=hidden, radius_m="20") == []
    assert await _ids(fixed, VILLAGE, bbox="31.08,103.36,31.09,103.38") == []
    visible = f"{PLACES[VILLAGE][0]},{PLACES[VILLAGE][1]}"
    assert sorted(await _ids(fixed, VILLAGE, near=visible, radius_m="20")) == sorted([INC1, INC2])
    # the town sees 草坪村, and the county is unchanged
    assert await _ids(fixed, TOWN, near=hidden, radius_m="20") == [INC1]
    assert await _ids(fixed, COUNTY, near=hidden, radius_m="20") == [INC1]


async def test_time_of_a_hidden_event_finds_nothing(fixed: TestClient) -> None:
    """Before: ``from=to=<hidden event's time>`` matched on the whole incident's time range."""
    at = str(H1["occurred_at"])
    assert await _ids(fixed, VILLAGE, **{"from": at, "to": at}) == []
    assert await _ids(fixed, VILLAGE, **{"from": str(T0 + 4 * HOUR), "to": str(T0 + 6 * HOUR)}) == []
    assert await _ids(fixed, VILLAGE, **{"from": str(T0 + 3 * HOUR)}) == []  # last visible event is before
    assert await _ids(fixed, VILLAGE, **{"from": str(T0), "to": str(T0)}) == [INC1]
    assert await _ids(fixed, TOWN, **{"from": at, "to": at}) == [INC1]
    assert await _ids(fixed, COUNTY, **{"from": at, "to": at}) == [INC1]


async def test_first_and_last_seen_and_sort_from_visible_events(fixed: TestClient) -> None:
    """Before: first/last seen (and updated_at, version) spanned the hidden event, and sorting by
    last_seen put the cross-area incident first because of its hidden event."""
    items = {i["incident_id"]: i for i in await _items(fixed, VILLAGE)}
    assert (items[INC1]["first_seen"], items[INC1]["last_seen"]) == (T0, T0)
    detail = await _get(fixed, f"/api/incidents/{INC1}", VILLAGE)
    assert (detail["first_seen"], detail["last_seen"], detail["updated_at"]) == (T0, T0, T0)
    assert detail["version"] == 1 and detail["hidden_events"] == 1 and detail["links"] == []
    assert await _ids(fixed, VILLAGE, sort="last_seen") == [INC2, INC1]
    assert await _ids(fixed, VILLAGE, sort="first_seen") == [INC2, INC1]
    town = await _get(fixed, f"/api/incidents/{INC1}", TOWN)
    assert (town["first_seen"], town["last_seen"]) == (T0, T0 + 5 * HOUR)
    assert await _ids(fixed, TOWN, sort="last_seen") == [INC1, INC2]


async def test_kind_severity_tier_and_owner_from_visible_events(fixed: TestClient) -> None:
    """Before: the village saw kind fire, severity 4, tier county, owner 三江镇 — all from the
    hidden fire in 草坪村 — and kind=fire / tier=county / admin_code=草坪村 found the incident."""
    items = {i["incident_id"]: i for i in await _items(fixed, VILLAGE)}
    shown = {k: items[INC1][k] for k in ("kind", "severity", "tier", "admin_code", "admin_name", "event_count")}
    assert shown == {"kind": "dispute", "severity": 2, "tier": "village", "admin_code": VILLAGE,
                     "admin_name": "柒山村", "event_count": 1}
    detail = await _get(fixed, f"/api/incidents/{INC1}", VILLAGE)
    assert (detail["kind"], detail["severity"], detail["tier"], detail["admin_code"]) == (
        "dispute", 2, "village", VILLAGE)
    for params in ({"kind": "fire"}, {"tier": "county"}, {"tier": "town"}, {"admin_code": NEIGHBOUR},
                   {"q": "起火"}):
        assert await _ids(fixed, VILLAGE, **params) == [], params
    assert sorted(await _ids(fixed, VILLAGE, kind="dispute")) == sorted([INC1, INC2])
    assert sorted(await _ids(fixed, VILLAGE, tier="village")) == sorted([INC1, INC2])
    # the town sees both events: the incident as the pipeline built it
    town = {i["incident_id"]: i for i in await _items(fixed, TOWN)}
    assert (town[INC1]["kind"], town[INC1]["severity"], town[INC1]["tier"], town[INC1]["admin_code"]) == (
        "fire", 4, "county", TOWN)
    assert await _ids(fixed, TOWN, kind="fire") == [INC1]
    assert await _ids(fixed, TOWN, admin_code=NEIGHBOUR) == [INC1]
    assert (await _ids(fixed, TOWN, sort="severity"))[:1] == [INC1]
    county = {i["incident_id"]: i for i in await _items(fixed, COUNTY)}
    assert set(county) == {INC1, INC2, INC3} and county[INC1]["kind"] == "fire"


async def test_stats_count_visible_events_only(fixed: TestClient) -> None:
    """Before: the village's stats counted the cross-area incident as a county-tier fire."""
    village = await _get(fixed, "/api/stats", VILLAGE)
    assert village["total"] == 2
    assert village["by_kind"] == {"dispute": 2} and village["by_tier"] == {"village": 2}
    assert [(b["code"], b["count"], b["by_kind"]) for b in village["by_village"]] == [(VILLAGE, 2, {"dispute": 2})]
    assert village["by_town"] == [] and village["by_county"] == []
    assert (await _get(fixed, "/api/stats", VILLAGE, kind="fire"))["total"] == 0
    at = str(H1["occurred_at"])
    assert (await _get(fixed, "/api/stats", VILLAGE, **{"from": at, "to": at}))["total"] == 0
    town = await _get(fixed, "/api/stats", TOWN)
    assert town["by_kind"] == {"dispute": 1, "fire": 1} and town["by_tier"] == {"county": 1, "village": 1}
    county = await _get(fixed, "/api/stats", COUNTY)
    assert county["total"] == 3 and county["by_kind"] == {"dispute": 1, "fire": 1, "rescue": 1}


# ----------------------------------------------------------------------------- property-style test

def random_groups(rng: random.Random, n: int = 40) -> list[list[dict[str, Any]]]:
    """Seeded random incidents over 柒山村, 草坪村 and 七盘沟: 1–4 events each, random kinds,
    times within three days, points within ~300 m of the village centre; 七盘沟's events (hidden
    from both the village and the town) get random severities, so a hidden event may be critical.
    Events a tested credential sees keep their kind's default severity: incident records carry no
    per-event severity yet, so a cross-area view counts the default (see documents.area_view)."""
    groups = []
    for i in range(n):
        group = []
        for j in range(rng.randint(1, 4)):
            code = rng.choices([VILLAGE, NEIGHBOUR, FAR], weights=[3, 2, 2])[0]
            kind = rng.choice(sorted(WORDS))
            lat, lon = PLACES[code]
            at = (round(lat + rng.uniform(-0.003, 0.003), 6), round(lon + rng.uniform(-0.003, 0.003), 6))
            t = T0 + rng.randrange(0, 72 * HOUR, 60_000)
            sev = rng.randint(1, 4) if code == FAR else None
            group.append(event(f"{PREFIX[code]}-{i:03d}-{j}", code, t, kind, severity=sev, at=at))
        groups.append(group)
    return groups


def _queries(rng: random.Random) -> list[dict[str, str]]:
    """Request parameters aimed at every vector: each event's place and time, kinds, tiers,
    areas, words, sorts."""
    events = [e for g in random_groups(random.Random(14)) for e in g]
    out: list[dict[str, str]] = [{}, {"sort": "first_seen"}, {"sort": "severity"}, {"sort": "last_seen"},
                                 {"status": "open"}]
    for ev in rng.sample(events, 25):
        loc = ev["location"]
        out.append({"near": f"{loc['lat']},{loc['lon']}", "radius_m": "20"})
        out.append({"from": str(ev["occurred_at"]), "to": str(ev["occurred_at"])})
    out += [{"from": str(T0 + h * HOUR), "to": str(T0 + (h + 6) * HOUR), "sort": "first_seen"} for h in range(0, 72, 6)]
    out += [{"kind": k} for k in sorted(WORDS)] + [{"tier": t} for t in ("village", "town", "county")]
    out += [{"kind": "fire,rescue", "tier": "county", "sort": "severity"}]
    out += [{"admin_code": c} for c in (VILLAGE, NEIGHBOUR, FAR, TOWN, "513221100")]
    out += [{"bbox": f"{la - 0.01},{lo - 0.01},{la + 0.01},{lo + 0.01}"} for la, lo in PLACES.values()]
    out += [{"q": w} for w in [*WORDS.values(), *NAMES.values()]]
    return out


def _comparable(body: Any) -> Any:
    """A response without the by-design ``hidden_events`` count (see the module docstring)."""
    if isinstance(body, dict):
        return {k: _comparable(v) for k, v in body.items() if k != "hidden_events"}
    if isinstance(body, list):
        return [_comparable(v) for v in body]
    return body


@pytest.mark.parametrize("area", [VILLAGE, TOWN])
async def test_answers_identical_with_or_without_out_of_area_events(indices: dict[str, str], tmp_path: Any,
                                                                    area: str) -> None:
    with_client, with_es = await _client(indices["with"], tmp_path)
    without_client, without_es = await _client(indices[f"without-{area}"], tmp_path)
    try:
        seen: set[str] = set()
        checked = 0
        for params in _queries(random.Random(1)):
            a = _comparable(await _get(with_client, "/api/incidents", area, size="100", **params))
            b = _comparable(await _get(without_client, "/api/incidents", area, size="100", **params))
            if "q" in params:  # relevance: term statistics include every event's text; compare as sets
                a["items"].sort(key=lambda i: i["incident_id"])
                b["items"].sort(key=lambda i: i["incident_id"])
            assert a == b, params
            seen.update(i["incident_id"] for i in a["items"])
            checked += len(a["items"])
            sa = _comparable(await _get(with_client, "/api/stats", area, **params))
            sb = _comparable(await _get(without_client, "/api/stats", area, **params))
            assert sa == sb, params
        assert len(seen) >= 10 and checked >= 100  # the comparison is not vacuous
        for inc_id in sorted(seen):
            da = _comparable(await _get(with_client, f"/api/incidents/{inc_id}", area))
            db = _comparable(await _get(without_client, f"/api/incidents/{inc_id}", area))
            assert da == db, inc_id
        # and the with-index does hold hidden events for these answers (else nothing was tested)
        hidden = [i for i in (await _get(with_client, "/api/incidents", area, size="100"))["items"]
                  if i["hidden_events"]]
        assert len(hidden) >= 5
    finally:
        for client, es in ((with_client, with_es), (without_client, without_es)):
            await client.close()
            await es.close()
