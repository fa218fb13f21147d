"""Grid-app report translate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sources.common import key_of
from connectors.sources.grid.translate import TOPIC as GRID_TOPIC
from connectors.sources.grid.translate import translate

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "grid"
BASE = json.loads((FIX / "report_gcj02.json").read_text(encoding="utf-8"))


def run(payload: object):
    return translate(payload, received_at_ms=7)  # type: ignore[arg-type]


def test_doc_example_exact_record() -> None:
    res = run((FIX / "report_gcj02.json").read_bytes())
    assert res.topic == GRID_TOPIC and res.rejected == []
    rec = res.records[0]
    assert rec == {
        "report_id": "WG20260714000123", "native_id": "WG20260714000123", "grid_code": "513221107201-03",
        "reporter_id": "WGY-0231", "category_code": "0102", "category_name": "邻里纠纷",
        "description": "柒山村村民王某与李某因房屋拆迁补偿发生争执", "address": "三江镇柒山村3组",
        "longitude": 103.3482, "latitude": 31.1055, "coord_system": "GCJ02",
        "persons": [
            {"role": "party", "name": "王德学", "id_number": "513221196805120312", "phone": "138 8888 1234", "address": None},
            {"role": "party", "name": "李秀英", "id_number": "51322119700303002X", "phone": "139-0837-5678",
             "address": "三江镇柒山村3组12号"}],
        "reported_at_local": "2026-07-14 09:12:00", "status": "reported", "received_at": 7, "raw_format": "grid-json", "quality": []}
    assert key_of(rec, GRID_TOPIC) == "WG20260714000123"


def test_list_and_coord_systems_and_string_category() -> None:
    res = run((FIX / "reports_list_wgs84_bd09.json").read_bytes())
    assert [(r["coord_system"], r["category_code"], r["category_name"]) for r in res.records] == [
        ("WGS84", "0401", "山洪泥石流"), ("BD09", "0501", "求助/就医")]
    assert res.records[1]["persons"][0]["role"] == "victim"


def test_default_coord_type_is_gcj02_and_gbk_body() -> None:
    assert run((FIX / "report_default_coordtype.json").read_bytes()).records[0]["coord_system"] == "GCJ02"
    assert run((FIX / "report_gbk.json").read_bytes()).records[0]["description"] == BASE["description"]


def test_dict_and_str_inputs() -> None:
    assert run(BASE).records[0]["report_id"] == "WG20260714000123"
    assert run(json.dumps(BASE, ensure_ascii=False)).records[0]["report_id"] == "WG20260714000123"


@pytest.mark.parametrize(("name", "reason"), [
    ("bad_missing_report_id.json", "missing reportId"),
    ("bad_report_time.json", "reportTime '昨天上午' is not a valid date-time"),
    ("malformed.json", "malformed JSON"),
])
def test_bad_fixtures(name: str, reason: str) -> None:
    res = run((FIX / name).read_bytes())
    assert res.records == [] and reason in res.rejected[0].reason


@pytest.mark.parametrize(("change", "reason"), [
    ({"description": ""}, "missing description"),
    ({"gridCode": {"a": 1}}, "gridCode must be a string"),
    ({"reporterId": None}, "missing reporterId"),
    ({"reportTime": None}, "missing reportTime"),
])
def test_required_field_validation(change: dict, reason: str) -> None:
    res = run({**BASE, **change})
    assert res.records == [] and reason in res.rejected[0].reason


# Until issue 13 each of these rejected the report; now the report is accepted, the bad optional
# value is left out and a quality flag names the field, the reason and the raw value.
@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"category": {"code": "ab"}}, "category", "category name 'ab' is not in the category table"),
    ({"category": None}, "category", "no category; code 99"),
    ({"location": {"lng": 500, "lat": 31}}, "location", "location.lng '500' out of range"),
    ({"location": {"lng": 103.3, "lat": 31.1, "coordType": "mercator"}}, "location",
     "location.coordType 'mercator' not one of wgs84, gcj02, bd09"),
    ({"persons": "王德学"}, "persons", "persons must be a list"),
    ({"persons": ["王德学"]}, "persons[0]", "persons[0] must be an object"),
    ({"persons": [{"name": "王德学", "idCard": "5132211968"}]}, "persons[0].idCard",
     "ID number is not a 15- or 18-character ID number (10 characters)"),
    ({"persons": [{"name": "王德学", "phone": "不详"}]}, "persons[0].phone", "phone is not a phone number"),
])
def test_bad_optional_field_is_a_flag(change: dict, field: str, reason: str) -> None:
    res = run({**BASE, **change})
    assert res.rejected == [] and len(res.records) == 1
    flags = res.records[0]["quality"]
    assert [f["field"] for f in flags] == [field] and reason in flags[0]["reason"], flags


def test_category_name_outside_table_kept_with_flag() -> None:
    rec = run({**BASE, "category": "河道垃圾"}).records[0]
    assert (rec["category_code"], rec["category_name"]) == ("99", "河道垃圾")
    assert rec["quality"][0]["value"] == "河道垃圾"


def test_category_names_accepted_like_codes() -> None:
    by_name = run({**BASE, "category": "邻里纠纷"}).records[0]
    assert (by_name["category_code"], by_name["category_name"], by_name["quality"]) == ("0102", "邻里纠纷", [])
    synonym = run({**BASE, "category": {"name": "消防隐患"}}).records[0]
    assert (synonym["category_code"], synonym["category_name"], synonym["quality"]) == ("03", "消防隐患", [])


def test_cgcs2000_is_wgs84() -> None:
    rec = run((FIX / "bad_coord_type.json").read_bytes()).records[0]
    assert rec["coord_system"] == "WGS84" and rec["quality"] == []


def test_zero_coordinates_mean_unknown() -> None:
    rec = run({**BASE, "location": {"lng": 0, "lat": 0, "coordType": "wgs84"}}).records[0]
    assert rec["longitude"] is None and rec["latitude"] is None


def test_list_with_bad_item_names_index() -> None:
    res = run([BASE, {**BASE, "reportId": None}])
    assert len(res.records) == 1 and res.rejected[0].reason == "report[1]: missing reportId"


def test_non_object_json() -> None:
    assert run(b"42").rejected[0].error_type == "MalformedJson"
    assert run(b"[]").rejected[0].reason == "empty list of grid reports"


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                           max_leaves=20)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(BASE)), JSON_VALUES, max_size=12))
def test_fuzz_mutated_reports_never_raise(change: dict) -> None:
    res = run({**BASE, **change})
    assert len(res.records) + len(res.rejected) == 1
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=1024))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    res = run(data)
    assert res.records or res.rejected
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected
