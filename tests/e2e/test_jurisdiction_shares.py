"""After indexing a simulated county day, each credential sees exactly its share of the incidents.

The incidents are computed offline by the pure pipeline (bench/screenshot.py: iter_deliveries →
Normalizer → CountyProcessor) and indexed through the real sink into an isolated index. For a
village, a town, the county and the prefecture credential, the search API (``make_app`` over the
real Elasticsearch) must return exactly the incident ids that the jurisdiction rule computes
offline — twice over: ``streams.web.jurisdiction.can_see`` on the raw incident records, and
membership of the credential's code in ``connectors.elasticsearch.documents.admin_paths`` of the
incident's codes — and ``/api/stats`` must count the same, per area too.
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from elasticsearch import AsyncElasticsearch

from bench.screenshot import drop_index, index_incidents, offline_incidents
from connectors.elasticsearch.documents import admin_paths
from streams.settings import Settings
from streams.web.audit import AuditLog
from streams.web.auth import Credentials
from streams.web.jurisdiction import can_see
from streams.web.server import make_app
from infra.processes import isolated_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

#: token → (user, admin code). Two villages of different towns, two towns, the county, the prefecture.
TOKENS = {
    "share-village-qishan-00001": ("柒山村网格员", "513221107201"),
    "share-village-jiangweicheng": ("姜维城村网格员", "513221100203"),
    "share-town-sanjiang-000001": ("三江镇综治中心", "513221107"),
    "share-town-weizhou-0000001": ("威州镇综治中心", "513221100"),
    "share-county-wenchuan-0001": ("汶川县综治中心", "513221"),
    "share-prefecture-aba-00001": ("阿坝州综治中心", "5132"),
}
OUTSIDE = "share-county-other-000001"  # another county of the prefecture: sees nothing of this day
TOKENS[OUTSIDE] = ("理县综治中心", "513222")


def codes_of(incident: dict[str, Any]) -> list[str | None]:
    """Every admin code an incident touches (owner, county, towns, villages, events)."""
    return [incident.get("admin_code"), incident.get("county_code"), *(incident.get("town_codes") or []),
            *(incident.get("village_codes") or []), *(e.get("admin_code") for e in incident["events"])]


@pytest.fixture(scope="module")
def day(stack: Settings, sim_day: Path) -> Iterator[tuple[Settings, list[dict[str, Any]]]]:
    settings = isolated_settings(stack, registry=sim_day / "registry.csv",
                                 es_index_prefix=f"pingan-test-shares-{uuid.uuid4().hex[:8]}")
    incidents = offline_incidents(sim_day, settings)
    try:
        assert index_incidents(settings, incidents) == len(incidents) > 500
        yield settings, incidents
    finally:
        drop_index(settings)


@pytest.fixture()
async def client(day: tuple[Settings, list[dict[str, Any]]], tmp_path: Path) -> AsyncIterator[TestClient]:
    settings, _ = day
    es = AsyncElasticsearch([settings.es_url])
    creds = Credentials.from_mapping({t: {"user": u, "admin_code": c} for t, (u, c) in TOKENS.items()})
    c = TestClient(TestServer(make_app(settings, es, creds, AuditLog(tmp_path / "audit.jsonl"))))
    await c.start_server()
    try:
        yield c
    finally:
        await c.close()
        await es.close()


async def all_ids(client: TestClient, token: str, **params: str) -> tuple[list[str], int]:
    """Every incident id the API lists for `token` (all pages), and the reported total."""
    ids: list[str] = []
    page, total = 1, None
    while True:
        resp = await client.get("/api/incidents", params={"page": str(page), "size": "100", **params},
                                headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        total = body["total"] if total is None else total
        assert body["total"] == total  # stable across pages
        ids += [i["incident_id"] for i in body["items"]]
        if len(body["items"]) < 100:
            return ids, total
        page += 1


@pytest.mark.parametrize("token", list(TOKENS), ids=[c for _, c in TOKENS.values()])
async def test_each_credential_sees_exactly_its_share(day: tuple[Settings, list[dict[str, Any]]],
                                                      client: TestClient, token: str) -> None:
    _, incidents = day
    user, code = TOKENS[token]
    by_rule = {i["incident_id"] for i in incidents if can_see(code, i)}
    by_paths = {i["incident_id"] for i in incidents if code in admin_paths(codes_of(i))}
    assert by_rule == by_paths

    ids, total = await all_ids(client, token)
    assert len(ids) == len(set(ids)) == total  # no page overlap, nothing missing
    assert set(ids) == by_rule
    stats = await (await client.get("/api/stats", headers={"Authorization": f"Bearer {token}"})).json()
    assert stats["total"] == len(by_rule)
    assert sum(stats["by_kind"].values()) == len(by_rule)
    # per area (each area at or below the credential): as many as the offline incidents touching it
    for level in ("by_county", "by_town", "by_village"):
        for bucket in stats[level]:
            assert bucket["code"].startswith(code), (level, bucket)
            expected = sum(1 for i in incidents if can_see(code, i) and can_see(bucket["code"], i))
            assert bucket["count"] == expected, (level, bucket)
    if code == "513222":
        assert not ids and stats["total"] == 0
    else:
        assert ids, f"{code} should have incidents in the simulated day"


async def test_shares_nest(day: tuple[Settings, list[dict[str, Any]]], client: TestClient) -> None:
    """village ⊂ its town ⊂ county = prefecture; the two towns' shares are disjoint within the county."""
    got = {code: set((await all_ids(client, token))[0]) for token, (_, code) in TOKENS.items()}
    _, incidents = day
    assert got["513221107201"] <= got["513221107"] <= got["513221"]
    assert got["513221100203"] <= got["513221100"] <= got["513221"]
    assert got["513221"] == got["5132"] == {i["incident_id"] for i in incidents}
    # an incident spanning two towns is in both shares; the rest split cleanly
    both = got["513221107"] & got["513221100"]
    assert all({"513221107", "513221100"} <= set(admin_paths(codes_of(i)))
               for i in incidents if i["incident_id"] in both)


async def test_detail_outside_share_is_404(day: tuple[Settings, list[dict[str, Any]]], client: TestClient) -> None:
    _, incidents = day
    village_token, village = next((t, c) for t, (_, c) in TOKENS.items() if c == "513221107201")
    outside = next(i["incident_id"] for i in incidents if not can_see(village, i))
    inside = next(i["incident_id"] for i in incidents if can_see(village, i))
    headers = {"Authorization": f"Bearer {village_token}"}
    assert (await client.get(f"/api/incidents/{outside}", headers=headers)).status == 404
    assert (await client.get(f"/api/incidents/{inside}", headers=headers)).status == 200
