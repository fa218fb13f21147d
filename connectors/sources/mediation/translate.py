"""People's-mediation (人民调解) exports and REST cases → MediationCase raw records (pure).

Contract: the export has one row per party with the case columns repeated; `translate_rows`
groups rows by 案件编号 (first-seen order) into one record with all its parties. `read_csv`
auto-detects UTF-8 / UTF-8-BOM / GBK, `read_xlsx` reads the first sheet (openpyxl, read-only).
`translate_json` takes the REST form. No function raises on bad input; rejections name the case
and the column.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, Final

from connectors.sources.common import (
    Rejected,
    TranslateError,
    TranslateResult,
    clean_str,
    decode_text_auto,
    never_raises,
    parse_float,
    parse_json,
    require,
    result,
)

TOPIC: Final = "raw.mediation.v1"
SCHEMA: Final = "pingan.raw.MediationCase"

RAW_FORMAT_CSV: Final = "mediation-csv"
RAW_FORMAT_XLSX: Final = "mediation-xlsx"
RAW_FORMAT_JSON: Final = "mediation-json"
MAX_ROWS: Final = 100_000
CASE_NUMBER_COLUMN: Final = "案件编号"  # the export column that groups party rows into cases

#: Export column → record field (case-level columns).
CASE_COLUMNS: Final[Mapping[str, str]] = {
    "案件编号": "case_no", "调解组织": "workstation", "受理日期": "accepted_date_local",
    "纠纷类型": "dispute_type", "纠纷简要情况": "summary", "纠纷发生地": "address",
    "行政区划代码": "admin_code", "调解员": "mediator", "调解结果": "result",
    "协议金额": "compensation", "履行情况": "performance", "司法确认": "judicial_confirmation",
}
PARTY_COLUMNS: Final[Mapping[str, str]] = {
    "当事人类型": "role", "当事人姓名": "name", "当事人身份证号": "id_number",
    "当事人电话": "phone", "当事人住址": "address",
}

RESULTS: Final[Mapping[str, str]] = {
    "调解成功": "agreement", "成功": "agreement", "达成协议": "agreement", "agreement": "agreement",
    "调解不成功": "failed", "调解失败": "failed", "不成功": "failed", "失败": "failed", "failed": "failed",
    "调解中": "in_progress", "正在调解": "in_progress", "in_progress": "in_progress",
}
PARTY_ROLES: Final[Mapping[str, str]] = {
    "申请人": "applicant", "被申请人": "respondent", "当事人": "party", "第三人": "third_party",
}
_TRUE: Final = frozenset({"是", "已确认", "true", "1", "yes", "y"})
_FALSE: Final = frozenset({"否", "未确认", "false", "0", "no", "n"})


def _accepted_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = require(clean_str(value), "受理日期")
    match = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T]00:00(?::00)?)?", text)
    if not match:
        raise TranslateError(f"受理日期 {text[:30]!r} is not YYYY-MM-DD or YYYY/MM/DD")
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3))).isoformat()
    except ValueError:
        raise TranslateError(f"受理日期 {text[:30]!r} is not a real date") from None


def _result(value: Any) -> str | None:
    text = clean_str(value)
    if text is None:
        return None
    if text not in RESULTS:
        raise TranslateError(f"调解结果 {text[:20]!r} not one of 调解成功/调解不成功/调解中")
    return RESULTS[text]


def _confirmation(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = clean_str(value)
    if text is None:
        return None
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise TranslateError(f"司法确认 {text[:20]!r} is not 是/否")


def _admin_code(value: Any) -> str | None:
    text = clean_str(value)
    if text is not None and not re.fullmatch(r"\d{6,12}", text):
        raise TranslateError(f"行政区划代码 {text[:20]!r} must be 6-12 digits")
    return text


def _party(role: Any, name: Any, id_number: Any, phone: Any, address: Any) -> dict[str, Any] | None:
    party = {
        "role": None,
        "name": clean_str(name),
        "id_number": clean_str(id_number),
        "phone": clean_str(phone),
        "address": clean_str(address),
    }
    if not any(party.values()):
        return None
    role_text = clean_str(role)
    party["role"] = PARTY_ROLES.get(role_text, role_text) if role_text else "party"
    return party


def _case_record(case: Mapping[str, Any], parties: list[dict[str, Any]], received_at_ms: int,
                 raw_format: str) -> dict[str, Any]:
    case_no = require(clean_str(case.get("case_no")), "案件编号")
    raw_compensation = case.get("compensation")
    if isinstance(raw_compensation, str):
        raw_compensation = raw_compensation.replace("元", "").replace("¥", "").replace("￥", "")
    compensation = parse_float(raw_compensation, "协议金额", 0.0, 1e12)
    return {
        "case_no": case_no,
        "native_id": case_no,
        "workstation": require(clean_str(case.get("workstation")), "调解组织"),
        "accepted_date_local": _accepted_date(case.get("accepted_date_local")),
        "dispute_type": require(clean_str(case.get("dispute_type")), "纠纷类型"),
        "summary": clean_str(case.get("summary")),
        "address": clean_str(case.get("address")),
        "admin_code": _admin_code(case.get("admin_code")),
        "parties": parties,
        "mediator": clean_str(case.get("mediator")),
        "result": _result(case.get("result")),
        "compensation": compensation,
        "performance": clean_str(case.get("performance")),
        "judicial_confirmation": _confirmation(case.get("judicial_confirmation")),
        "received_at": int(received_at_ms),
        "raw_format": raw_format,
    }


@never_raises(TOPIC, SCHEMA)
def translate_rows(rows: Iterable[Mapping[str, Any]], *, received_at_ms: int,
                   raw_format: str = RAW_FORMAT_CSV) -> TranslateResult:
    """Group export rows (one per party) by 案件编号 into MediationCase records.

    Case-level columns take the first non-empty value seen for the case; identical party rows
    are merged. Rows without 案件编号 are rejected one by one; a bad case is rejected whole."""
    cases: dict[str, dict[str, Any]] = {}
    parties: dict[str, list[dict[str, Any]]] = {}
    rejected: list[Rejected] = []
    for index, row in enumerate(rows):
        if index >= MAX_ROWS:
            rejected.append(Rejected(f"more than {MAX_ROWS} rows; the rest were not read", "TooLarge"))
            break
        if not isinstance(row, Mapping):
            rejected.append(Rejected(f"row {index + 1}: not a mapping", "InvalidInput"))
            continue
        clean = {str(k).strip().lstrip("\ufeff"): v for k, v in row.items() if k is not None}
        try:
            case_no = clean_str(clean.get(CASE_NUMBER_COLUMN))
        except TranslateError as exc:
            rejected.append(Rejected(f"row {index + 1}: {exc.reason}", exc.error_type))
            continue
        if case_no is None:
            if any(clean_str(v) for v in clean.values() if not isinstance(v, (list, dict))):
                rejected.append(Rejected(f"row {index + 1}: missing 案件编号", "MissingField"))
            continue
        case = cases.setdefault(case_no, {})
        for column, field_name in CASE_COLUMNS.items():
            if case.get(field_name) in (None, "") and clean.get(column) not in (None, ""):
                case[field_name] = clean.get(column)
        try:
            party = _party(*(clean.get(c) for c in PARTY_COLUMNS))
        except TranslateError as exc:
            rejected.append(Rejected(f"case {case_no} row {index + 1}: {exc.reason}", exc.error_type))
            continue
        bucket = parties.setdefault(case_no, [])
        if party is not None and party not in bucket:
            bucket.append(party)
    records: list[dict[str, Any]] = []
    for case_no, case in cases.items():
        try:
            records.append(_case_record(case, parties.get(case_no, []), received_at_ms, raw_format))
        except TranslateError as exc:
            rejected.append(Rejected(f"case {case_no}: {exc.reason}", exc.error_type))
    return result(TOPIC, SCHEMA, records, rejected)


def read_csv(data: bytes) -> list[dict[str, Any]]:
    """Rows of a CSV export, encoding auto-detected (UTF-8, UTF-8 with BOM, GBK/GB18030).

    Raises TranslateError when undecodable or without a 案件编号 column."""
    text = decode_text_auto(data)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [f.strip() for f in (reader.fieldnames or [])]
        if CASE_NUMBER_COLUMN not in fields:
            raise TranslateError("mediation CSV has no 案件编号 column (wrong encoding or not an export?)",
                                 "MissingField")
        return [dict(r) for r in reader]
    except csv.Error as exc:
        raise TranslateError(f"malformed CSV: {exc}", "MalformedCsv") from None


def read_xlsx(data: bytes) -> list[dict[str, Any]]:
    """Rows of the first worksheet of an XLSX export (header = first row containing 案件编号).

    Raises TranslateError for files openpyxl cannot read."""
    import zipfile

    from openpyxl import load_workbook  # heavy import kept out of module import time

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError, IndexError, AttributeError) as exc:
        raise TranslateError(f"not a readable XLSX workbook: {type(exc).__name__}: {exc}", "MalformedXlsx") from None
    except Exception as exc:  # noqa: BLE001 - openpyxl raises a wide variety on corrupt files
        raise TranslateError(f"not a readable XLSX workbook: {type(exc).__name__}", "MalformedXlsx") from None
    try:
        sheet = workbook.worksheets[0] if workbook.worksheets else None
        if sheet is None:
            raise TranslateError("XLSX workbook has no worksheet", "MalformedXlsx")
        header: list[str] | None = None
        rows: list[dict[str, Any]] = []
        for values in sheet.iter_rows(values_only=True):
            if header is None:
                cells = [str(v).strip() if v is not None else "" for v in values]
                if CASE_NUMBER_COLUMN in cells:
                    header = cells
                continue
            if len(rows) >= MAX_ROWS:
                break
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                continue
            rows.append({name: value for name, value in zip(header, values) if name})
        if header is None:
            raise TranslateError("XLSX sheet has no header row with 案件编号", "MissingField")
        return rows
    finally:
        workbook.close()


def translate_csv(data: bytes, *, received_at_ms: int) -> TranslateResult:
    """Read and translate a CSV export (never raises)."""
    try:
        rows = read_csv(data)
    except TranslateError as exc:
        return result(TOPIC, SCHEMA, rejected=[exc.rejected()])
    return translate_rows(rows, received_at_ms=received_at_ms, raw_format=RAW_FORMAT_CSV)


def translate_xlsx(data: bytes, *, received_at_ms: int) -> TranslateResult:
    """Read and translate an XLSX export (never raises)."""
    try:
        rows = read_xlsx(data)
    except TranslateError as exc:
        return result(TOPIC, SCHEMA, rejected=[exc.rejected()])
    return translate_rows(rows, received_at_ms=received_at_ms, raw_format=RAW_FORMAT_XLSX)


def _json_case(obj: Any, received_at_ms: int) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise TranslateError(f"mediation case must be a JSON object, got {type(obj).__name__}", "MalformedJson")
    parties_raw = obj.get("parties") or []
    if not isinstance(parties_raw, list):
        raise TranslateError("parties must be a list")
    parties: list[dict[str, Any]] = []
    for i, p in enumerate(parties_raw):
        if not isinstance(p, Mapping):
            raise TranslateError(f"parties[{i}] must be an object")
        party = _party(p.get("role"), p.get("name"), p.get("idCard") or p.get("idNumber"), p.get("phone"),
                       p.get("address"))
        if party is not None:
            parties.append(party)
    case = {
        "case_no": obj.get("caseNo"), "workstation": obj.get("workstation"),
        "accepted_date_local": obj.get("acceptedDate"), "dispute_type": obj.get("disputeType"),
        "summary": obj.get("summary"), "address": obj.get("address"), "admin_code": obj.get("adminCode"),
        "mediator": obj.get("mediator"), "result": obj.get("result"), "compensation": obj.get("compensation"),
        "performance": obj.get("performance"), "judicial_confirmation": obj.get("judicialConfirmation"),
    }
    return _case_record(case, parties, received_at_ms, RAW_FORMAT_JSON)


@never_raises(TOPIC, SCHEMA)
def translate_json(obj: bytes | str | Mapping[str, Any] | list[Any], *, received_at_ms: int) -> TranslateResult:
    """Translate the REST form (`POST /mediation/cases`): one case object or a list of them."""
    doc = obj if isinstance(obj, (Mapping, list)) else parse_json(obj)
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise TranslateError("empty list of mediation cases", "MissingField")
    records: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        try:
            records.append(_json_case(item, received_at_ms))
        except TranslateError as exc:
            prefix = f"case[{index}]: " if len(items) > 1 else ""
            rejected.append(Rejected(prefix + exc.reason, exc.error_type))
    return result(TOPIC, SCHEMA, records, rejected)
