"""110 alarm-desk `JJD` rows → Alarm110 raw records (pure).

Contract: `translate_row(row, received_at_ms=...)` never raises. Rows are mappings keyed by the
desk's column names (any case; DB drivers and the CSV export both work): values may be str, int,
float, Decimal, datetime or None. The auto location (ZDDW*) is preferred over the manual one
(SDDW*); `location_source` says which was used.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from connectors.sources.common import (
    Rejected,
    TranslateError,
    TranslateResult,
    check_local_datetime,
    clean_str,
    decode_text_auto,
    never_raises,
    parse_coordinates,
    parse_int,
    require,
    result,
)

TOPIC: Final = "raw.alarm110.v1"
SCHEMA: Final = "pingan.raw.Alarm110"

RAW_FORMAT_DB: Final = "alarm110-db"
RAW_FORMAT_CSV: Final = "alarm110-csv"

#: Leading digit of a BJLB/BJLX/BJXL code → category class (docs/native-formats.md).
CATEGORY_CLASSES: Final[Mapping[str, str]] = {
    "1": "criminal", "2": "public_order", "3": "traffic", "4": "fire_rescue", "5": "help",
    "7": "mass_incident", "8": "disaster",
}
#: Specific codes named in the native-format page.
CATEGORY_CODES: Final[Mapping[str, str]] = {
    "200200": "dispute", "200600": "domestic_violence", "400300": "person_in_water", "500100": "medical",
}

_CODE = re.compile(r"\d{6}")


def _text(row: Mapping[str, Any], name: str) -> str | None:
    return clean_str(row.get(name))


def _code(row: Mapping[str, Any], name: str) -> str | None:
    value = _text(row, name)
    if value is not None and not _CODE.fullmatch(value):
        raise TranslateError(f"{name} {value[:20]!r} is not a 6-digit code")
    return value


def row_record(row: Mapping[str, Any], received_at_ms: int, raw_format: str = RAW_FORMAT_DB,
               coord_system: str = "WGS84") -> dict[str, Any]:
    """The Alarm110 record of one row (raises TranslateError)."""
    if not isinstance(row, Mapping):
        raise TranslateError(f"row must be a mapping, got {type(row).__name__}", "InvalidInput")
    upper = {str(k).strip().upper(): v for k, v in row.items()}
    jjdbh = require(_text(upper, "JJDBH"), "JJDBH")
    if len(jjdbh) > 64:
        raise TranslateError(f"JJDBH {jjdbh[:40]!r}… is longer than 64 characters")
    xzqhbh = _text(upper, "XZQHBH")
    if xzqhbh is not None and not re.fullmatch(r"\d{6,12}", xzqhbh):
        raise TranslateError(f"XZQHBH {xzqhbh[:20]!r} must be 6-12 digits")
    bjsj = check_local_datetime(require(_text(upper, "BJSJ"), "BJSJ"), "BJSJ")
    lon, lat = parse_coordinates(upper.get("ZDDWJD"), upper.get("ZDDWWD"), "ZDDWJD", "ZDDWWD")
    source: str | None = "auto"
    if lon is None:
        lon, lat = parse_coordinates(upper.get("SDDWJD"), upper.get("SDDWWD"), "SDDWJD", "SDDWWD")
        source = "manual" if lon is not None else None
    return {
        "jjdbh": jjdbh,
        "native_id": jjdbh,
        "gljjdbh": _text(upper, "GLJJDBH"),
        "xzqhbh": xzqhbh,
        "bjsj_local": bjsj,
        "caller_phone": _text(upper, "BJDH"),
        "contact_phone": _text(upper, "LXDH"),
        "caller_name": _text(upper, "BJRXM"),
        "caller_id_number": _text(upper, "S_IDENTITYCARDNO"),
        "address": _text(upper, "SFDZ"),
        "content": require(_text(upper, "BJNR"), "BJNR"),
        "bjlb": _code(upper, "BJLB"),
        "bjlx": _code(upper, "BJLX"),
        "bjxl": _code(upper, "BJXL"),
        "jqjb": parse_int(upper.get("JQJB"), "JQJB", 1, 4),
        "longitude": lon,
        "latitude": lat,
        "location_source": source,
        "coord_system": coord_system,
        "received_at": int(received_at_ms),
        "raw_format": raw_format,
    }


@never_raises(TOPIC, SCHEMA)
def translate_row(row: Mapping[str, Any], *, received_at_ms: int, raw_format: str = RAW_FORMAT_DB) -> TranslateResult:
    """Translate one JJD row into an Alarm110 record (or a rejection naming the bad column)."""
    return result(TOPIC, SCHEMA, [row_record(row, received_at_ms, raw_format)])


@never_raises(TOPIC, SCHEMA)
def translate_rows(rows: Iterable[Mapping[str, Any]], *, received_at_ms: int,
                   raw_format: str = RAW_FORMAT_DB) -> TranslateResult:
    """Translate a batch of rows; each bad row becomes one Rejected prefixed with its JJDBH/index."""
    records: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for index, row in enumerate(rows):
        try:
            records.append(row_record(row, received_at_ms, raw_format))
        except TranslateError as exc:
            ident = clean_str(row.get("JJDBH")) if isinstance(row, Mapping) and not isinstance(
                row.get("JJDBH"), (dict, list)) else None
            rejected.append(Rejected(f"row {index + 1} (JJDBH {ident or '?'}): {exc.reason}", exc.error_type))
    return result(TOPIC, SCHEMA, records, rejected)


def read_csv(data: bytes) -> list[dict[str, str]]:
    """Rows of the simulator's CSV export (UTF-8, UTF-8-BOM or GBK); raises TranslateError."""
    reader = csv.DictReader(io.StringIO(decode_text_auto(data), newline=""))
    if not reader.fieldnames or "JJDBH" not in [f.strip().upper() for f in reader.fieldnames]:
        raise TranslateError("alarm CSV has no JJDBH column", "MissingField")
    return [dict(r) for r in reader]


def translate_csv(data: bytes, *, received_at_ms: int) -> TranslateResult:
    """Translate a whole alarm CSV export (never raises)."""
    try:
        rows = read_csv(data)
    except TranslateError as exc:
        return result(TOPIC, SCHEMA, rejected=[exc.rejected()])
    except csv.Error as exc:
        return result(TOPIC, SCHEMA, rejected=[Rejected(f"malformed CSV: {exc}", "MalformedCsv")])
    return translate_rows(rows, received_at_ms=received_at_ms, raw_format=RAW_FORMAT_CSV)
