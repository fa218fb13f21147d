"""The mediation and grid variant corpus (tests/fixtures/variants/{mediation,grid}/, issue 13).

Each variant folder holds one real-world-shaped delivery and, when the built-in profile does not
cover it, the deployment profile (`<feed>.toml`) that does. Every variant must ingest through the
feed's SourceSpec with no dead letter (translate and normalize), lose no field (a native value is
in the record, in a quality flag, or its column is reported in `unmapped`), and classify as
expected. Where each variant comes from: docs/native-formats.md (Mediation, Grid app report).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from connectors.sources import registry
from connectors.sources.common import TranslateResult, clean_str, parse_json
from connectors.sources.grid.spec import SPEC as GRID
from connectors.sources.grid.translate import AliasReader
from connectors.sources.mediation.spec import SPEC as MEDIATION
from connectors.sources.mediation.translate import resolve_columns
from connectors.sources.spec import Payload, SourceContext
from streams.domain.normalize import Normalizer

VARIANTS = Path(__file__).resolve().parents[1] / "fixtures" / "variants"
CONTENT_TYPES = {".csv": "text/csv", ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                 ".json": "application/json"}


def context_for(folder: Path, feed: str) -> SourceContext:
    """The built-in profiles, extended by the variant's `<feed>.toml` when it has one."""
    return registry.context(profile_dir=folder if (folder / f"{feed}.toml").is_file() else None)


def data_file(folder: Path) -> Path:
    (found,) = [p for p in folder.iterdir() if p.suffix in CONTENT_TYPES]
    return found


def ingest(feed: str, variant: str) -> tuple[TranslateResult, SourceContext, Path]:
    folder = VARIANTS / feed / variant
    ctx = context_for(folder, feed)
    path = data_file(folder)
    spec = MEDIATION if feed == "mediation" else GRID
    res = spec.translate(Payload(path.read_bytes(), CONTENT_TYPES[path.suffix], 1_786_000_000_000), ctx)
    return res, ctx, path


def normalize_all(feed: str, res: TranslateResult) -> list[dict[str, Any]]:
    normalizer = Normalizer(b"k" * 32, "Asia/Shanghai", mappers=registry.mappers())
    spec = MEDIATION if feed == "mediation" else GRID
    return [normalizer.normalize(spec.source, r) for r in res.records]  # raises = a dead letter


def flagged(record: Mapping[str, Any]) -> set[str]:
    return {f["field"] for f in record["quality"]}


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value in ([], {})


# --- mediation ----------------------------------------------------------------------------------

MEDIATION_VARIANTS: dict[str, dict[str, Any]] = {
    "sentence_results": {
        "results": {"WC-TJ-2026-0801": "agreement", "WC-TJ-2026-0802": "agreement", "WC-TJ-2026-0803": "failed",
                    "WC-TJ-2026-0804": "in_progress", "WC-TJ-2026-0805": "failed",
                    "WC-TJ-2026-0806": "agreement", "WC-TJ-2026-0807": "in_progress",
                    "WC-TJ-2026-0808": "agreement", "WC-TJ-2026-0809": None},
        "flags": {("WC-TJ-2026-0808", "当事人电话 (row 9)"), ("WC-TJ-2026-0809", "当事人身份证号 (row 10)"),
                  ("WC-TJ-2026-0809", "调解结果")},
        "unmapped": set(),
    },
    "register_anhao_gbk": {
        "results": {"（2026）汶三调字第031号": "agreement", "（2026）汶三调字第032号": "failed"},
        "flags": set(),
        "unmapped": {"案件来源", "结案时间"},
    },
    "xlsx_title_rows": {
        "results": {"WZ-2026-0815": "agreement", "WZ-2026-0816": "in_progress", "WZ-2026-0817": "failed"},
        "flags": set(),
        "unmapped": {"序号"},
    },
    "county_profile_columns": {
        "results": {"MJ513221-20260820-001": "agreement", "MJ513221-20260821-002": "failed",
                    "MJ513221-20260822-003": "in_progress"},
        "flags": set(),
        "unmapped": {"录入人"},
    },
    "rest_snake_case": {
        "results": {"WC-API-2026-0901": "agreement", "WC-API-2026-0902": "failed"},
        "flags": set(),
        "unmapped": {"case_source", "parties.nation"},
    },
}


def native_mediation_cases(path: Path, ctx: SourceContext) -> dict[str, list[Mapping[str, Any]]]:
    """Native rows (or REST objects) per case number, read independently of translate's grouping."""
    profile = ctx.profile("mediation")
    if path.suffix == ".json":
        items = parse_json(path.read_bytes())
        out: dict[str, list[Mapping[str, Any]]] = {}
        for item in items:
            cols = resolve_columns(profile, item.keys())
            out.setdefault(str(item[cols.case["case_no"]]), []).append(item)
        return out
    rows = MEDIATION.read_table(path.read_bytes(), path.name)
    cols = resolve_columns(profile, rows[0].keys())
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(str(clean_str(row[cols.case["case_no"]])), []).append(row)
    return grouped


@pytest.mark.parametrize("variant", sorted(MEDIATION_VARIANTS))
def test_mediation_variant_ingests_whole(variant: str) -> None:
    expected = MEDIATION_VARIANTS[variant]
    res, ctx, path = ingest("mediation", variant)
    assert res.rejected == [], res.rejected
    assert {r["case_no"]: r["outcome"] for r in res.records} == expected["results"]
    assert {(r["case_no"], f) for r in res.records for f in flagged(r)} == expected["flags"]
    assert set(res.unmapped) == expected["unmapped"]
    events = normalize_all("mediation", res)
    assert len(events) == len(res.records)
    # no lost field: every mapped native value is in the record or flagged
    profile = ctx.profile("mediation")
    native = native_mediation_cases(path, ctx)
    for record in res.records:
        rows = native[record["case_no"]]
        cols = resolve_columns(profile, rows[0].keys())
        for field_name, column in cols.case.items():
            if any(not blank(row.get(column)) for row in rows):
                field_ = {"result": "outcome"}.get(field_name, field_name)  # the column concept vs the record field
                assert record[field_] is not None or column in flagged(record), (variant, field_name)
        if cols.parties:
            natives = [p for row in rows for p in row.get(cols.parties) or []]
        else:
            natives = [row for row in rows if any(not blank(row.get(c)) for c in cols.party.values())]
        assert len(record["parties"]) == len(natives), variant
        for party, raw in zip(record["parties"], natives):
            pcols = resolve_columns(profile, raw.keys(), party_only=True) if cols.parties else cols
            for field_name, column in pcols.party.items():
                if not blank(raw.get(column)):
                    assert party[field_name] is not None or any(
                        column in f for f in flagged(record)), (variant, field_name)
        if record["result_text"] is not None:
            assert record["result_text"] == clean_str(rows[0][cols.case["result"]])


def test_sentence_results_keep_the_text_verbatim() -> None:
    res, _, _ = ingest("mediation", "sentence_results")
    by_no = {r["case_no"]: r for r in res.records}
    assert by_no["WC-TJ-2026-0801"]["result_text"] == "调解成功，签订协议，被申请人于8月10日前疏通排水沟并赔偿500元"
    assert by_no["WC-TJ-2026-0806"]["compensation"] == 3000.0
    assert by_no["WC-TJ-2026-0808"]["compensation"] == 12000.0 and by_no["WC-TJ-2026-0808"]["judicial_confirmation"]
    unknown = by_no["WC-TJ-2026-0809"]
    assert unknown["outcome"] is None and unknown["result_text"] == "调处中止，当事人外出务工"
    # canonical events drop flag values; the reasons must not carry an ID number or a phone either
    reasons = " ".join(f["reason"] for r in res.records for f in r["quality"])
    assert "5132211958" not in reasons and "不详" not in reasons
    # a bad party ID on one row costs neither the case nor the party: the name stays, the ID is flagged
    assert unknown["parties"][0]["name"] == "陈秀兰" and unknown["parties"][0]["id_number"] is None


def test_accepted_time_kept_and_xlsx_typed_cells() -> None:
    gbk, _, _ = ingest("mediation", "register_anhao_gbk")
    assert gbk.records[0]["accepted_date_local"] == "2026-07-20 09:30:00"
    assert [p["role"] for p in gbk.records[0]["parties"]] == ["applicant", "respondent"]
    xlsx, _, _ = ingest("mediation", "xlsx_title_rows")
    first = xlsx.records[0]
    assert first["accepted_date_local"] == "2026-08-15" and first["compensation"] == 6000.0
    assert first["parties"][0]["phone"] == "13700003333" and first["raw_format"] == "mediation-xlsx"


def test_county_columns_need_their_profile() -> None:
    """Without its profile the county export has no known case-number column: one clear rejection."""
    path = data_file(VARIANTS / "mediation" / "county_profile_columns")
    res = MEDIATION.translate(Payload(path.read_bytes(), "text/csv", 1), registry.context())
    assert res.records == [] and "no 案件编号 column" in res.rejected[0].reason
    assert "aliases.case_no" in res.rejected[0].reason


@pytest.mark.parametrize(("drop", "reason"), [
    ("案号", "no 案件编号 column"),
    ("受理时间", "missing 受理日期"),
    ("纠纷类别", "missing 纠纷类型"),
])
def test_mediation_missing_required_column_rejects(drop: str, reason: str) -> None:
    path = data_file(VARIANTS / "mediation" / "register_anhao_gbk")
    rows = [{k: v for k, v in row.items() if k != drop} for row in MEDIATION.read_table(path.read_bytes(), path.name)]
    res = MEDIATION.translate_rows(rows, 1, "mediation-csv", registry.context())
    assert res.records == [] and res.rejected and all(reason in r.reason for r in res.rejected), res.rejected


def test_deployment_classifier_goes_first(tmp_path: Path) -> None:
    (tmp_path / "mediation.toml").write_text('[classify]\nresult = [["中止", "in_progress"]]\n', encoding="utf-8")
    path = data_file(VARIANTS / "mediation" / "sentence_results")
    res = MEDIATION.translate(Payload(path.read_bytes(), "text/csv", 1), registry.context(profile_dir=tmp_path))
    by_no = {r["case_no"]: r for r in res.records}
    assert by_no["WC-TJ-2026-0809"]["outcome"] == "in_progress"
    assert by_no["WC-TJ-2026-0803"]["outcome"] == "failed"  # the built-in pairs still apply after it


# --- grid ---------------------------------------------------------------------------------------

GRID_VARIANTS: dict[str, dict[str, Any]] = {
    "lixia_event_detail": {
        "categories": {"1546973042143518720": ("17001", "占用消防通道", "fire"),
                       "1546973042143518721": ("0102", "邻里纠纷", "dispute")},
        "coord_system": "WGS84",
        "flags": set(),
        "unmapped": {"eventName", "eventFirstType", "eventScope", "aboutPeopleNum", "cityCode", "cityName",
                     "streetCode", "streetName", "communityCode", "communityName", "gridName",
                     "approvalStatus", "eventUserAgent"},
    },
    "category_names": {
        "categories": {"WG20260715000201": ("02", "治安隐患", "public_order"),
                       "WG20260715000202": ("03", "消防隐患", "fire"),
                       "WG20260715000203": ("0105", "劳资纠纷隐患", "dispute"),
                       "WG20260715000204": ("99", "河道垃圾", "other")},
        "coord_system": "GCJ02",
        "flags": {("WG20260715000204", "category")},
        "unmapped": {"category_id"},
    },
    "dict_codes_hazard": {
        "categories": {"SA-20260716-0001": ("01", "治安隐患", "public_order"),
                       "SA-20260716-0002": ("02", "消防隐患", "fire"),
                       "SA-20260716-0003": ("04", "劳资纠纷隐患", "dispute")},
        "coord_system": "GCJ02",
        "flags": set(),
        "unmapped": set(),
    },
    "gbk_snake_bd09": {
        "categories": {"GR-0717-001": ("0401", "山洪泥石流", "disaster"),
                       "GR-0717-002": ("0501", "求助/就医", "help")},
        "coord_system": "BD09",
        "flags": set(),
        "unmapped": set(),
    },
}


@pytest.mark.parametrize("variant", sorted(GRID_VARIANTS))
def test_grid_variant_ingests_whole(variant: str) -> None:
    expected = GRID_VARIANTS[variant]
    res, ctx, path = ingest("grid", variant)
    assert res.rejected == [], res.rejected
    events = normalize_all("grid", res)
    assert {r["report_id"]: (r["category_code"], r["category_name"], e["kind"])
            for r, e in zip(res.records, events)} == expected["categories"]
    assert {r["coord_system"] for r in res.records} == {expected["coord_system"]}
    assert {(r["report_id"], f) for r in res.records for f in flagged(r)} == expected["flags"]
    assert set(res.unmapped) == expected["unmapped"]
    # no lost field: what the report sent is in the record (or flagged)
    profile = ctx.profile("grid")
    items = parse_json(path.read_bytes())
    for record, raw in zip(res.records, items if isinstance(items, list) else [items]):
        r = AliasReader(raw, profile)
        loc = AliasReader(raw.get(r.key("location") or "") or {}, profile)
        for field_name, target in (("address", "address"), ("status", "status"), ("persons", "persons")):
            if not blank(r.get(field_name)):
                assert not blank(record[target]) or target in flagged(record), (variant, field_name)
        if not blank(loc.get("longitude") or r.get("longitude")):
            assert record["longitude"] is not None and record["latitude"] is not None, variant
        persons = r.get("persons") or []
        for person, raw_person in zip(record["persons"], persons):
            for key, value in raw_person.items():
                assert blank(value) or value in person.values() or str(value).lower() in person.values(), (key, value)


@pytest.mark.parametrize(("drop", "reason"), [
    ("id", "missing reportId"),
    ("happenTime", "missing reportTime"),
    ("eventContent", None),  # eventName is also a description alias: the report is still accepted
    ("createBy", "missing reporterId"),
    ("gridCode", "missing gridCode"),
])
def test_grid_missing_required_field_rejects(drop: str, reason: str | None) -> None:
    folder = VARIANTS / "grid" / "lixia_event_detail"
    items = json.loads(data_file(folder).read_text(encoding="utf-8"))
    body = json.dumps([{k: v for k, v in items[0].items() if k != drop}], ensure_ascii=False).encode()
    res = GRID.translate(Payload(body, "application/json", 1), context_for(folder, "grid"))
    if reason is None:
        assert res.rejected == [] and res.records[0]["description"] == items[0]["eventName"]
    else:
        assert res.records == [] and reason in res.rejected[0].reason, res.rejected


def test_profile_ignore_list_silences_unmapped(tmp_path: Path) -> None:
    (tmp_path / "grid.toml").write_text('ignore = ["cityName", "gridName"]\n', encoding="utf-8")
    path = data_file(VARIANTS / "grid" / "lixia_event_detail")
    res = GRID.translate(Payload(path.read_bytes(), "application/json", 1), registry.context(profile_dir=tmp_path))
    assert "cityName" not in res.unmapped and "gridName" not in res.unmapped and "cityCode" in res.unmapped
    (tmp_path / "mediation.toml").write_text('ignore = ["案件来源"]\n', encoding="utf-8")
    path = data_file(VARIANTS / "mediation" / "register_anhao_gbk")
    res = MEDIATION.translate(Payload(path.read_bytes(), "text/csv", 1), registry.context(profile_dir=tmp_path))
    assert set(res.unmapped) == {"结案时间"}


def test_dict_codes_need_their_profile() -> None:
    """Without the county's table its 01 would read as the built-in 矛盾纠纷: the profile is what
    makes 01 治安隐患 (a public-order event)."""
    path = data_file(VARIANTS / "grid" / "dict_codes_hazard")
    res = GRID.translate(Payload(path.read_bytes(), "application/json", 1), registry.context())
    assert res.records[0]["category_name"] == "矛盾纠纷"
