"""Request params → ES bodies: the jurisdiction filter is always first and unconditional."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from streams.web.query import (
    MAX_SIZE, QueryError, build_detail, build_lookup, build_search, build_stats, mask_digits,
    normalize_q, parse_search_params,
)

CREDENTIALS = ["51", "5132", "513221", "513221107", "513221107201", "513221100203"]
PARAM_NAMES = ["q", "from", "to", "kind", "tier", "status", "admin_code", "near", "radius_m", "bbox",
               "page", "size", "sort", "admin_path", "query", "filter"]

_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["513221100201", "51", "*", "admin_code:513221100201 OR *", "31.1,103.3", "2024-05-01",
                     "dispute,theft", "village", "open", "1", "100", "101", "0", "-1", "31,103,32,104",
                     '{"match_all":{}}', "糾紛", "relevance", "severity"]),
)
_params = st.dictionaries(st.sampled_from(PARAM_NAMES), _values, max_size=8)


def _assert_scoped(body: dict, code: str) -> None:
    top = body["query"]
    # filter and must are ANDed: nothing at the top level (no should) can OR around the filter
    assert set(top) == {"bool"} and set(top["bool"]) <= {"filter", "must"}
    filters = top["bool"]["filter"]
    assert filters[0] == {"term": {"admin_path": code}}
    assert all(set(f) <= {"bool", "term"} for f in filters)


@hsettings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_params, st.sampled_from(CREDENTIALS))
def test_every_body_contains_the_credentials_filter(raw: dict, code: str) -> None:
    try:
        params = parse_search_params(raw)
    except QueryError:
        return
    _assert_scoped(build_search(params, code), code)
    _assert_scoped(build_stats(params, code), code)
    assert params.size <= MAX_SIZE


@given(st.text(min_size=1, max_size=60), st.sampled_from(CREDENTIALS))
def test_detail_is_scoped(incident_id: str, code: str) -> None:
    try:
        body = build_detail(incident_id, code)
    except QueryError:
        return
    _assert_scoped(body, code)
    inner = body["query"]["bool"]["filter"][1]["bool"]["filter"]
    assert inner[0] == {"ids": {"values": [incident_id]}}
    # a town or village credential also needs its own view (an event visible to it)
    assert inner[1:] == ([] if len(code) <= 6 else [
        {"nested": {"path": "views", "query": {"bool": {"filter": [{"term": {"views.area": code}}]}}}}])


def test_lookup_is_scoped_and_validates_keys() -> None:
    body = build_lookup(["id:" + "0" * 32, "plate:" + "f" * 32], "513221107")
    _assert_scoped(body, "513221107")
    with pytest.raises(QueryError):
        build_lookup(["513221199001011234"], "513221107")  # never a clear identifier
    with pytest.raises(QueryError):
        build_lookup([], "513221107")


def test_lookup_of_an_area_credential_matches_its_views_keys_only() -> None:
    """Issue 14: a key carried by an event hidden from a town/village must not find the incident."""
    keys = ["id:" + "0" * 32, "plate:" + "f" * 32]
    body = build_lookup(keys, "513221107201")
    clauses = body["query"]["bool"]["filter"][1]["bool"]["filter"]
    assert clauses == [{"nested": {"path": "views", "query": {"bool": {"filter": [
        {"term": {"views.area": "513221107201"}},
        {"bool": {"should": [{"terms": {"views.person_keys": keys}}, {"terms": {"views.vehicle_keys": keys}}],
                  "minimum_should_match": 1}}]}}}}]
    assert '"person_keys"' not in json.dumps(body["query"])  # never the incident-wide keys
    county = build_lookup(keys, "513221")
    assert county["query"]["bool"]["filter"][1]["bool"]["filter"] == [{"bool": {"should": [
        {"terms": {"person_keys": keys}}, {"terms": {"vehicle_keys": keys}}], "minimum_should_match": 1}}]


def test_admin_code_param_only_adds_a_filter() -> None:
    county = build_search(parse_search_params({"admin_code": "513221100201"}), "513221")
    assert {"term": {"admin_path": "513221100201"}} in county["query"]["bool"]["filter"][1]["bool"]["filter"]
    # a village credential: another area's code matches nothing (not "incidents that also touch it")
    body = build_search(parse_search_params({"admin_code": "513221100201"}), "513221107201")
    filters = body["query"]["bool"]["filter"]
    assert filters[0] == {"term": {"admin_path": "513221107201"}}
    assert {"bool": {"must_not": [{"match_all": {}}]}} in filters[1]["bool"]["filter"]
    # a town credential narrowing to one of its villages: that village's view
    town = build_search(parse_search_params({"admin_code": "513221107202"}), "513221107")
    assert {"nested": {"path": "views", "query": {"bool": {"filter": [
        {"term": {"views.area": "513221107202"}}]}}}} in town["query"]["bool"]["filter"][1]["bool"]["filter"]
    # an ancestor of the credential's area adds nothing
    assert build_search(parse_search_params({"admin_code": "513221"}), "513221107201") == \
        build_search(parse_search_params({}), "513221107201")


def test_area_credential_filters_and_sorts_on_its_visible_events_only() -> None:
    """Issue 14: a town/village credential never filters or sorts on incident-wide fields."""
    p = parse_search_params({"from": "2024-05-01", "to": "2024-05-01", "kind": "dispute", "tier": "town",
                             "status": "open", "near": "31.108,103.342", "radius_m": "20",
                             "bbox": "31.0,103.3,31.2,103.4", "sort": "severity"})
    body = build_search(p, "513221107201")
    inner = body["query"]["bool"]["filter"][1]["bool"]["filter"]
    view = inner[0]["nested"]
    assert view["path"] == "views"
    assert view["query"]["bool"]["filter"] == [
        {"term": {"views.area": "513221107201"}},
        {"range": {"views.last_seen": {"gte": 1714492800000}}},
        {"range": {"views.first_seen": {"lte": 1714579199999}}},
        {"terms": {"views.kind": ["dispute"]}},
        {"terms": {"views.tier": ["town"]}},
        {"terms": {"views.status": ["open"]}},
    ]
    text = json.dumps(inner)
    for field in ('"last_seen"', '"first_seen"', '"kind"', '"tier"', '"event_locations"', '"severity"',
                  '"status"'):
        assert field not in text, field
    geo = [c for c in inner if "should" in c.get("bool", {})]
    assert len(geo) == 2  # near and bbox, each on visible events
    inside = geo[0]["bool"]["should"][0]["nested"]["query"]["bool"]["filter"]
    assert inside[0] == {"prefix": {"events.admin_code": "513221107201"}}
    assert inside[1]["geo_distance"]["events.location"] == {"lat": 31.108, "lon": 103.342}
    owned = geo[0]["bool"]["should"][1]["bool"]["filter"]
    assert owned[0] == {"prefix": {"admin_code": "513221107201"}}
    for key in body["sort"][:2]:
        (field, spec), = key.items()
        assert field.startswith("views.") and spec["nested"]["filter"] == {"term": {"views.area": "513221107201"}}
    # the county's body is what it was: incident-wide fields
    county = build_search(p, "513221")
    assert county["sort"][0] == {"severity": "desc"}
    assert "views" not in json.dumps(county["query"])


def test_q_is_plain_text_match_in_simplified_chinese() -> None:
    body = build_search(parse_search_params({"q": "糾紛 admin_code:513221100201 OR *"}), "513221107")
    text = json.dumps(body, ensure_ascii=False)
    assert "query_string" not in text and "simple_query_string" not in text
    # a town credential matches only the texts of its visible events: inside its area, or without
    # an admin code in an incident it owns (nested, in query context so that it scores)
    inside, owned = body["query"]["bool"]["must"][0]["bool"]["should"]
    nested = inside["nested"]
    assert nested["path"] == "events" and nested["score_mode"] == "sum"
    assert nested["query"]["bool"]["filter"] == [{"prefix": {"events.admin_code": "513221107"}}]
    assert owned["bool"]["filter"] == [{"prefix": {"admin_code": "513221107"}}]
    uncoded = owned["bool"]["must"][0]["nested"]["query"]["bool"]
    assert uncoded["must_not"] == [{"exists": {"field": "events.admin_code"}}]
    bigram, unigram = nested["query"]["bool"]["must"][0]["bool"]["should"]
    # constant scores only: no term statistics (they would count hidden events' text)
    assert bigram["constant_score"]["boost"] == 2.0 and unigram["constant_score"]["boost"] == 1.0
    match = bigram["constant_score"]["filter"]["match"]["events.text"]
    assert match["query"].startswith("纠纷") and match["operator"] == "and"
    assert "search_text" not in text
    # the county sees every event of its incidents: every event's text, scored the same way
    county = build_search(parse_search_params({"q": "糾紛"}), "513221")
    nested = county["query"]["bool"]["must"][0]["nested"]
    assert nested["path"] == "events" and "filter" not in nested["query"]["bool"]
    assert nested["query"]["bool"]["should"][0]["constant_score"]["filter"]["match"]["events.text"]["query"] == "纠纷"
    assert normalize_q("　ＡＢＣ　宅基地糾紛 ") == "ABC 宅基地纠纷"


def test_filters_translate() -> None:
    p = parse_search_params({"from": "2024-05-01", "to": "2024-05-01", "kind": "dispute,theft", "tier": "town",
                             "status": "open", "near": "31.108,103.342", "radius_m": "500",
                             "bbox": "31.0,103.3,31.2,103.4", "page": "2", "size": "10"})
    body = build_search(p, "513221")
    inner = body["query"]["bool"]["filter"][1]["bool"]["filter"]
    assert {"range": {"last_seen": {"gte": 1714492800000}}} in inner      # 2024-05-01 00:00 +08:00
    assert {"range": {"first_seen": {"lte": 1714579199999}}} in inner     # end of that day
    assert {"terms": {"kind": ["dispute", "theft"]}} in inner
    assert {"terms": {"tier": ["town"]}} in inner and {"terms": {"status": ["open"]}} in inner
    geo = next(c["geo_distance"] for c in inner if "geo_distance" in c)
    assert geo == {"distance": "500.0m", "event_locations": {"lat": 31.108, "lon": 103.342}}
    box = next(c["geo_bounding_box"] for c in inner if "geo_bounding_box" in c)["event_locations"]
    assert box == {"top_left": {"lat": 31.2, "lon": 103.3}, "bottom_right": {"lat": 31.0, "lon": 103.4}}
    assert body["from"] == 10 and body["size"] == 10
    assert "person_keys" not in body["_source"]["includes"]


@pytest.mark.parametrize("raw", [
    {"size": "101"}, {"size": "0"}, {"page": "0"}, {"page": "200", "size": "100"}, {"tier": "province"},
    {"status": "deleted"}, {"kind": "Dispute;drop"}, {"admin_code": "5132211"}, {"admin_code": "*"},
    {"near": "91,103"}, {"near": "31"}, {"radius_m": "0"}, {"radius_m": "1e9"}, {"bbox": "32,103,31,104"},
    {"from": "yesterday"}, {"from": "2024-05-02", "to": "2024-05-01"}, {"q": "x" * 201}, {"sort": "_id"},
    {"near": "nan,103"},
])
def test_invalid_params_rejected(raw: dict) -> None:
    with pytest.raises(QueryError):
        parse_search_params(raw)


def test_time_formats() -> None:
    assert parse_search_params({"from": "1714492800000"}).time_from == 1714492800000
    assert parse_search_params({"from": "1714492800"}).time_from == 1714492800000
    assert parse_search_params({"from": "2024-05-01T08:00:00"}).time_from == 1714521600000
    assert parse_search_params({"from": "2024-05-01T00:00:00Z"}).time_from == 1714521600000


def test_stats_area_buckets_limited_to_jurisdiction() -> None:
    aggs = build_stats(parse_search_params({}), "513221107")["aggs"]
    assert aggs["by_village"]["terms"]["include"] == "513221107.*"
    assert aggs["by_town"]["terms"]["include"] == "513221107.*"
    assert "by_kind" in aggs["by_village"]["aggs"]


def test_stats_kinds_and_tiers_from_the_credentials_view() -> None:
    aggs = build_stats(parse_search_params({}), "513221107201")["aggs"]
    for name, field in (("by_kind", "views.kind"), ("by_tier", "views.tier"), ("by_status", "views.status")):
        assert aggs[name]["nested"] == {"path": "views"}
        visible = aggs[name]["aggs"]["visible"]
        assert visible["filter"] == {"term": {"views.area": "513221107201"}}
        assert visible["aggs"]["values"]["terms"]["field"] == field
    assert aggs["by_village"]["aggs"]["by_kind"]["aggs"]["visible"]["aggs"]["values"]["terms"]["field"] == "views.kind"
    county = build_stats(parse_search_params({}), "513221")["aggs"]
    assert county["by_kind"] == {"terms": {"field": "kind", "size": 50}}


def test_audit_view_masks_identifiers_in_q() -> None:
    p = parse_search_params({"q": "513221199001011234 13812345678 纠纷", "admin_code": "513221107201"})
    audit = p.as_audit()
    assert "513221199001011234" not in json.dumps(audit) and "13812345678" not in json.dumps(audit)
    assert audit["admin_code"] == "513221107201"
    assert mask_digits("电话13812345678") == "电话138******78"
