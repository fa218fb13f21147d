"""People's-mediation (人民调解) exports and REST cases → MediationCase raw records (pure).

Contract: the export has one row per party with the case columns repeated; `translate_rows`
groups rows by the case-number column (first-seen order) into one record with all its parties.
Column and key names come from the feed's profile (`profile.toml` beside this file, extended by
the deployment's ``mediation.toml``): ``[aliases]`` lists the native names of every field, first
present wins. `read_csv` auto-detects UTF-8 / UTF-8-BOM / GBK, `read_xlsx` reads the first sheet
(openpyxl, read-only). `translate_json` takes the REST form. No function raises on bad input.

Only a missing or invalid 案件编号, 受理日期 or 纠纷类型 rejects a case. Every other field is
optional: a value that cannot be read is left out of the record and noted as a quality flag
(field, reason, raw value), so one party row's bad phone never costs the case. 调解结果 is mapped
to an outcome by ``[synonyms.result]`` (exact wording) then the ``[classify] result`` keywords
(a sentence such as "调解成功，签订协议"), and kept verbatim in ``result_text``. Quality flags name
the native column (``调处结果``, ``当事人电话 (row 3)``, ``parties[1].idCard``). Native columns no
alias reads (nor the profile's ``ignore`` list) are reported in `TranslateResult.unmapped`.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from connectors.sources.common import (
    Rejected,
    TranslateError,
    TranslateResult,
    check_id_number,
    check_phone,
    clean_str,
    decode_text_auto,
    never_raises,
    optional,
    parse_float,
    parse_json,
    quality_flag,
    require,
    result,
    translate_items,
    with_unmapped,
)
from connectors.sources.profile import Profile, builtin_profile

FEED: Final = "mediation"
TOPIC: Final = "raw.mediation.v1"
SCHEMA: Final = "pingan.raw.MediationCase"

RAW_FORMAT_CSV: Final = "mediation-csv"
RAW_FORMAT_XLSX: Final = "mediation-xlsx"
RAW_FORMAT_JSON: Final = "mediation-json"
MAX_ROWS: Final = 100_000
CASE_NUMBER_COLUMN: Final = "案件编号"  # the canonical grouping column (aliases: profile case_no)

#: Record field → today's export column (the fallback when a profile lists no alias).
CASE_COLUMNS: Final[Mapping[str, str]] = {
    "case_no": "案件编号", "workstation": "调解组织", "accepted_date_local": "受理日期",
    "dispute_type": "纠纷类型", "summary": "纠纷简要情况", "address": "纠纷发生地",
    "admin_code": "行政区划代码", "mediator": "调解员", "result": "调解结果",
    "compensation": "协议金额", "performance": "履行情况", "judicial_confirmation": "司法确认",
}
#: Party field → (profile alias key, today's export column).
PARTY_COLUMNS: Final[Mapping[str, tuple[str, str]]] = {
    "role": ("party_role", "当事人类型"), "name": ("party_name", "当事人姓名"),
    "id_number": ("party_id_number", "当事人身份证号"), "phone": ("party_phone", "当事人电话"),
    "address": ("party_address", "当事人住址"),
}
#: REST fallbacks (when a profile lists no alias).
REST_KEYS: Final[Mapping[str, str]] = {
    "case_no": "caseNo", "workstation": "workstation", "accepted_date_local": "acceptedDate",
    "dispute_type": "disputeType", "summary": "summary", "address": "address", "admin_code": "adminCode",
    "mediator": "mediator", "result": "result", "compensation": "compensation", "performance": "performance",
    "judicial_confirmation": "judicialConfirmation", "parties": "parties", "party_role": "role",
    "party_name": "name", "party_id_number": "idCard", "party_phone": "phone", "party_address": "address",
}
#: Chinese names used in reasons (the register's own words).
LABELS: Final[Mapping[str, str]] = {**CASE_COLUMNS, **{f: c for f, (_, c) in PARTY_COLUMNS.items()}}



def _norm(name: Any) -> str:
    return str(name).strip().lstrip("\ufeff").strip().lower()


@dataclass(frozen=True)
class Columns:
    """Which native column (or key) feeds which record field, resolved once per batch."""

    case: Mapping[str, str]
    party: Mapping[str, str]
    parties: str | None

    ignore: frozenset[str] = frozenset()

    @property
    def known(self) -> frozenset[str]:
        """Normalized names that are read (or listed in the profile's ``ignore``)."""
        names = [*self.case.values(), *self.party.values()]
        return frozenset(_norm(n) for n in ([*names, self.parties] if self.parties else names)) | self.ignore


def _pick(present: Mapping[str, str], aliases: Iterable[str], taken: set[str]) -> str | None:
    for alias in aliases:
        original = present.get(_norm(alias))
        if original is not None and original not in taken:
            return original
    return None


def resolve_columns(profile: Profile, names: Iterable[Any], *, party_only: bool = False) -> Columns:
    """Map the native names present (a header or an object's keys) to record fields (only the
    party fields for a REST party object)."""
    present: dict[str, str] = {}
    for name in names:
        if name is not None:
            present.setdefault(_norm(name), str(name))
    taken: set[str] = set()
    case: dict[str, str] = {}
    for field_name, column in ({} if party_only else CASE_COLUMNS).items():
        found = _pick(present, profile.aliases(field_name, column, REST_KEYS[field_name]), taken)
        if found is not None:
            case[field_name] = found
            taken.add(found)
    parties = None if party_only else _pick(present, profile.aliases("parties", REST_KEYS["parties"]), taken)
    if parties is not None:
        taken.add(parties)
    party: dict[str, str] = {}
    for field_name, (alias_key, column) in PARTY_COLUMNS.items():
        found = _pick(present, profile.aliases(alias_key, column, REST_KEYS[alias_key]), taken)
        if found is not None:
            party[field_name] = found
            taken.add(found)
    ignore = profile.get("ignore", []) or []
    return Columns(case, party, parties, frozenset(_norm(n) for n in ignore if isinstance(n, str)))


# --- field readers (each raises TranslateError naming the field) --------------------------------

def _text(value: Any, label: str) -> str | None:
    try:
        return clean_str(value)
    except TranslateError as exc:
        raise TranslateError(f"{label}: {exc.reason}") from None


def _accepted_date(value: Any) -> str:
    if isinstance(value, datetime):
        if (value.hour, value.minute, value.second) == (0, 0, 0):
            return value.date().isoformat()
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    text = require(_text(value, "受理日期"), "受理日期")
    match = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T](\d{1,2})[:：时](\d{2})(?:[:：分](\d{2})秒?)?)?",
                         text)
    if not match:
        raise TranslateError(f"受理日期 {text[:30]!r} is not YYYY-MM-DD or YYYY/MM/DD")
    y, mo, d, hh, mm, ss = match.groups()
    try:
        day = date(int(y), int(mo), int(d))
        if hh is None or (int(hh), int(mm), int(ss or 0)) == (0, 0, 0):
            return day.isoformat()
        return datetime(day.year, day.month, day.day, int(hh), int(mm), int(ss or 0)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise TranslateError(f"受理日期 {text[:30]!r} is not a real date") from None


def classify_result(text: str, profile: Profile) -> str | None:
    """The outcome of a 调解结果 text: exact synonym, else the first classifier keyword it contains
    (a deployment's ``[classify] result`` pairs are tried first, then the built-in ones)."""
    exact = profile.synonyms("result").get(text.strip().lower())
    if exact is not None:
        return exact
    for keyword, outcome in dict.fromkeys((*profile.classifier("result"), *builtin_profile(FEED).classifier("result"))):
        if keyword and keyword in text:
            return outcome
    return None


def _confirmation(value: Any, profile: Profile) -> bool | None:
    if isinstance(value, bool):
        return value
    text = _text(value, "司法确认")
    if text is None:
        return None
    mapped = profile.synonyms("judicial_confirmation").get(text.lower())
    if mapped is None:
        raise TranslateError(f"司法确认 {text[:20]!r} is not one of the known wordings (是/否; synonyms.judicial_confirmation)")
    return mapped.strip().lower() == "true"


def _admin_code(value: Any) -> str | None:
    text = _text(value, "行政区划代码")
    if text is not None and not re.fullmatch(r"\d{6,12}", text):
        raise TranslateError(f"行政区划代码 {text[:20]!r} must be 6-12 digits")
    return text


def _compensation(value: Any) -> float | None:
    if isinstance(value, str):
        text = re.sub(r"(人民币|元|¥|￥|RMB|\s)", "", value, flags=re.IGNORECASE)
        if text.endswith("万") and len(text) > 1:
            try:
                number = parse_float(text[:-1], "协议金额", 0.0, 1e8)
            except TranslateError:
                raise TranslateError(f"协议金额 {value.strip()[:30]!r} is not a number") from None
            return None if number is None else round(number * 10_000, 2)
        value = text
    return parse_float(value, "协议金额", 0.0, 1e12)


def _role(value: Any, profile: Profile) -> str | None:
    text = _text(value, "当事人类型")
    if text is None:
        return None
    return profile.synonyms("party_role").get(text.lower(), text)


def _party(values: Mapping[str, Any], where: Callable[[str], str], flags: list[dict[str, Any]],
           profile: Profile) -> dict[str, Any] | None:
    """A Party from its native values; a bad value is a flag whose field is `where(field)` (the
    native column with its row, or the REST key with its index)."""
    readers: Mapping[str, Callable[[Any], Any]] = {
        "name": lambda v: _text(v, "姓名"), "id_number": check_id_number, "phone": check_phone,
        "address": lambda v: _text(v, "住址"),
    }
    party: dict[str, Any] = {"role": None}
    for field_name, read in readers.items():
        raw = values.get(field_name)
        party[field_name] = optional(flags, where(field_name), lambda r=raw, f=read: f(r), raw)
    present = any(clean_str(v) for v in values.values() if not isinstance(v, (dict, list)))
    if not any(party[f] for f in readers) and not present:
        return None
    raw_role = values.get("role")
    party["role"] = optional(flags, where("role"), lambda: _role(raw_role, profile), raw_role) or "party"
    return party


def _case_record(case: Mapping[str, Any], parties: list[dict[str, Any]], flags: list[dict[str, Any]],
                 received_at_ms: int, raw_format: str, profile: Profile,
                 columns: Mapping[str, str]) -> dict[str, Any]:
    """One MediationCase record; raises TranslateError only for the three required fields. Quality
    flags name the native column (`columns`: record field → the column or key it was read from)."""
    case_no = require(_text(case.get("case_no"), "案件编号"), "案件编号")
    accepted = _accepted_date(case.get("accepted_date_local"))
    dispute_type = require(_text(case.get("dispute_type"), "纠纷类型"), "纠纷类型")

    def opt(field_name: str, read: Callable[[Any], Any]) -> Any:
        raw = case.get(field_name)
        return optional(flags, columns.get(field_name, field_name), lambda: read(raw), raw)

    result_text = opt("result", lambda v: _text(v, "调解结果"))
    outcome = classify_result(result_text, profile) if result_text else None
    if result_text and outcome is None:
        flags.append(quality_flag(columns.get("result", "result"), "调解结果 matches no outcome (synonyms.result / classify.result); "
                                            "kept verbatim in result_text", result_text))
    return {
        "case_no": case_no,
        "native_id": case_no,
        "workstation": opt("workstation", lambda v: _text(v, "调解组织")),
        "accepted_date_local": accepted,
        "dispute_type": dispute_type,
        "summary": opt("summary", lambda v: _text(v, "纠纷简要情况")),
        "address": opt("address", lambda v: _text(v, "纠纷发生地")),
        "admin_code": opt("admin_code", _admin_code),
        "parties": parties,
        "mediator": opt("mediator", lambda v: _text(v, "调解员")),
        "outcome": outcome,
        "result_text": result_text,
        "compensation": opt("compensation", _compensation),
        "performance": opt("performance", lambda v: _text(v, "履行情况")),
        "judicial_confirmation": opt("judicial_confirmation", lambda v: _confirmation(v, profile)),
        "received_at": int(received_at_ms),
        "raw_format": raw_format,
        "quality": flags,
    }


def _union_keys(rows: Sequence[Any]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows[:1000]:
        if isinstance(row, Mapping):
            keys.update(dict.fromkeys(str(k) for k in row if k is not None))
    return list(keys)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@never_raises(TOPIC, SCHEMA)
def translate_rows(rows: Iterable[Mapping[str, Any]], *, received_at_ms: int,
                   raw_format: str = RAW_FORMAT_CSV, profile: Profile | None = None) -> TranslateResult:
    """Group export rows (one per party) by their case number into MediationCase records.

    Case-level columns take the first non-empty value seen for the case; identical party rows
    are merged. A row without a case number is rejected on its own; a case is rejected only when
    its 案件编号, 受理日期 or 纠纷类型 is missing or invalid."""
    profile = profile if profile is not None else builtin_profile(FEED)
    batch = list(rows)[: MAX_ROWS + 1]
    cols = resolve_columns(profile, _union_keys(batch))
    case_column = cols.case.get("case_no")
    rejected: list[Rejected] = []
    if case_column is None:
        if any(isinstance(r, Mapping) and r for r in batch):
            names = "/".join(profile.aliases("case_no", CASE_NUMBER_COLUMN))
            return result(TOPIC, SCHEMA, rejected=[Rejected(
                f"mediation export has no 案件编号 column (looked for {names}; profile aliases.case_no)",
                "MissingField")])
        return result(TOPIC, SCHEMA)
    cases: dict[str, dict[str, Any]] = {}
    parties: dict[str, list[dict[str, Any]]] = {}
    flags: dict[str, list[dict[str, Any]]] = {}
    unmapped: dict[str, set[str]] = {}
    known = cols.known
    for index, row in enumerate(batch):
        if index >= MAX_ROWS:
            rejected.append(Rejected(f"more than {MAX_ROWS} rows; the rest were not read", "TooLarge"))
            break
        if not isinstance(row, Mapping):
            rejected.append(Rejected(f"row {index + 1}: not a mapping", "InvalidInput"))
            continue
        try:
            case_no = clean_str(row.get(case_column))
        except TranslateError as exc:
            rejected.append(Rejected(f"row {index + 1}: 案件编号: {exc.reason}", exc.error_type))
            continue
        if case_no is None:
            if any(not isinstance(v, (list, dict)) and clean_str(v) for v in row.values()):
                rejected.append(Rejected(f"row {index + 1}: missing 案件编号", "MissingField"))
            continue
        case = cases.setdefault(case_no, {})
        for field_name, column in cols.case.items():
            if _blank(case.get(field_name)) and not _blank(row.get(column)):
                case[field_name] = row.get(column)
        for name, value in row.items():
            if name is not None and _norm(name) not in known and not _blank(value):
                unmapped.setdefault(str(name).strip().lstrip("\ufeff"), set()).add(case_no)
        case_flags = flags.setdefault(case_no, [])
        values = {f: row.get(c) for f, c in cols.party.items()}
        party = _party(values, lambda f, n=index + 1: f"{cols.party.get(f, f)} (row {n})", case_flags, profile)
        bucket = parties.setdefault(case_no, [])
        if party is not None and party not in bucket:
            bucket.append(party)
    records: list[dict[str, Any]] = []
    for case_no, case in cases.items():
        try:
            records.append(_case_record(case, parties.get(case_no, []), flags.get(case_no, []),
                                        received_at_ms, raw_format, profile, cols.case))
        except TranslateError as exc:
            rejected.append(Rejected(f"case {case_no}: {exc.reason}", exc.error_type))
    return with_unmapped(result(TOPIC, SCHEMA, records, rejected), {k: len(v) for k, v in unmapped.items()})


def _header_row(values: Sequence[Any], case_names: frozenset[str]) -> list[str] | None:
    cells = [str(v).strip() if v is not None else "" for v in values]
    return cells if any(_norm(c) in case_names for c in cells if c) else None


def read_csv(data: bytes) -> list[dict[str, Any]]:
    """Rows of a CSV export, encoding auto-detected (UTF-8, UTF-8 with BOM, GBK/GB18030).

    Raises TranslateError when undecodable or malformed (a missing case-number column is
    reported by `translate_rows`, which knows the profile's aliases)."""
    text = decode_text_auto(data)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = []
        for row in reader:
            if len(rows) > MAX_ROWS:
                break
            rows.append({k.strip(): v for k, v in row.items() if k is not None})
        if not rows and reader.fieldnames:
            return []
        return rows
    except csv.Error as exc:
        raise TranslateError(f"malformed CSV: {exc}", "MalformedCsv") from None


def read_xlsx(data: bytes, profile: Profile | None = None) -> list[dict[str, Any]]:
    """Rows of the first worksheet of an XLSX export (header = the first row naming a case-number
    column from the profile's aliases; title rows above it are skipped).

    Raises TranslateError for files openpyxl cannot read."""
    import zipfile

    from openpyxl import load_workbook  # heavy import kept out of module import time

    profile = profile if profile is not None else builtin_profile(FEED)
    case_names = frozenset(_norm(a) for a in profile.aliases("case_no", CASE_NUMBER_COLUMN))
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
                header = _header_row(values, case_names)
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


def translate_csv(data: bytes, *, received_at_ms: int, profile: Profile | None = None) -> TranslateResult:
    """Read and translate a CSV export (never raises)."""
    try:
        rows = read_csv(data)
    except TranslateError as exc:
        return result(TOPIC, SCHEMA, rejected=[exc.rejected()])
    except Exception as exc:  # noqa: BLE001 - errors as data, by contract
        return result(TOPIC, SCHEMA, rejected=[Rejected(f"unreadable CSV: {type(exc).__name__}", "MalformedCsv")])
    if not rows:
        return result(TOPIC, SCHEMA, rejected=[Rejected(
            "mediation CSV has no 案件编号 column or no rows (wrong encoding or not an export?)", "MissingField")])
    return translate_rows(rows, received_at_ms=received_at_ms, raw_format=RAW_FORMAT_CSV, profile=profile)


def translate_xlsx(data: bytes, *, received_at_ms: int, profile: Profile | None = None) -> TranslateResult:
    """Read and translate an XLSX export (never raises)."""
    try:
        rows = read_xlsx(data, profile)
    except TranslateError as exc:
        return result(TOPIC, SCHEMA, rejected=[exc.rejected()])
    return translate_rows(rows, received_at_ms=received_at_ms, raw_format=RAW_FORMAT_XLSX, profile=profile)


def _json_case(obj: Any, received_at_ms: int, profile: Profile,
               unmapped: dict[str, int]) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise TranslateError(f"mediation case must be a JSON object, got {type(obj).__name__}", "MalformedJson")
    cols = resolve_columns(profile, obj.keys())
    flags: list[dict[str, Any]] = []
    parties: list[dict[str, Any]] = []
    raw_parties = obj.get(cols.parties) if cols.parties else None
    if raw_parties is not None and not isinstance(raw_parties, list):
        flags.append(quality_flag(str(cols.parties), "parties must be a list", raw_parties))
        raw_parties = None
    for i, p in enumerate(raw_parties or []):
        if not isinstance(p, Mapping):
            flags.append(quality_flag(f"{cols.parties}[{i}]", "party must be an object", p))
            continue
        pcols = resolve_columns(profile, p.keys(), party_only=True)
        party = _party({f: p.get(c) for f, c in pcols.party.items()},
                       lambda f, n=i, pc=pcols: f"{cols.parties}[{n}].{pc.party.get(f, f)}", flags, profile)
        if party is not None:
            parties.append(party)
        for name in p:
            if _norm(name) not in pcols.known and not _blank(p[name]):
                unmapped[f"parties.{name}"] = unmapped.get(f"parties.{name}", 0) + 1
    case = {f: obj.get(c) for f, c in cols.case.items()}
    record = _case_record(case, parties, flags, received_at_ms, RAW_FORMAT_JSON, profile, cols.case)
    for name in obj:
        if _norm(name) not in cols.known and not _blank(obj[name]):
            unmapped[str(name)] = unmapped.get(str(name), 0) + 1
    return record


@never_raises(TOPIC, SCHEMA)
def translate_json(obj: bytes | str | Mapping[str, Any] | list[Any], *, received_at_ms: int,
                   profile: Profile | None = None) -> TranslateResult:
    """Translate the REST form (`POST /mediation/cases`): one case object or a list of them."""
    profile = profile if profile is not None else builtin_profile(FEED)
    doc = obj if isinstance(obj, (Mapping, list)) else parse_json(obj)
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise TranslateError("empty list of mediation cases", "MissingField")
    unmapped: dict[str, int] = {}
    records, rejected = translate_items(items, "case", lambda item: _json_case(item, received_at_ms, profile,
                                                                               unmapped))
    return with_unmapped(result(TOPIC, SCHEMA, records, rejected), unmapped)


def is_export_rows(doc: Any, profile: Profile) -> bool:
    """True when a JSON document is a list of export rows (a case-number column and party columns,
    no nested parties list) rather than REST case objects."""
    if not (isinstance(doc, list) and doc and isinstance(doc[0], Mapping)):
        return False
    cols = resolve_columns(profile, doc[0].keys())
    return cols.parties is None and cols.case.get("case_no") is not None and (
        bool(cols.party) or not re.fullmatch(r"[A-Za-z_]+", cols.case["case_no"]))
