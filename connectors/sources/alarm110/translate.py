"""110 alarm-desk `JJD` rows → Alarm110 raw records (pure).

Contract: `translate_rows(rows, received_at_ms=..., profile=...)` never raises. Rows are mappings
keyed by the desk's column names (any case; DB drivers, CSV and XLSX exports all work): values may
be str, int, float, Decimal, datetime or None. Every native column name comes from the feed's
profile (``[aliases]`` in ``profile.toml``, extended by the deployment's ``alarm110.toml``); without
a profile the built-in one is used.

- Required: the call-sheet number (JJDBH), the report time (BJSJ) and the content (BJNR); a missing
  or invalid one rejects the row with a reason naming the column.
- Everything else is optional: a value that does not parse (an admin code that is not digits, a
  category that is neither a 6-digit code nor a name in ``[codes.category]``, a level outside 1-4,
  coordinates that are not numbers or out of range, a non-scalar phone …) is left out of the record
  and kept raw in a ``quality`` flag; the record is accepted.
- Coordinates: the first usable pair of auto (ZDDW*), manual (SDDW*), other (JD/WD, LNG/LAT, GIS_X/Y
  …); `location_source` names the pair, `coord_system` its system (profile ``coord_system``, per pair
  or per longitude column in ``[coord_systems]``).
- Columns no alias (nor ``ignore``) names are counted in the result's ``unmapped``.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from connectors.sources.common import (
    Rejected,
    TranslateError,
    TranslateResult,
    check_local_datetime,
    clean_str,
    decode_text_auto,
    never_raises,
    optional,
    parse_coordinates,
    parse_int,
    quality_flag,
    require,
    result,
    unmapped_names,
    with_unmapped,
)
from connectors.sources.profile import Profile, builtin_profile

TOPIC: Final = "raw.alarm110.v1"
SCHEMA: Final = "pingan.raw.Alarm110"
FEED: Final = "alarm110"

RAW_FORMAT_DB: Final = "alarm110-db"
RAW_FORMAT_CSV: Final = "alarm110-csv"
RAW_FORMAT_XLSX: Final = "alarm110-xlsx"

#: Leading digit of a BJLB/BJLX/BJXL code → category class (docs/native-formats.md).
CATEGORY_CLASSES: Final[Mapping[str, str]] = {
    "1": "criminal", "2": "public_order", "3": "traffic", "4": "fire_rescue", "5": "help",
    "7": "mass_incident", "8": "disaster",
}
#: Specific codes named in the native-format page.
CATEGORY_CODES: Final[Mapping[str, str]] = {
    "200200": "dispute", "200600": "domestic_violence", "400300": "person_in_water", "500100": "medical",
}

#: Record fields read from one native column each (profile ``[aliases]``).
TEXT_FIELDS: Final = ("jjdbh", "bjsj", "content", "gljjdbh", "xzqhbh", "caller_phone", "contact_phone",
                      "caller_name", "caller_id_number", "address", "bjlb", "bjlx", "bjxl", "jqjb")
#: Coordinate pairs in order of preference; the pair's name becomes `location_source`.
PAIRS: Final = ("auto", "manual", "other")
COORD_SYSTEMS: Final[Mapping[str, str]] = {
    "WGS84": "WGS84", "WGS": "WGS84", "GPS": "WGS84", "GCJ02": "GCJ02", "GCJ": "GCJ02", "MARS": "GCJ02",
    "BD09": "BD09", "BD09LL": "BD09", "BAIDU": "BD09",
}

_CODE = re.compile(r"\d{6}")
_XZQH = re.compile(r"\d{6,12}")


def _upper(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(n).strip().upper() for n in names if str(n).strip()))


def _coord_system(value: Any, where: str) -> str:
    key = str(value or "WGS84").upper().replace("-", "").replace("_", "").strip()
    if key not in COORD_SYSTEMS:
        raise TranslateError(f"unknown coordinate system {value!r} ({where}); use WGS84, GCJ02 or BD09",
                             "BadProfile")
    return COORD_SYSTEMS[key]


@dataclass(frozen=True)
class Mapping110:
    """A profile compiled for reading rows: upper-cased aliases, code tables, coordinate systems."""

    aliases: Mapping[str, tuple[str, ...]]
    pairs: tuple[tuple[str, tuple[str, ...], tuple[str, ...], Mapping[str, str]], ...]
    categories: Mapping[str, str]
    levels: Mapping[str, int]
    date_formats: tuple[str, ...]
    known: frozenset[str]

    @classmethod
    def of(cls, profile: Profile) -> "Mapping110":
        """Compile `profile` (raises TranslateError "BadProfile" for an unknown coordinate system)."""
        aliases = {f: _upper(profile.aliases(f)) for f in TEXT_FIELDS}
        default_cs = _coord_system(profile.get("coord_system", "WGS84"), "coord_system")
        overrides = profile.get("coord_systems", {}) or {}
        overrides = {str(k).strip().upper(): v for k, v in overrides.items()} if isinstance(overrides, Mapping) else {}
        pairs = []
        for pair in PAIRS:
            lons, lats = _upper(profile.aliases(f"{pair}_lon")), _upper(profile.aliases(f"{pair}_lat"))
            pair_cs = _coord_system(overrides[pair.upper()], f"coord_systems.{pair}") \
                if pair.upper() in overrides else default_cs
            per_column = {c: _coord_system(overrides[c], f"coord_systems.{c}") for c in lons if c in overrides}
            pairs.append((pair, lons, lats, {"": pair_cs, **per_column}))
        levels: dict[str, int] = {}
        for name, value in profile.table("level").items():
            if str(value).strip().isdigit():
                levels[name.strip()] = int(str(value).strip())
        formats = profile.get("date_formats", []) or []
        known = {n for names in aliases.values() for n in names}
        known |= {n for _, lons, lats, _ in pairs for n in (*lons, *lats)}
        known |= set(_upper(profile.get("ignore", []) or []))
        return cls(aliases, tuple(pairs), {k.strip(): v.strip() for k, v in profile.table("category").items()},
                   levels, tuple(str(f) for f in formats if isinstance(f, str)), frozenset(known))


@lru_cache(maxsize=1)
def _builtin_mapping() -> Mapping110:
    return Mapping110.of(builtin_profile(FEED))


def mapping_of(profile: Profile | None) -> Mapping110:
    """The compiled mapping of `profile` (the built-in one when None)."""
    return _builtin_mapping() if profile is None else Mapping110.of(profile)


# --- reading one row ------------------------------------------------------------------------------

class _Row:
    """One row with upper-cased column names; finds a field's first non-empty aliased column."""

    def __init__(self, row: Mapping[str, Any], m: Mapping110) -> None:
        self.cols = {str(k).strip().upper().lstrip("\ufeff"): v for k, v in row.items()}
        self.m = m

    def candidates(self, field: str) -> list[tuple[str, Any]]:
        """(column, value) of every aliased column present with a non-blank value, in alias order."""
        out = []
        for name in self.m.aliases[field]:
            value = self.cols.get(name)
            if clean_str_safe(value) is None:
                continue
            out.append((name, value))
        return out

    def first(self, field: str) -> tuple[str, Any]:
        """The first non-blank aliased column of `field`, or (its first alias, None)."""
        found = self.candidates(field)
        return found[0] if found else (self.m.aliases[field][0] if self.m.aliases[field] else field.upper(), None)


def _text(value: Any) -> str | None:
    return clean_str(value)


def _category(value: Any, column: str, names: Mapping[str, str]) -> str:
    text = clean_str(value) or ""
    if _CODE.fullmatch(text):
        return text
    code = names.get(text)
    if code is not None and _CODE.fullmatch(code):
        return code
    raise TranslateError(f"{column} {text[:20]!r} is neither a 6-digit code nor a category name "
                         f"in the profile's [codes.category]")


def _level(value: Any, column: str, levels: Mapping[str, int]) -> int | None:
    text = clean_str(value)
    if text is not None and text in levels:
        return levels[text]
    return parse_int(value, column, 1, 4)


def _time(value: Any, column: str, formats: Sequence[str]) -> str:
    text = require(clean_str(value), column)
    try:
        return check_local_datetime(text, column)
    except TranslateError:
        for fmt in formats:
            try:
                return datetime.strptime(text, fmt).strftime("%Y-%m-%d %H:%M:%S")
            except ValueError:
                continue
        raise


def row_record(row: Mapping[str, Any], received_at_ms: int, raw_format: str = RAW_FORMAT_DB,
               mapping: Mapping110 | None = None) -> dict[str, Any]:
    """The Alarm110 record of one row (raises TranslateError for a bad required field only)."""
    if not isinstance(row, Mapping):
        raise TranslateError(f"row must be a mapping, got {type(row).__name__}", "InvalidInput")
    m = mapping or _builtin_mapping()
    r = _Row(row, m)
    flags: list[dict[str, Any]] = []

    col, value = r.first("jjdbh")
    jjdbh = require(_text(value), col)
    if len(jjdbh) > 64:
        raise TranslateError(f"{col} {jjdbh[:40]!r}… is longer than 64 characters")
    col, value = r.first("bjsj")
    bjsj = _time(value, col, m.date_formats)
    col, value = r.first("content")
    content = require(_text(value), col)

    def text(field: str) -> str | None:
        column, raw = r.first(field)
        return optional(flags, column, lambda: _text(raw), raw) if raw is not None else None

    col, value = r.first("xzqhbh")
    xzqhbh = None
    if value is not None:
        def admin() -> str | None:
            t = _text(value)
            if t is not None and not _XZQH.fullmatch(t):
                raise TranslateError(f"{col} {t[:20]!r} must be 6-12 digits")
            return t
        xzqhbh = optional(flags, col, admin, value)

    categories: dict[str, str | None] = {}
    for field in ("bjlb", "bjlx", "bjxl"):
        found = r.candidates(field)
        categories[field] = None
        errors: list[tuple[str, str, Any]] = []
        for column, raw in found:
            try:
                categories[field] = _category(raw, column, m.categories)
                break
            except TranslateError as exc:
                errors.append((column, exc.reason, raw))
        if categories[field] is None and errors:
            flags.append(quality_flag(*errors[0]))

    col, value = r.first("jqjb")
    jqjb = optional(flags, col, lambda: _level(value, col, m.levels), value) if value is not None else None

    lon = lat = None
    source: str | None = None
    coord_system = m.pairs[0][3][""] if m.pairs else "WGS84"
    for pair, lons, lats, systems in m.pairs:
        lon_col = next((c for c in lons if clean_str_safe(r.cols.get(c)) is not None), None)
        lat_col = next((c for c in lats if clean_str_safe(r.cols.get(c)) is not None), None)
        if lon_col is None and lat_col is None:
            continue
        lon_name, lat_name = lon_col or (lons[0] if lons else f"{pair}_lon"), lat_col or (lats[0] if lats else f"{pair}_lat")
        lon_raw, lat_raw = r.cols.get(lon_name), r.cols.get(lat_name)
        if lon_col is None or lat_col is None:
            flags.append(quality_flag(f"{lon_name}/{lat_name}", "only one coordinate of the pair is present",
                                      f"{lon_raw},{lat_raw}"))
            continue
        got = optional(flags, f"{lon_name}/{lat_name}",
                       lambda: parse_coordinates(lon_raw, lat_raw, lon_name, lat_name), f"{lon_raw},{lat_raw}")
        if got is not None and got[0] is not None:
            lon, lat = got
            source = pair
            coord_system = systems.get(lon_name, systems[""])
            break

    return {
        "jjdbh": jjdbh,
        "native_id": jjdbh,
        "gljjdbh": text("gljjdbh"),
        "xzqhbh": xzqhbh,
        "bjsj_local": bjsj,
        "caller_phone": text("caller_phone"),
        "contact_phone": text("contact_phone"),
        "caller_name": text("caller_name"),
        "caller_id_number": text("caller_id_number"),
        "address": text("address"),
        "content": content,
        "bjlb": categories["bjlb"],
        "bjlx": categories["bjlx"],
        "bjxl": categories["bjxl"],
        "jqjb": jqjb,
        "longitude": lon,
        "latitude": lat,
        "location_source": source,
        "coord_system": coord_system,
        "received_at": int(received_at_ms),
        "raw_format": raw_format,
        "quality": flags,
    }


def clean_str_safe(value: Any) -> str | None:
    """`clean_str` that treats a non-scalar as present (its error is reported where it is read)."""
    try:
        return clean_str(value)
    except TranslateError:
        return "?"


def _row_ident(row: Any, m: Mapping110) -> str | None:
    if not isinstance(row, Mapping):
        return None
    r = _Row(row, m)
    _, value = r.first("jjdbh")
    return clean_str_safe(value) if not isinstance(value, (dict, list)) else None


@never_raises(TOPIC, SCHEMA)
def translate_row(row: Mapping[str, Any], *, received_at_ms: int, raw_format: str = RAW_FORMAT_DB,
                  profile: Profile | None = None) -> TranslateResult:
    """Translate one JJD row into an Alarm110 record (or a rejection naming the bad column)."""
    m = mapping_of(profile)
    unmapped = {n: 1 for n in unmapped_names([str(k) for k in row], m.known)} if isinstance(row, Mapping) else {}
    return with_unmapped(result(TOPIC, SCHEMA, [row_record(row, received_at_ms, raw_format, m)]), unmapped)


@never_raises(TOPIC, SCHEMA)
def translate_rows(rows: Iterable[Mapping[str, Any]], *, received_at_ms: int, raw_format: str = RAW_FORMAT_DB,
                   profile: Profile | None = None, known: Iterable[str] = ()) -> TranslateResult:
    """Translate a batch of rows; each bad row becomes one Rejected prefixed with its row number and
    call-sheet number. `known`: extra columns read elsewhere (the poller's cursor), never unmapped."""
    m = mapping_of(profile)
    known_all = m.known | set(_upper(known))
    records: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    unmapped: dict[str, int] = {}
    for index, row in enumerate(rows):
        if isinstance(row, Mapping):
            for name in unmapped_names([str(k) for k in row], known_all):
                unmapped[name] = unmapped.get(name, 0) + 1
        try:
            records.append(row_record(row, received_at_ms, raw_format, m))
        except TranslateError as exc:
            rejected.append(Rejected(f"row {index + 1} (JJDBH {_row_ident(row, m) or '?'}): {exc.reason}",
                                     exc.error_type))
    return with_unmapped(result(TOPIC, SCHEMA, records, rejected), unmapped)


# --- export files ---------------------------------------------------------------------------------

def _has_id_column(fieldnames: Sequence[str], m: Mapping110) -> bool:
    names = {str(f).strip().upper().lstrip("\ufeff") for f in fieldnames if f is not None}
    return any(a in names for a in m.aliases["jjdbh"])


def read_csv(data: bytes, profile: Profile | None = None, *, check: bool = True) -> list[dict[str, Any]]:
    """Rows of a CSV export (UTF-8, UTF-8-BOM or GBK/GB18030); raises TranslateError. `check`: the
    header must name the call-sheet number by one of the profile's aliases."""
    m = mapping_of(profile)
    reader = csv.DictReader(io.StringIO(decode_text_auto(data), newline=""))
    if not reader.fieldnames or (check and not _has_id_column(reader.fieldnames, m)):
        raise TranslateError(f"alarm export has no call-sheet number column (any of "
                             f"{', '.join(m.aliases['jjdbh'])}; profile key aliases.jjdbh)", "MissingField")
    return [{k: v for k, v in r.items() if k is not None} for r in reader]


def read_xlsx(data: bytes, profile: Profile | None = None, *, check: bool = True) -> list[dict[str, Any]]:
    """Rows of the first sheet of an XLSX export (header row first); raises TranslateError."""
    from openpyxl import load_workbook  # heavy import kept out of module import time

    m = mapping_of(profile)
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises a wide variety on corrupt files
        raise TranslateError(f"not a readable XLSX file: {type(exc).__name__}: {exc}", "MalformedXlsx") from None
    try:
        sheet = wb.worksheets[0]
        it = sheet.iter_rows(values_only=True)
        header = next(it, None)
        if not header:
            raise TranslateError("XLSX export has no header row", "MissingField")
        names = [clean_str_safe(h) or "" for h in header]
        if check and not _has_id_column(names, m):
            raise TranslateError(f"alarm export has no call-sheet number column (any of "
                                 f"{', '.join(m.aliases['jjdbh'])}; profile key aliases.jjdbh)", "MissingField")
        rows = []
        for values in it:
            if values is None or all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                continue
            rows.append({n: v for n, v in zip(names, values) if n})
        return rows
    finally:
        wb.close()


def read_export(data: bytes, name: str, profile: Profile | None = None, *, check: bool = True) -> list[dict[str, Any]]:
    """Rows of a CSV or XLSX export (by file name, or the XLSX zip signature)."""
    if name.lower().endswith((".xlsx", ".xlsm")) or data[:4] == b"PK\x03\x04":
        return read_xlsx(data, profile, check=check)
    return read_csv(data, profile, check=check)


def translate_export(data: bytes, name: str, *, received_at_ms: int, profile: Profile | None = None) -> TranslateResult:
    """Translate a whole CSV/XLSX export (never raises)."""
    raw_format = RAW_FORMAT_XLSX if name.lower().endswith((".xlsx", ".xlsm")) or data[:4] == b"PK\x03\x04" \
        else RAW_FORMAT_CSV
    try:
        rows = read_export(data, name, profile)
    except TranslateError as exc:
        return result(TOPIC, SCHEMA, rejected=[exc.rejected()])
    except csv.Error as exc:
        return result(TOPIC, SCHEMA, rejected=[Rejected(f"malformed CSV: {exc}", "MalformedCsv")])
    return translate_rows(rows, received_at_ms=received_at_ms, raw_format=raw_format, profile=profile)


def translate_csv(data: bytes, *, received_at_ms: int, profile: Profile | None = None) -> TranslateResult:
    """Translate a whole alarm CSV export (never raises)."""
    return translate_export(data, "export.csv", received_at_ms=received_at_ms, profile=profile)
