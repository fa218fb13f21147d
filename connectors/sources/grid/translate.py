"""Grid-app JSON report → GridReport raw record (pure).

Contract: `translate(payload, received_at_ms=...)` never raises. `payload` is the webhook body
(bytes/str JSON) or an already-decoded dict, or a list of reports (each translated on its own).
Coordinates are kept as sent with their `coord_system` (GCJ-02 when the app does not say);
normalize converts them.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from connectors.sources.common import (
    Rejected,
    TranslateError,
    TranslateResult,
    check_local_datetime,
    clean_str,
    never_raises,
    parse_coordinates,
    parse_json,
    require,
    result,
)

TOPIC: Final = "raw.grid.v1"
SCHEMA: Final = "pingan.raw.GridReport"

RAW_FORMAT: Final = "grid-json"
MAX_REPORTS: Final = 1000

COORD_SYSTEMS: Final[Mapping[str, str]] = {
    "wgs84": "WGS84", "wgs-84": "WGS84", "gps": "WGS84",
    "gcj02": "GCJ02", "gcj-02": "GCJ02",
    "bd09": "BD09", "bd-09": "BD09", "bd09ll": "BD09",
}
DEFAULT_COORD_SYSTEM: Final = "GCJ02"

#: Local 网格事件分类 class names (first two digits) and known sub-categories.
CATEGORY_NAMES: Final[Mapping[str, str]] = {
    "01": "矛盾纠纷", "0101": "婚姻家庭", "0102": "邻里纠纷", "0103": "房屋宅基地/拆迁",
    "0104": "山林土地", "0105": "劳动争议", "02": "治安隐患", "03": "安全生产/消防",
    "04": "自然灾害", "0401": "山洪泥石流", "0402": "地质灾害", "05": "民生服务", "0501": "求助/就医",
    "06": "特殊人群", "07": "群体性事件", "99": "其他",
}

PARTY_ROLES: Final = frozenset({"reporter", "party", "victim", "suspect", "caller", "witness",
                                "applicant", "respondent"})


def _get(obj: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _text(obj: Mapping[str, Any], *names: str) -> str | None:
    value = _get(obj, *names)
    if isinstance(value, (dict, list)):
        raise TranslateError(f"{names[0]} must be a string, got {type(value).__name__}")
    return clean_str(value)


def party_from_json(obj: Any, index: int, default_role: str = "party") -> dict[str, Any]:
    """A Party record from `{"role","name","idCard","phone","address"}` (raises TranslateError)."""
    if not isinstance(obj, Mapping):
        raise TranslateError(f"persons[{index}] must be an object")
    role = (_text(obj, "role") or default_role)
    role = role.lower() if role.lower() in PARTY_ROLES else role
    return {
        "role": role,
        "name": _text(obj, "name"),
        "id_number": _text(obj, "idCard", "idNumber", "idNo"),
        "phone": _text(obj, "phone", "mobile"),
        "address": _text(obj, "address"),
    }


def report_record(obj: Any, received_at_ms: int) -> dict[str, Any]:
    """The GridReport record of one decoded report object (raises TranslateError)."""
    if not isinstance(obj, Mapping):
        raise TranslateError(f"grid report must be a JSON object, got {type(obj).__name__}", "MalformedJson")
    report_id = require(_text(obj, "reportId", "report_id"), "reportId")
    if len(report_id) > 64:
        raise TranslateError(f"reportId {report_id[:40]!r}… is longer than 64 characters")
    category = _get(obj, "category")
    if isinstance(category, Mapping):
        code, name = _text(category, "code"), _text(category, "name")
    else:
        code = clean_str(category) if not isinstance(category, list) else None
        name = _text(obj, "categoryName")
    code = require(code, "category.code")
    if not re.fullmatch(r"\d{2,6}", code):
        raise TranslateError(f"category.code {code[:20]!r} must be 2-6 digits")
    location = _get(obj, "location") or {}
    if not isinstance(location, Mapping):
        raise TranslateError("location must be an object")
    lon, lat = parse_coordinates(_get(location, "lng", "lon", "longitude"), _get(location, "lat", "latitude"),
                                 "location.lng", "location.lat")
    coord_text = _text(location, "coordType", "coordSystem")
    if coord_text is None:
        coord_system = DEFAULT_COORD_SYSTEM
    elif coord_text.lower() in COORD_SYSTEMS:
        coord_system = COORD_SYSTEMS[coord_text.lower()]
    else:
        raise TranslateError(f"location.coordType {coord_text[:20]!r} not one of wgs84, gcj02, bd09")
    persons_raw = _get(obj, "persons") or []
    if not isinstance(persons_raw, list):
        raise TranslateError("persons must be a list")
    report_time = check_local_datetime(require(_text(obj, "reportTime", "reportedAt"), "reportTime"), "reportTime")
    return {
        "report_id": report_id,
        "native_id": report_id,
        "grid_code": require(_text(obj, "gridCode"), "gridCode"),
        "reporter_id": require(_text(obj, "reporterId"), "reporterId"),
        "category_code": code,
        "category_name": name or CATEGORY_NAMES.get(code) or CATEGORY_NAMES.get(code[:2]),
        "description": require(_text(obj, "description"), "description"),
        "address": _text(obj, "address"),
        "longitude": lon,
        "latitude": lat,
        "coord_system": coord_system,
        "persons": [party_from_json(p, i) for i, p in enumerate(persons_raw)],
        "reported_at_local": report_time,
        "status": _text(obj, "status"),
        "received_at": int(received_at_ms),
        "raw_format": RAW_FORMAT,
    }


@never_raises(TOPIC, SCHEMA)
def translate(payload: bytes | str | Mapping[str, Any] | list[Any], *, received_at_ms: int) -> TranslateResult:
    """Translate a grid webhook body (one report object or a list of them) into GridReport records."""
    doc = payload if isinstance(payload, (Mapping, list)) else parse_json(payload)
    items = doc if isinstance(doc, list) else [doc]
    if len(items) > MAX_REPORTS:
        raise TranslateError(f"{len(items)} reports in one request, limit {MAX_REPORTS}", "TooLarge")
    if not items:
        raise TranslateError("empty list of grid reports", "MissingField")
    records: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        try:
            records.append(report_record(item, received_at_ms))
        except TranslateError as exc:
            prefix = f"report[{index}]: " if len(items) > 1 else ""
            rejected.append(Rejected(prefix + exc.reason, exc.error_type))
    return result(TOPIC, SCHEMA, records, rejected)
