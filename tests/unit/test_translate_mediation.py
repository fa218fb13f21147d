"""Mediation export (CSV/XLSX) and REST translate."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sources.common import key_of
from connectors.sources.mediation.translate import TOPIC as MEDIATION_TOPIC
from connectors.sources.mediation.translate import (
    read_csv,
    read_xlsx,
    translate_csv,
    translate_json,
    translate_rows,
    translate_xlsx,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mediation"
EXPECTED = [("WC-TJ-2026-0712", "2026-07-15", ["applicant", "respondent"], "agreement", 12000.0, True),
            ("WC-TJ-2026-0713", "2026-07-16", ["applicant", "respondent", "respondent"], "in_progress", None, None),
            ("WC-TJ-2026-0714", "2026-07-17", ["applicant"], "failed", None, False)]


def summary(res) -> list[tuple]:
    return [(r["case_no"], r["accepted_date_local"], [p["role"] for p in r["parties"]], r["outcome"],
             r["compensation"], r["judicial_confirmation"]) for r in res.records]


@pytest.mark.parametrize("name", ["cases_utf8.csv", "cases_utf8_bom.csv", "cases_gbk.csv"])
def test_csv_encodings_group_parties(name: str) -> None:
    res = translate_csv((FIX / name).read_bytes(), received_at_ms=1)
    assert res.topic == MEDIATION_TOPIC and res.rejected == []
    assert summary(res) == EXPECTED
    first = res.records[0]
    assert first["parties"][1] == {"role": "respondent", "name": "李秀英", "id_number": "51322119700303002X",
                                   "phone": "13990375678", "address": "三江镇柒山村3组12号"}
    assert first["workstation"] == "三江镇无忧法治苑人民调解工作室" and first["dispute_type"] == "征地拆迁"
    assert first["admin_code"] == "513221107201" and first["raw_format"] == "mediation-csv"
    assert key_of(first, MEDIATION_TOPIC) == "WC-TJ-2026-0712"


def test_gbk_really_gbk() -> None:
    raw = (FIX / "cases_gbk.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert read_csv(raw)[0]["案件编号"] == "WC-TJ-2026-0712"


def test_xlsx_with_title_row_and_typed_cells() -> None:
    rows = read_xlsx((FIX / "cases.xlsx").read_bytes())
    assert len(rows) == 6
    res = translate_xlsx((FIX / "cases.xlsx").read_bytes(), received_at_ms=1)
    assert summary(res) == EXPECTED and res.rejected == []
    assert res.records[0]["parties"][0]["phone"] == "13888881234"  # int cell, no '.0'
    assert res.records[0]["raw_format"] == "mediation-xlsx"


def test_xlsx_and_csv_agree() -> None:
    a = translate_csv((FIX / "cases_utf8.csv").read_bytes(), received_at_ms=1).records
    b = translate_xlsx((FIX / "cases.xlsx").read_bytes(), received_at_ms=1).records
    strip = lambda rs: [{k: v for k, v in r.items() if k != "raw_format"} for r in rs]  # noqa: E731
    assert strip(a) == strip(b)


def test_bad_csv_reasons() -> None:
    """Only a bad required field (受理日期 here) or a row without 案件编号 rejects; a result word no
    table knows and an amount that is not a number are quality flags on an accepted case (until
    issue 13 both rejected the whole case)."""
    res = translate_csv((FIX / "cases_bad.csv").read_bytes(), received_at_ms=1)
    assert [r["case_no"] for r in res.records] == ["WC-TJ-2026-0712", "WC-TJ-2026-0791", "WC-TJ-2026-0792"]
    assert [r.reason for r in res.rejected] == [
        "row 6: missing 案件编号",
        "case WC-TJ-2026-0790: 受理日期 '2026-02-30' is not a real date"]
    by_no = {r["case_no"]: r for r in res.records}
    assert by_no["WC-TJ-2026-0791"]["outcome"] is None and by_no["WC-TJ-2026-0791"]["result_text"] == "也许"
    assert [(f["field"], f["value"]) for f in by_no["WC-TJ-2026-0791"]["quality"]] == [("调解结果", "也许")]
    assert by_no["WC-TJ-2026-0792"]["compensation"] is None
    assert by_no["WC-TJ-2026-0792"]["quality"] == [
        {"field": "协议金额", "reason": "协议金额 '一万' is not a number", "value": "一万"}]
    assert by_no["WC-TJ-2026-0712"]["quality"] == []


def test_rest_json() -> None:
    res = translate_json((FIX / "case_rest.json").read_bytes(), received_at_ms=5)
    rec = res.records[0]
    assert rec == {
        "case_no": "WC-TJ-2026-0715", "native_id": "WC-TJ-2026-0715", "workstation": "三江镇无忧法治苑人民调解工作室",
        "accepted_date_local": "2026-07-18", "dispute_type": "山林土地", "summary": "两户村民因林地界址发生争议",
        "address": "三江镇草坪村", "admin_code": "513221107202",
        "parties": [{"role": "applicant", "name": "王德学", "id_number": "513221196805120312", "phone": "138 8888 1234",
                     "address": "三江镇柒山村3组8号"},
                    {"role": "respondent", "name": "何建国", "id_number": None, "phone": "13700001111", "address": None}],
        "mediator": "赵明", "outcome": "agreement", "result_text": "调解成功", "compensation": 3500.5, "performance": "未履行",
        "judicial_confirmation": False, "received_at": 5, "raw_format": "mediation-json", "quality": []}
    bad = translate_json((FIX / "case_rest_bad.json").read_bytes(), received_at_ms=5)
    assert bad.records == [] and bad.rejected[0].reason == "missing 受理日期"


def test_rows_from_mappings_merge_duplicates_and_first_value_wins() -> None:
    row = {"案件编号": "C1", "调解组织": "站", "受理日期": "2026年7月1日", "纠纷类型": "物业", "当事人姓名": "甲",
           "协议金额": "1,200元"}
    res = translate_rows([row, dict(row), {**row, "调解组织": "", "当事人姓名": "乙"}], received_at_ms=1)
    rec = res.records[0]
    assert [p["name"] for p in rec["parties"]] == ["甲", "乙"]
    assert rec["workstation"] == "站" and rec["accepted_date_local"] == "2026-07-01" and rec["compensation"] == 1200.0


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04garbage", b"not a zip at all"])
def test_bad_xlsx_rejected(data: bytes) -> None:
    res = translate_xlsx(data, received_at_ms=1)
    assert res.records == [] and res.rejected[0].error_type == "MalformedXlsx"


def test_xlsx_without_header() -> None:
    from openpyxl import Workbook
    wb = Workbook()
    wb.active.append(["a", "b"])
    buf = io.BytesIO()
    wb.save(buf)
    assert translate_xlsx(buf.getvalue(), received_at_ms=1).rejected[0].reason == "XLSX sheet has no header row with 案件编号"


def test_csv_without_case_column() -> None:
    assert "no 案件编号 column" in translate_csv(b"a,b\n1,2\n", received_at_ms=1).rejected[0].reason


BASE_ROW = read_csv((FIX / "cases_utf8.csv").read_bytes())[0]
SCALARS = st.none() | st.text(max_size=20) | st.integers() | st.floats() | st.booleans() | st.dates()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(sorted(BASE_ROW)), SCALARS, max_size=8), min_size=1, max_size=4))
def test_fuzz_rows_never_raise(changes: list[dict]) -> None:
    res = translate_rows([{**BASE_ROW, **c} for c in changes], received_at_ms=1)
    assert res.records or res.rejected
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=1024))
def test_fuzz_bytes_never_raise(data: bytes) -> None:
    for fn in (translate_csv, translate_json):
        res = fn(data, received_at_ms=1)
        assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 20_000), st.binary(min_size=1, max_size=16))
def test_fuzz_mutated_xlsx_never_raise(pos: int, junk: bytes) -> None:
    data = (FIX / "cases.xlsx").read_bytes()
    pos %= len(data)
    res = translate_xlsx(data[:pos] + junk + data[pos + len(junk):], received_at_ms=1)
    assert res.records or res.rejected
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


def test_json_list_with_bad_item() -> None:
    good = json.loads((FIX / "case_rest.json").read_text(encoding="utf-8"))
    res = translate_json([good, {"caseNo": "X"}], received_at_ms=1)
    assert len(res.records) == 1 and res.rejected[0].reason == "case[1]: missing 受理日期"
    # 调解组织 is optional since issue 13: a case without it is accepted
    assert translate_json({**good, "workstation": None}, received_at_ms=1).records[0]["workstation"] is None


def test_rest_party_with_bad_values_costs_nothing_else() -> None:
    """A party object that is not an object, or a party's ID/phone that cannot be one, is a flag
    naming the native key; the case and its other parties are kept."""
    good = json.loads((FIX / "case_rest.json").read_text(encoding="utf-8"))
    parties = [{**good["parties"][0], "idCard": "12345"}, "何建国", {"name": "李四", "phone": "无"}]
    res = translate_json({**good, "parties": parties}, received_at_ms=1)
    assert res.rejected == []
    rec = res.records[0]
    assert [p["name"] for p in rec["parties"]] == ["王德学", "李四"]
    assert rec["parties"][0]["id_number"] is None and rec["parties"][0]["phone"] == "138 8888 1234"
    assert [f["field"] for f in rec["quality"]] == ["parties[0].idCard", "parties[1]", "parties[2].phone"]
