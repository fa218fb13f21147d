"""Grid-app JSON report → GridReport raw record (pure).

Contract: `translate(payload, received_at_ms=..., profile=...)` never raises. `payload` is the
webhook body (bytes/str JSON) or an already-decoded dict, or a list of reports (each translated on
its own). Key names come from the feed's profile (``[aliases]`` in `profile.toml` beside this file,
extended by the deployment's ``grid.toml``). The category may be sent as a code, a name, or both:
a name is looked up in the deployment's ``[codes.category]``, the built-in table and its synonyms
(`codes.py`); a name no table knows is kept as `category_name` with code 99 and a quality flag.
Coordinates are kept as sent with their `coord_system` (the profile's ``coord_system``, GCJ-02,
when the app does not say); normalize converts them.

Only a missing or invalid report id, grid code, reporter id, description or report time rejects a
report; any other bad value is left out and noted as a quality flag (the native key, the reason,
the raw value).
Keys no alias reads (nor the profile's ``ignore`` list names) are reported in
`TranslateResult.unmapped`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from connectors.sources.common import (
    TranslateError,
    TranslateResult,
    check_local_datetime,
    clean_str,
    never_raises,
    check_id_number,
    check_phone,
    optional,
    parse_coordinates,
    parse_json,
    quality_flag,
    require,
    result,
    translate_items,
    with_unmapped,
)
from connectors.sources.grid import codes
from connectors.sources.profile import Profile, builtin_profile

FEED: Final = "grid"
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
OTHER_CODE: Final = "99"

#: Built-in code → name table (kept here under its old name for importers).
CATEGORY_NAMES: Final = codes.CATEGORY_NAMES

PARTY_ROLES: Final = frozenset({"reporter", "party", "victim", "suspect", "caller", "witness",
                                "applicant", "respondent"})

#: Record field → today's key (the fallback when a profile lists no alias).
BUILTIN_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "report_id": ("reportId", "report_id", "eventId", "eventCode", "eventNo", "id"), "grid_code": ("gridCode",), "reporter_id": ("reporterId",),
    "category": ("category",), "category_name": ("categoryName",), "description": ("description",),
    "address": ("address",), "location": ("location",), "longitude": ("lng", "lon", "longitude"),
    "latitude": ("lat", "latitude"), "coord_type": ("coordType", "coordSystem"), "persons": ("persons",),
    "reported_at": ("reportTime", "reportedAt"), "status": ("status",), "person_role": ("role",),
    "person_name": ("name",), "person_id_number": ("idCard", "idNumber", "idNo"),
    "person_phone": ("phone", "mobile"), "person_address": ("address",),
}


class AliasReader:
    """Reads fields of one JSON object through the profile's aliases and remembers which keys it used."""

    def __init__(self, obj: Mapping[str, Any], profile: Profile) -> None:
        self.obj = obj
        self.profile = profile
        self.used: set[str] = set()

    def key(self, field_name: str) -> str | None:
        for alias in self.profile.aliases(field_name, *BUILTIN_KEYS.get(field_name, ())):
            if alias in self.obj:
                return alias
        return None

    def get(self, field_name: str) -> Any:
        k = self.key(field_name)
        if k is None:
            return None
        self.used.add(k)
        return self.obj[k]

    def text(self, field_name: str) -> str | None:
        k = self.key(field_name)
        value = self.get(field_name)
        if isinstance(value, (dict, list)):
            raise TranslateError(f"{k} must be a string, got {type(value).__name__}")
        return clean_str(value)

    def unused(self) -> list[str]:
        """Keys with a value that no alias read and the profile's ``ignore`` does not name."""
        ignore = {str(n) for n in self.profile.get("ignore", []) or []}
        return [k for k, v in self.obj.items()
                if k not in self.used and k not in ignore and v not in (None, "", [], {})]


def _coord_system(text: str | None, profile: Profile) -> str:
    if text is None:
        default = str(profile.get("coord_system") or DEFAULT_COORD_SYSTEM)
        return COORD_SYSTEMS.get(default.lower(), default.upper())
    mapped = profile.synonyms("coord_system").get(text.strip().lower()) or COORD_SYSTEMS.get(text.strip().lower())
    if mapped is None:
        raise TranslateError(f"location.coordType {text[:20]!r} not one of wgs84, gcj02, bd09 "
                             "(synonyms.coord_system); coordinates left out")
    return mapped


def category_tables(profile: Profile) -> tuple[dict[str, str], dict[str, str]]:
    """(code → name, name → code): the built-in 网格事件分类 and its synonyms, then the profile's."""
    names = dict(codes.CATEGORY_NAMES)
    names.update(profile.table("category"))
    by_name = {**codes.NAME_SYNONYMS, **{v: k for k, v in codes.CATEGORY_NAMES.items()}}
    by_name.update({v: k for k, v in profile.table("category").items()})
    by_name.update({k: v for k, v in (profile.get("synonyms.category") or {}).items() if isinstance(v, str)})
    return names, by_name


def _category(r: AliasReader, flags: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(category_code, category_name) from a code, a name, or both; never rejects."""
    raw = r.get("category")
    ck = r.key("category") or r.key("category_name") or "category"  # flags name the native key
    if isinstance(raw, Mapping):
        code = optional(flags, f"{ck}.code", lambda: clean_str(raw.get("code") if not isinstance(
            raw.get("code"), (dict, list)) else None), raw.get("code"))
        name = optional(flags, f"{ck}.name", lambda: clean_str(raw.get("name") if not isinstance(
            raw.get("name"), (dict, list)) else None), raw.get("name"))
    else:
        code = None if isinstance(raw, (dict, list)) else clean_str(raw)
        if isinstance(raw, list):
            flags.append(quality_flag(ck, "category must be a code or a name, got a list", raw))
        name = optional(flags, r.key("category_name") or "categoryName", lambda: r.text("category_name"), None)
    names, by_name = category_tables(r.profile)
    if code is not None and not re.fullmatch(r"\d{2,6}", code):
        if name is None or name == code:
            code, name = None, code  # the category was sent as a name
        else:
            flags.append(quality_flag(f"{ck}.code", f"category code {code[:20]!r} is not 2-6 digits; "
                                                       "the category is read from its name", code))
            code = None
    if code is not None:
        known = names.get(code) or names.get(code[:2])
        if known is None and (name is None or name not in by_name):
            flags.append(quality_flag(ck, f"category code {code!r} is not in the category table "
                                                  "(codes.category); kept as sent", code))
        return code, name or names.get(code) or names.get(code[:2])
    if name is not None:
        found = by_name.get(name)
        if found is not None:
            return found, name
        flags.append(quality_flag(ck, f"category name {name[:30]!r} is not in the category table "
                                              "(codes.category / synonyms.category); kept as category_name, "
                                              f"code {OTHER_CODE}", name))
        return OTHER_CODE, name
    flags.append(quality_flag(ck, f"no category; code {OTHER_CODE}"))
    return OTHER_CODE, None


def party_from_json(obj: Any, index: int, default_role: str = "party", profile: Profile | None = None,
                    flags: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Party record from `{"role","name","idCard","phone","address"}` (key names from the profile).

    A bad value is a quality flag in `flags` (raises TranslateError only for a non-object, or for a
    bad value when no `flags` list is given)."""
    if not isinstance(obj, Mapping):
        raise TranslateError(f"persons[{index}] must be an object")
    r = AliasReader(obj, profile if profile is not None else builtin_profile(FEED))
    strict = flags is None
    notes: list[dict[str, Any]] = [] if flags is None else flags

    def read(field_name: str, check: Any = None) -> Any:
        raw = r.get(field_name)

        def go() -> Any:
            if isinstance(raw, (dict, list)):
                raise TranslateError(f"{r.key(field_name)} must be a string, got {type(raw).__name__}")
            return check(raw) if check else clean_str(raw)
        if strict:
            return go()
        native = r.key(field_name) or field_name.removeprefix("person_")
        return optional(notes, f"persons[{index}].{native}", go, raw)

    role = read("person_role") or default_role
    role = role.lower() if role.lower() in PARTY_ROLES else role
    return {
        "role": role,
        "name": read("person_name"),
        "id_number": read("person_id_number", check_id_number),
        "phone": read("person_phone", check_phone),
        "address": read("person_address"),
    }


def report_record(obj: Any, received_at_ms: int, profile: Profile | None = None,
                  unmapped: dict[str, int] | None = None) -> dict[str, Any]:
    """The GridReport record of one decoded report object (raises TranslateError for a missing or
    invalid required field only)."""
    if not isinstance(obj, Mapping):
        raise TranslateError(f"grid report must be a JSON object, got {type(obj).__name__}", "MalformedJson")
    profile = profile if profile is not None else builtin_profile(FEED)
    r = AliasReader(obj, profile)
    flags: list[dict[str, Any]] = []
    report_id = require(r.text("report_id"), "reportId")
    if len(report_id) > 64:
        raise TranslateError(f"reportId {report_id[:40]!r}… is longer than 64 characters")
    grid_code = require(r.text("grid_code"), "gridCode")
    reporter_id = require(r.text("reporter_id"), "reporterId")
    description = require(r.text("description"), "description")
    report_time = check_local_datetime(require(r.text("reported_at"), "reportTime"), "reportTime")
    code, name = _category(r, flags)

    location = r.get("location")
    if location is not None and not isinstance(location, Mapping):
        flags.append(quality_flag(str(r.key("location")), "location must be an object", location))
        location = None
    loc = AliasReader(location or {}, profile)
    src = loc if (location and (loc.key("longitude") or loc.key("latitude"))) else r
    raw_lon, raw_lat = src.get("longitude"), src.get("latitude")
    coord_text = optional(flags, f"{r.key('location') or 'location'}.coordType", lambda: (loc.text("coord_type") if location else None)
                          or r.text("coord_type"), None)
    try:
        coord_system = _coord_system(coord_text, profile)
        lon, lat = parse_coordinates(raw_lon, raw_lat, "location.lng", "location.lat")
    except TranslateError as exc:
        where = r.key("location") or f"{r.key('longitude') or 'lng'}/{r.key('latitude') or 'lat'}"
        flags.append(quality_flag(where, exc.reason, f"coordType={coord_text} lng={raw_lon} lat={raw_lat}"))
        coord_system, lon, lat = _coord_system(None, profile), None, None

    persons: list[dict[str, Any]] = []
    raw_persons = r.get("persons")
    if raw_persons is not None and not isinstance(raw_persons, list):
        flags.append(quality_flag(str(r.key("persons")), "persons must be a list", raw_persons))
        raw_persons = None
    for i, p in enumerate(raw_persons or []):
        if not isinstance(p, Mapping):
            flags.append(quality_flag(f"{r.key('persons')}[{i}]", f"persons[{i}] must be an object", p))
            continue
        persons.append(party_from_json(p, i, profile=profile, flags=flags))

    record = {
        "report_id": report_id,
        "native_id": report_id,
        "grid_code": grid_code,
        "reporter_id": reporter_id,
        "category_code": code,
        "category_name": name,
        "description": description,
        "address": optional(flags, r.key("address") or "address", lambda: r.text("address"),
                            r.obj.get(r.key("address") or "")),
        "longitude": lon,
        "latitude": lat,
        "coord_system": coord_system,
        "persons": persons,
        "reported_at_local": report_time,
        "status": optional(flags, r.key("status") or "status", lambda: r.text("status"),
                           r.obj.get(r.key("status") or "")),
        "received_at": int(received_at_ms),
        "raw_format": RAW_FORMAT,
        "quality": flags,
    }
    if unmapped is not None:
        for k in r.unused():
            unmapped[k] = unmapped.get(k, 0) + 1
        for k in loc.unused():
            unmapped[f"location.{k}"] = unmapped.get(f"location.{k}", 0) + 1
    return record


@never_raises(TOPIC, SCHEMA)
def translate(payload: bytes | str | Mapping[str, Any] | list[Any], *, received_at_ms: int,
              profile: Profile | None = None) -> TranslateResult:
    """Translate a grid webhook body (one report object or a list of them) into GridReport records."""
    doc = payload if isinstance(payload, (Mapping, list)) else parse_json(payload)
    items = doc if isinstance(doc, list) else [doc]
    if len(items) > MAX_REPORTS:
        raise TranslateError(f"{len(items)} reports in one request, limit {MAX_REPORTS}", "TooLarge")
    if not items:
        raise TranslateError("empty list of grid reports", "MissingField")
    unmapped: dict[str, int] = {}
    records, rejected = translate_items(items, "report", lambda item: report_record(item, received_at_ms, profile,
                                                                                    unmapped))
    return with_unmapped(result(TOPIC, SCHEMA, records, rejected), unmapped)
