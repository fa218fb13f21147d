"""110 alarm-desk row translate."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sources.alarm110.translate import read_csv, translate_csv, translate_row, translate_rows
from connectors.sources.alarm110.translate import TOPIC as ALARM110_TOPIC
from connectors.sources.common import key_of

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "alarm110"
ROWS = read_csv((FIX / "jjd_export_utf8.csv").read_bytes())


def test_first_row_exact() -> None:
    res = translate_row(ROWS[0], received_at_ms=9)
    assert res.topic == ALARM110_TOPIC and res.rejected == []
    assert res.records[0] == {
        "jjdbh": "513221202607140001", "native_id": "513221202607140001", "gljjdbh": None, "xzqhbh": "513221107",
        "bjsj_local": "2026-07-14 09:20:11", "caller_phone": "13888881234", "contact_phone": None,
        "caller_name": "王德学", "caller_id_number": "513221196805120312", "address": "三江镇柒山村3组",
        "content": "两户村民因拆迁补偿争吵，有推搡", "bjlb": "200000", "bjlx": "200200", "bjxl": "200201", "jqjb": 2,
        "longitude": 103.3421, "latitude": 31.1079, "location_source": "auto", "coord_system": "WGS84",
        "received_at": 9, "raw_format": "alarm110-db", "quality": []}
    assert key_of(res.records[0], ALARM110_TOPIC) == "513221202607140001"


def test_location_source_preference() -> None:
    res = translate_csv((FIX / "jjd_export_utf8.csv").read_bytes(), received_at_ms=1)
    got = [(r["location_source"], r["longitude"], r["latitude"]) for r in res.records]
    assert got == [("auto", 103.3421, 31.1079), ("manual", 103.3425, 31.1081), ("auto", 103.5915, 31.479),
                   (None, None, None), ("manual", 103.488, 31.35)]  # last: ZDDW 0/0 → falls back to SDDW
    assert res.records[1]["gljjdbh"] == "513221202607140001"
    assert {r["raw_format"] for r in res.records} == {"alarm110-csv"}


def test_gbk_csv() -> None:
    res = translate_csv((FIX / "jjd_export_gbk.csv").read_bytes(), received_at_ms=1)
    assert [r["caller_name"] for r in res.records] == ["王德学", "李秀英", None]


def test_db_typed_values_and_lower_case_columns() -> None:
    row = {"jjdbh": 513221202607149999, "bjsj": datetime(2026, 7, 14, 9, 0, 5), "bjnr": "求助",
           "jqjb": Decimal("3"), "zddwjd": Decimal("103.59"), "zddwwd": 31.48, "bjdh": 13888881234.0, "xzqhbh": None}
    rec = translate_row(row, received_at_ms=1).records[0]
    assert rec["jjdbh"] == "513221202607149999" and rec["bjsj_local"] == "2026-07-14 09:00:05"
    assert rec["jqjb"] == 3 and rec["longitude"] == 103.59 and rec["caller_phone"] == "13888881234"


def test_bad_rows_reasons() -> None:
    """Deliberate change (issue 13): a bad OPTIONAL field (JQJB, BJLB, coordinates) no longer rejects the
    row; it is left out and kept raw as a quality flag. Only JJDBH, BJSJ and BJNR still reject."""
    res = translate_csv((FIX / "jjd_export_bad_rows.csv").read_bytes(), received_at_ms=1)
    assert [r.reason for r in res.rejected] == [
        "row 4 (JJDBH ?): missing JJDBH",
        "row 5 (JJDBH 513221202607140093): BJSJ '14/07/2026' is not a valid date-time"]
    by_id = {r["jjdbh"]: r for r in res.records}
    assert len(res.records) == 4 and by_id["513221202607140001"]["quality"] == []
    assert by_id["513221202607140090"]["jqjb"] is None
    assert by_id["513221202607140090"]["quality"] == [
        {"field": "JQJB", "reason": "JQJB '9' not in 1-4", "value": "9"}]
    assert by_id["513221202607140091"]["bjlb"] is None
    (flag,) = by_id["513221202607140091"]["quality"]
    assert flag["field"] == "BJLB" and flag["value"] == "20AB00" and "6-digit code" in flag["reason"]
    rec = by_id["513221202607140094"]
    assert rec["longitude"] is None and rec["location_source"] is None
    assert rec["quality"] == [{"field": "ZDDWJD/ZDDWWD", "reason": "ZDDWJD 'abc' is not a number", "value": "abc,31.1"}]


@pytest.mark.parametrize(("change", "reason"), [
    ({"BJNR": ""}, "missing BJNR"),
    ({"BJSJ": None}, "missing BJSJ"),
    ({"BJSJ": "yesterday"}, "BJSJ 'yesterday' is not a valid date-time"),
    ({"JJDBH": " "}, "missing JJDBH"),
])
def test_required_field_rejects(change: dict, reason: str) -> None:
    res = translate_row({**ROWS[0], **change}, received_at_ms=1)
    assert res.records == [] and res.rejected[0].reason.startswith(reason)


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"XZQHBH": "51x"}, "XZQHBH", "XZQHBH '51x' must be 6-12 digits"),
    ({"ZDDWWD": "95"}, "ZDDWJD/ZDDWWD", "ZDDWWD '95' out of range"),
    ({"JQJB": "high"}, "JQJB", "JQJB 'high' is not an integer"),
    ({"BJXL": "门口吵架"}, "BJXL", "BJXL '门口吵架' is neither a 6-digit code"),
    ({"BJDH": ["138", "139"]}, "BJDH", "expected a scalar value"),
])
def test_bad_optional_field_is_flagged_not_rejected(change: dict, field: str, reason: str) -> None:
    res = translate_row({**ROWS[0], **change}, received_at_ms=1)
    assert res.rejected == []
    (rec,) = res.records
    (flag,) = rec["quality"]
    assert flag["field"] == field and flag["reason"].startswith(reason)
    assert rec["content"] and rec["address"] == "三江镇柒山村3组"  # the rest of the row arrives


def test_bad_auto_pair_falls_back_to_manual() -> None:
    rec = translate_row({**ROWS[0], "ZDDWJD": "abc", "SDDWJD": "103.5", "SDDWWD": "31.2"}, received_at_ms=1).records[0]
    assert (rec["location_source"], rec["longitude"], rec["latitude"]) == ("manual", 103.5, 31.2)
    assert [f["field"] for f in rec["quality"]] == ["ZDDWJD/ZDDWWD"]


def test_category_and_level_names() -> None:
    row = {**ROWS[0], "BJLB": "治安", "BJLX": "纠纷", "BJXL": "", "JQJB": "一般警情"}
    rec = translate_row(row, received_at_ms=1).records[0]
    assert (rec["bjlb"], rec["bjlx"], rec["bjxl"], rec["jqjb"], rec["quality"]) == ("200000", "200200", None, 4, [])
    rec = translate_row({**ROWS[0], "BJLB": "求助", "BJLX": "家庭暴力"}, received_at_ms=1).records[0]
    assert (rec["bjlb"], rec["bjlx"]) == ("500000", "200600")


def test_unknown_column_is_reported_unmapped() -> None:
    rows = [{**ROWS[0], "BJRXB": "1", "SFZDRY": "0"}, {**ROWS[1], "BJRXB": "2"}]
    res = translate_rows(rows, received_at_ms=1)
    assert res.rejected == [] and dict(res.unmapped) == {"BJRXB": 2, "SFZDRY": 1}
    assert translate_row(ROWS[0], received_at_ms=1).unmapped == {}  # GXSJ is known (the poller's cursor)


def test_profile_aliases_and_coordinate_system(tmp_path: Path) -> None:
    from connectors.sources.profile import load_profile

    (tmp_path / "alarm110.toml").write_text(
        '[aliases]\njjdbh = ["CASE_NO"]\nother_lon = ["POS_E"]\nother_lat = ["POS_N"]\n'
        '[coord_systems]\nPOS_E = "GCJ02"\n', encoding="utf-8")
    profile = load_profile("alarm110", tmp_path)
    row = {"case_no": "X1", "bjsj": "2026-07-14 09:00:00", "bjnr": "求助", "pos_e": "103.35", "pos_n": "31.11"}
    rec = translate_row(row, received_at_ms=1, profile=profile).records[0]
    assert (rec["jjdbh"], rec["longitude"], rec["location_source"], rec["coord_system"]) == ("X1", 103.35, "other", "GCJ02")
    rec = translate_row({**row, "zddwjd": "103.3", "zddwwd": "31.1"}, received_at_ms=1, profile=profile).records[0]
    assert (rec["location_source"], rec["coord_system"]) == ("auto", "WGS84")  # the override is per column


def test_not_a_csv() -> None:
    assert translate_csv(b"\xff\xfe\x00garbage", received_at_ms=1).rejected[0].error_type in {"MissingField", "BadEncoding"}
    assert translate_rows([42], received_at_ms=1).rejected[0].error_type == "InvalidInput"  # type: ignore[list-item]


SCALARS = st.none() | st.text(max_size=30) | st.integers() | st.floats() | st.decimals(allow_nan=True) | st.datetimes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(ROWS[0])), SCALARS | st.lists(st.integers(), max_size=2), max_size=10))
def test_fuzz_rows_never_raise(change: dict) -> None:
    res = translate_row({**ROWS[0], **change}, received_at_ms=1)
    assert len(res.records) + len(res.rejected) == 1
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=1024))
def test_fuzz_csv_bytes_never_raise(data: bytes) -> None:
    res = translate_csv(data, received_at_ms=1)
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


# --- variants (tests/fixtures/variants/alarm110, docs/native-formats.md "110 alarms") -------------

VARIANTS = FIX.parent / "variants" / "alarm110"


def variant_rows(name: str) -> tuple[list[dict], "Profile"]:
    """The variant's rows as the poller or importer would see them, and its deployment profile."""
    import json
    import sqlite3

    from connectors.sources.alarm110.translate import read_export
    from connectors.sources.profile import load_profile

    folder = VARIANTS / name
    profile = load_profile("alarm110", folder)
    if (folder / "desk.sql").exists():
        con = sqlite3.connect(":memory:")
        con.executescript((folder / "desk.sql").read_text(encoding="utf-8"))
        cur = con.execute(f"SELECT * FROM {profile.get('table')}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()], profile
    if (folder / "rows.json").exists():
        return json.loads((folder / "rows.json").read_text(encoding="utf-8")), profile
    (data,) = [p for p in folder.iterdir() if p.suffix in (".csv", ".xlsx")]
    return read_export(data.read_bytes(), data.name, profile), profile


#: variant → (rows, expected unmapped columns)
INGESTS = {
    "sunshine_jd_wd": (2, {"JQH": 2}),
    "datadisplay_view": (2, {}),
    "hylink_bd09_json": (2, {}),
    "gbk_chinese_headers": (3, {}),
    "xlsx_jcjbh": (2, {}),
}


@pytest.mark.parametrize("name", sorted(INGESTS))
def test_variant_ingests_without_loss(name: str) -> None:
    from connectors.sources.registry import normalizer

    rows, profile = variant_rows(name)
    n, unmapped = INGESTS[name]
    res = translate_rows(rows, received_at_ms=1, profile=profile)
    assert res.rejected == [] and len(res.records) == n == len(rows)
    assert dict(res.unmapped) == unmapped
    norm = normalizer(b"k", "Asia/Shanghai")
    for rec in res.records:
        assert rec["quality"] == [], rec["quality"]
        assert rec["longitude"] and rec["latitude"] and rec["address"] and rec["bjlb"], rec
        event = norm.normalize("alarm110", rec)
        loc = event["location"]
        assert loc["lat"] and 31.0 < loc["lat"] < 31.6 and 103.3 < loc["lon"] < 103.7  # Wenchuan, in WGS-84
        assert event["address"] if "address" in event else True
        assert event["kind"] != "other"


def test_variant_coordinate_systems_end_in_wgs84() -> None:
    """GCJ-02 and BD-09 pairs of the same spots normalize to the WGS-84 points they were made from."""
    from connectors.sources.registry import normalizer

    norm = normalizer(b"k", "Asia/Shanghai")
    expected = {"hylink_bd09_json": [(31.48, 103.59), (31.054, 103.487)],
                "gbk_chinese_headers": [(31.1079, 103.3421), (31.48, 103.59), (31.362, 103.497)]}
    for name, points in expected.items():
        rows, profile = variant_rows(name)
        recs = translate_rows(rows, received_at_ms=1, profile=profile).records
        assert {r["coord_system"] for r in recs} == {"BD09" if "bd09" in name else "GCJ02"}
        for rec, (lat, lon) in zip(recs, points):
            loc = norm.normalize("alarm110", rec)["location"]
            assert abs(loc["lat"] - lat) < 1e-5 and abs(loc["lon"] - lon) < 1e-5, (name, loc)


def test_variant_names_and_words() -> None:
    rows, profile = variant_rows("hylink_bd09_json")
    recs = translate_rows(rows, received_at_ms=1, profile=profile).records
    assert [(r["jjdbh"], r["bjlb"], r["bjlx"], r["jqjb"], r["bjsj_local"]) for r in recs] == [
        ("51322120260715143521620", "200000", "200200", 4, "2026/07/15 14:35:21"),
        ("51322120260715150110330", "500000", "509900", 4, "2026/07/15 15:01:10")]
    rows, profile = variant_rows("gbk_chinese_headers")
    recs = translate_rows(rows, received_at_ms=1, profile=profile).records
    assert [(r["bjlb"], r["bjlx"], r["caller_name"]) for r in recs] == [
        ("200000", "200600", "陈某"), ("500000", None, None), ("200000", "200200", "赵某")]


def test_variant_missing_required_column_dead_letters_with_reason() -> None:
    rows, profile = variant_rows("pgis_no_content")
    res = translate_rows(rows, received_at_ms=1, profile=profile)
    assert res.records == []
    assert [r.reason for r in res.rejected] == ["row 1 (JJDBH 513221202607180001): missing BJNR"]
    assert res.rejected[0].error_type == "MissingField"


def test_spec_reads_exports_with_the_deployment_profile() -> None:
    """The registry path (spec.read_table + spec.translate_rows with a SourceContext), as an importer or
    the inspector uses it: a GBK export with Chinese headers, mapped by the variant's profile."""
    from connectors.sources.alarm110.spec import SPEC
    from connectors.sources.registry import context

    folder = VARIANTS / "gbk_chinese_headers"
    assert SPEC.read_table is not None and SPEC.translate_rows is not None
    rows = SPEC.read_table((folder / "export.csv").read_bytes(), "export.csv")
    res = SPEC.translate_rows(rows, 1, "alarm110-csv", context(profile_dir=folder))
    assert res.rejected == [] and len(res.records) == 3 and res.unmapped == {}
    xlsx = SPEC.read_table((VARIANTS / "xlsx_jcjbh" / "export.xlsx").read_bytes(), "export.xlsx")
    assert [r["JCJBH"] for r in xlsx] == ["513221202607170001", "513221202607170002"]
