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
    res = translate_csv((FIX / "jjd_export_bad_rows.csv").read_bytes(), received_at_ms=1)
    assert len(res.records) == 1
    assert [r.reason for r in res.rejected] == [
        "row 2 (JJDBH 513221202607140090): JQJB '9' not in 1-4",
        "row 3 (JJDBH 513221202607140091): BJLB '20AB00' is not a 6-digit code",
        "row 4 (JJDBH ?): missing JJDBH",
        "row 5 (JJDBH 513221202607140093): BJSJ '14/07/2026' is not a valid date-time",
        "row 6 (JJDBH 513221202607140094): ZDDWJD 'abc' is not a number"]


@pytest.mark.parametrize(("change", "reason"), [
    ({"BJNR": ""}, "missing BJNR"),
    ({"BJSJ": None}, "missing BJSJ"),
    ({"XZQHBH": "51x"}, "XZQHBH '51x' must be 6-12 digits"),
    ({"ZDDWWD": "95"}, "ZDDWWD '95' out of range"),
    ({"JQJB": "high"}, "JQJB 'high' is not an integer"),
])
def test_single_row_reasons(change: dict, reason: str) -> None:
    res = translate_row({**ROWS[0], **change}, received_at_ms=1)
    assert res.records == [] and res.rejected[0].reason.startswith(reason)


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
