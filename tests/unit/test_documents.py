"""Incident → index document / bulk action, and the index template (pure, no network)."""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest

from connectors.elasticsearch.documents import (
    DocumentError, admin_paths, area_view, event_visible, incident_action, incident_admin_path,
    incident_document,
)
from connectors.elasticsearch.templates import incident_mappings, incident_template

ROOT = Path(__file__).resolve().parents[2]


def _incident(**over: object) -> dict:
    inc = {
        "incident_id": "inc-0123456789abcdef", "status": "open", "merged_into": None, "kind": "dispute",
        "severity": 2, "tier": "town", "admin_code": "513221107", "county_code": "513221",
        "town_codes": ["513221107"], "village_codes": ["513221107202", "513221107201"],
        "first_seen": 1_714_521_600_000, "last_seen": 1_714_608_000_000,
        "event_ids": ["mediation:2024-17", "grid:G-1"],
        "events": [
            {"event_id": "mediation:2024-17", "source": "mediation", "kind": "dispute",
             "occurred_at": 1_714_608_000_000, "text": "无忧法治苑调解宅基地纠纷，达成协议", "lat": None, "lon": None,
             "admin_code": "513221107202", "persons": ["王某学", "李某"]},
            {"event_id": "grid:G-1", "source": "grid", "kind": "dispute", "occurred_at": 1_714_521_600_000,
             "text": "柒山村邻里因宅基地边界发生纠纷", "lat": 31.108, "lon": 103.342,
             "admin_code": "513221107201", "persons": ["王某学"]},
        ],
        "links": [{"link_id": "abc", "event_a": "grid:G-1", "event_b": "mediation:2024-17", "score": 0.9,
                   "reasons": ["同一身份证号密钥"], "rule": "grid_mediation", "county_code": "513221",
                   "created_at": 1_714_608_000_500}],
        "person_keys": ["id:" + "a" * 32, "phone:" + "b" * 32], "vehicle_keys": [],
        "version": 3, "updated_at": 1_714_608_001_000,
    }
    inc.update(over)
    return inc


def test_admin_path_of_an_incident_is_every_level_of_every_code_it_touches() -> None:
    inc = _incident()
    assert incident_admin_path(inc) == ["51", "5132", "513221", "513221107", "513221107201", "513221107202"]
    assert incident_admin_path({"events": [{"admin_code": "513221100203"}], "admin_code": None}) == [
        "51", "5132", "513221", "513221100", "513221100203"]
    assert admin_paths(["513221107201", "513221100203", None]) == [
        "51", "5132", "513221", "513221100", "513221107", "513221100203", "513221107201"]


def test_incident_document_fields() -> None:
    doc_id, doc = incident_document(_incident())
    assert doc_id == "inc-0123456789abcdef" == doc["incident_id"]
    # admin_path covers province, prefecture, county, town and both villages touched
    assert doc["admin_path"] == ["51", "5132", "513221", "513221107", "513221107201", "513221107202"]
    # events time-ordered; search text built from their texts in that order
    assert [e["event_id"] for e in doc["events"]] == ["grid:G-1", "mediation:2024-17"]
    assert doc["search_text"] == "柒山村邻里因宅基地边界发生纠纷\n无忧法治苑调解宅基地纠纷，达成协议"
    assert doc["events"][0]["location"] == {"lat": 31.108, "lon": 103.342}
    assert "location" not in doc["events"][1]
    assert doc["location"] == {"lat": 31.108, "lon": 103.342}
    assert doc["event_locations"] == [{"lat": 31.108, "lon": 103.342}]
    assert doc["event_count"] == 2 and doc["sources"] == ["grid", "mediation"]
    assert doc["village_codes"] == ["513221107201", "513221107202"]
    assert doc["links"][0]["reasons"] == ["同一身份证号密钥"]


def test_document_only_uses_mapped_fields() -> None:
    """The mapping is strict: every document field must be mapped (else a 400 at index time)."""
    _, doc = incident_document(_incident(extra_field="x"))
    props = incident_mappings()["properties"]
    assert set(doc) <= set(props)
    assert set(doc["events"][0]) <= set(props["events"]["properties"])
    assert set(doc["links"][0]) <= set(props["links"]["properties"])
    assert doc["views"] and set(doc["views"][0]) <= set(props["views"]["properties"])
    _, with_severity = incident_document(_incident(events=[dict(e, severity=3) for e in _incident()["events"]]))
    assert with_severity["events"][0]["severity"] == 3
    assert set(with_severity["events"][0]) <= set(props["events"]["properties"])


def test_area_views_come_from_visible_events_only() -> None:
    """Issue 14: each town/village the incident touches gets the incident as its events there
    make it; the incident-wide fields (over every event) are the view of an area seeing them all."""
    inc = _incident(kind="fire", severity=4, tier="county", events=[
        _incident()["events"][1],  # grid:G-1, 柒山村 dispute at first_seen
        {"event_id": "grid:H", "source": "grid", "kind": "fire", "occurred_at": 1_714_608_000_000,
         "text": "草坪村后山起火", "lat": 31.085, "lon": 103.37, "admin_code": "513221107202", "persons": [],
         "severity": 4},
    ], links=[{"link_id": "l", "event_a": "grid:G-1", "event_b": "grid:H"}])
    _, doc = incident_document(inc)
    views = {v["area"]: v for v in doc["views"]}
    assert sorted(views) == ["513221107", "513221107201", "513221107202"]
    assert views["513221107"] == {
        "area": "513221107", "kind": "fire", "severity": 4, "tier": "county", "status": "open",
        "admin_code": "513221107",
        "first_seen": 1_714_521_600_000, "last_seen": 1_714_608_000_000, "updated_at": 1_714_608_001_000,
        "version": 3, "event_count": 2, "person_keys": ["id:" + "a" * 32, "phone:" + "b" * 32], "vehicle_keys": []}
    assert views["513221107201"] == {
        "area": "513221107201", "kind": "dispute", "severity": 2, "tier": "village", "status": "open",
        "admin_code": "513221107201",
        "first_seen": 1_714_521_600_000, "last_seen": 1_714_521_600_000, "updated_at": 1_714_521_600_000,
        "version": 5, "event_count": 1, "person_keys": [], "vehicle_keys": []}  # 5 × 1 event, village rank 0
    # a per-event severity, when the summary carries one, is used; without, the kind's default
    assert views["513221107202"]["severity"] == 4 and views["513221107202"]["tier"] == "county"
    no_sev = dict(doc, events=[{k: v for k, v in e.items() if k != "severity"} for e in doc["events"]])
    assert area_view(no_sev, "513221107202")["severity"] == 4  # fire's default
    assert area_view(doc, "513221100201") is None  # nothing visible there
    # county-level codes get no view: the county sees every event
    assert all(len(a) >= 9 for a in views)


def test_view_keys_are_the_visible_events_keys() -> None:
    """Issue 14 (lookup): an area's view carries the keys of the events it sees only; a partial view
    of a record whose summaries carry no keys has none (never the incident-wide keys)."""
    a, b, plate = "id:" + "a" * 32, "phone:" + "b" * 32, "plate:" + "c" * 32
    events = [dict(_incident()["events"][1], person_keys=[a]),
              dict(_incident()["events"][0], person_keys=[b], vehicle_keys=[plate])]
    _, doc = incident_document(_incident(events=events, person_keys=[a, b], vehicle_keys=[plate],
                                         status="escalated"))
    views = {v["area"]: v for v in doc["views"]}
    assert (views["513221107201"]["person_keys"], views["513221107201"]["vehicle_keys"]) == ([a], [])
    assert (views["513221107202"]["person_keys"], views["513221107202"]["vehicle_keys"]) == ([b], [plate])
    assert (views["513221107"]["person_keys"], views["513221107"]["vehicle_keys"]) == ([a, b], [plate])
    assert doc["events"][0]["person_keys"] == [a] and doc["events"][1]["vehicle_keys"] == [plate]
    # escalated: the whole incident's status; a partial view is routed, not escalated
    assert views["513221107"]["status"] == "escalated" and views["513221107201"]["status"] == "open"
    _, old = incident_document(_incident())  # summaries without keys (records before per-event keys)
    old_views = {v["area"]: v for v in old["views"]}
    assert old_views["513221107201"]["person_keys"] == [] and old_views["513221107"]["person_keys"] == [
        "id:" + "a" * 32, "phone:" + "b" * 32]


def test_event_visibility_rule() -> None:
    assert event_visible("513221107", "513221107201", None)
    assert not event_visible("513221107201", "513221107202", "513221107201")
    assert event_visible("513221107201", None, "513221107201")   # no code: the owner decides
    assert not event_visible("513221107201", None, "513221107")


def test_invalid_coordinates_are_dropped_not_indexed() -> None:
    inc = _incident()
    inc["events"][1]["lat"] = 123.0  # out of range
    _, doc = incident_document(inc)
    assert doc["location"] is None and doc["event_locations"] == []


def test_input_not_mutated_and_deterministic() -> None:
    inc = _incident()
    before = copy.deepcopy(inc)
    assert incident_document(inc) == incident_document(copy.deepcopy(inc))
    assert inc == before


def test_index_action_uses_external_version() -> None:
    action = incident_action(_incident(), "pingan-incidents")
    assert action["_op_type"] == "index" and action["_id"] == "inc-0123456789abcdef"
    assert action["_index"] == "pingan-incidents"
    assert action["version"] == 3 and action["version_type"] == "external_gte"
    assert "version" not in incident_action(_incident(), "x", external_version=False)


def test_merged_incident_becomes_delete_of_retired_id() -> None:
    merged = _incident(status="merged", merged_into="inc-0000000000000001")
    assert incident_action(merged, "idx") == {"_op_type": "delete", "_index": "idx", "_id": "inc-0123456789abcdef"}
    with pytest.raises(DocumentError):
        incident_document(merged)


def test_record_without_id_is_a_document_error() -> None:
    with pytest.raises(DocumentError):
        incident_action(_incident(incident_id=""), "idx")


def test_template_shape() -> None:
    t = incident_template("pingan", "5s")
    assert t["index_patterns"] == ["pingan-incidents-*"]
    s = t["template"]["settings"]
    assert (s["number_of_shards"], s["number_of_replicas"], s["refresh_interval"]) == (1, 0, "5s")
    props = t["template"]["mappings"]["properties"]
    assert props["location"]["type"] == "geo_point" and props["event_locations"]["type"] == "geo_point"
    assert props["events"]["type"] == "nested"
    assert props["events"]["properties"]["location"]["type"] == "geo_point"
    assert props["first_seen"] == {"type": "date", "format": "epoch_millis"}
    assert props["search_text"]["analyzer"] == "cjk"
    assert props["events"]["properties"]["text"]["analyzer"] == "cjk"
    assert props["events"]["properties"]["text"]["store"] is True
    assert props["events"]["properties"]["text"]["fields"]["raw"]["type"] == "keyword"
    for kw in ("incident_id", "admin_path", "admin_code", "town_codes", "village_codes", "person_keys"):
        assert props[kw]["type"] == "keyword"


@pytest.mark.parametrize("rel", [
    "connectors/elasticsearch/documents.py", "connectors/elasticsearch/templates.py",
    "streams/web/jurisdiction.py", "streams/web/query.py",
])
def test_pure_modules_import_no_io_libraries(rel: str) -> None:
    tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert not roots & {"elasticsearch", "aiohttp", "kafka", "aiokafka", "faust"}
    # and the connectors/streams modules they import are pure too
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("connectors", "streams")):
            assert node.module in {"connectors.elasticsearch.documents", "streams.domain", "streams.domain.text",
                                   "streams.domain.kinds", "streams.domain.tiers", "streams.domain.lifecycle",
                                   "streams.settings", "streams.web.jurisdiction"}, node.module
            if node.module == "streams.settings":  # only the time-zone default, not the environment
                assert [a.name for a in node.names] == ["DEFAULT_TIMEZONE"], node.module
            if node.module == "streams.domain":  # only the pure admin-code module from the domain package
                assert [a.name for a in node.names] == ["admin"], node.module
