"""Jurisdiction rule: the ES filter and the Python rule agree; redaction of cross-area incidents."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from connectors.elasticsearch.documents import incident_document
from streams.domain import gazetteer
from streams.web.jurisdiction import (
    JurisdictionError, can_see, incident_view, is_area_credential, jurisdiction_filter, redact_incident,
    visible_events_filter, within,
)

V_QISHAN = "513221107201"   # 柒山村, 三江镇
V_CAOPING = "513221107202"  # 草坪村, 三江镇
V_QIPANGOU = "513221100201"  # 七盘沟村, 威州镇


def _inc(*villages: str, owner: str | None = None) -> dict:
    events = [{"event_id": f"grid:{v}", "source": "grid", "kind": "dispute", "occurred_at": i,
               "text": "纠纷", "admin_code": v, "persons": []} for i, v in enumerate(villages)]
    towns = sorted({v[:9] for v in villages})
    return {"incident_id": "inc-" + "".join(villages)[:16], "status": "open", "kind": "dispute", "severity": 2,
            "tier": "village" if len(villages) == 1 else "town", "admin_code": owner or villages[0],
            "county_code": "513221", "town_codes": towns, "village_codes": list(villages),
            "first_seen": 0, "last_seen": 1, "events": events,
            "links": [{"event_a": events[0]["event_id"], "event_b": e["event_id"], "reasons": ["同一地址"]}
                      for e in events[1:]], "version": 1, "updated_at": 1}


def test_filter_is_a_term_on_admin_path() -> None:
    assert jurisdiction_filter("513221107") == {"term": {"admin_path": "513221107"}}


@pytest.mark.parametrize("bad", ["", "5132211", "51322110720", "abc", "5132211072011"])
def test_invalid_codes_rejected(bad: str) -> None:
    with pytest.raises(JurisdictionError):
        jurisdiction_filter(bad)
    with pytest.raises(JurisdictionError):
        can_see(bad, _inc(V_QISHAN))


def test_levels() -> None:
    inc = _inc(V_QISHAN)
    assert can_see(V_QISHAN, inc)          # the village itself
    assert not can_see(V_CAOPING, inc)     # a sibling village
    assert can_see("513221107", inc)       # its town
    assert not can_see("513221100", inc)   # another town
    assert can_see("513221", inc)          # the county
    assert can_see("5132", inc)            # the prefecture
    assert can_see("51", inc)              # the province
    assert not can_see("513222", inc)      # a neighbouring county
    assert not can_see("5133", inc)        # another prefecture


@given(st.sampled_from([p.code for p in gazetteer.VILLAGES]), st.sampled_from(
    [p.code for p in gazetteer.VILLAGES + gazetteer.TOWNS] + ["513221", "5132", "51", "513222", "5133"]))
def test_python_rule_equals_prefix_rule_and_indexed_path(village: str, credential: str) -> None:
    inc = _inc(village)
    _, doc = incident_document(inc)
    expected = village.startswith(credential)
    assert can_see(credential, inc) is expected
    assert can_see(credential, doc) is expected  # from the indexed admin_path
    assert (jurisdiction_filter(credential)["term"]["admin_path"] in doc["admin_path"]) is expected


def test_cross_area_incident_redacted_for_village() -> None:
    inc = _inc(V_QISHAN, V_CAOPING, owner="513221107")
    assert can_see(V_QISHAN, inc) and can_see(V_CAOPING, inc) and not can_see(V_QIPANGOU, inc)
    view = redact_incident(V_QISHAN, inc)
    assert [e["admin_code"] for e in view["events"]] == [V_QISHAN]
    assert view["links"] == [] and "hidden_events" not in view  # not even how many are hidden
    town_view = redact_incident("513221107", inc)
    assert len(town_view["events"]) == 2 and len(town_view["links"]) == 1
    assert inc["events"][1]["admin_code"] == V_CAOPING  # input untouched


def test_within() -> None:
    assert within("513221107", V_QISHAN) and not within(V_QISHAN, "513221107") and not within("513221", None)


def test_incident_view_of_a_village_ignores_hidden_events() -> None:
    _, doc = incident_document(_inc(V_QISHAN, V_QIPANGOU))
    doc = dict(doc, kind="fire", severity=4, tier="county", last_seen=9, version=7)
    doc["events"][1]["kind"] = "fire"
    village = incident_view(V_QISHAN, doc)
    assert (village["kind"], village["severity"], village["tier"], village["admin_code"]) == (
        "dispute", 2, "village", V_QISHAN)
    assert (village["first_seen"], village["last_seen"], village["version"]) == (0, 0, 5)  # version: 5 × 1 event
    # an escalation is the whole incident's: a partial view is routed, not escalated (like its tier)
    assert incident_view(V_QISHAN, dict(doc, status="escalated"))["status"] == "open"
    assert incident_view("513221", dict(doc, status="escalated"))["status"] == "escalated"
    county = incident_view("513221", doc)
    assert (county["kind"], county["severity"], county["tier"], county["last_seen"]) == ("fire", 4, "county", 9)
    assert is_area_credential("513221107") and is_area_credential(V_QISHAN)
    assert not is_area_credential("513221") and not is_area_credential("5132")


def test_visible_events_filter_keeps_uncoded_events_of_owned_incidents() -> None:
    clause = {"geo_distance": {"distance": "20m", "events.location": {"lat": 31.0, "lon": 103.0}}}
    inside, owned = visible_events_filter(V_QISHAN, [clause])["bool"]["should"]
    assert inside["nested"]["query"]["bool"]["filter"] == [{"prefix": {"events.admin_code": V_QISHAN}}, clause]
    assert owned["bool"]["filter"][0] == {"prefix": {"admin_code": V_QISHAN}}
    uncoded = owned["bool"]["filter"][1]["nested"]["query"]["bool"]
    assert uncoded["must_not"] == [{"exists": {"field": "events.admin_code"}}] and uncoded["filter"] == [clause]
