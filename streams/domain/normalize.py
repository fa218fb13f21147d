"""Raw source record → canonical Event dict (contracts.md, `pingan.Event`).

Contract: `Normalizer(secret, timezone, devices).normalize(source, record, raw_topic=…,
raw_partition=…, raw_offset=…)` returns a dict with exactly the Event fields (event_id, source,
kind, severity, occurred_at, received_at, location, persons, vehicles, text, text_original, refs,
duplicate_of) for source in camera | grid | alarm110 | mediation | door, or raises
`NormalizeError` naming the missing/invalid field. Output is a pure function of the inputs
(same record → same dict, same event_id). Clear names, ID numbers, phone numbers and plates never
appear in the output: persons carry HMAC keys and masked displays, and identifiers in free text
(`text` and `text_original`) are replaced by their masked forms.

Rules:
- time: local text (`YYYY-MM-DDTHH:MM:SS[.f][±HH:MM|Z]`, `YYYY-MM-DD HH:MM:SS`, `YYYY/MM/DD[ …]`,
  `YYYY-MM-DD`, `YYYYMMDD[HHMMSS]`, `YYYY年MM月DD日`) in the configured zone unless it has an
  offset → UTC epoch ms.
- coordinates → WGS-84 (grid/110 `coord_system`; camera as sent; mediation none). Cameras and
  doors take their position from the device registry when the device is known (a payload cannot
  move a registered device).
- admin code: a 12-digit code from the registry/record; else the nearest gazetteer village within
  5 km of the point (if consistent with a shorter known code); else a village named in the
  address; else the registry/record 9/6-digit code; else a town named in the address; else the
  county in a GB 20-digit DeviceID. Zero-padded codes (513221107000) are shortened. Without
  coordinates, a known village/town reference point is used with accuracy 2 km / 5 km.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.domain import gazetteer, geo, kinds
from streams.domain.address import normalize_address, village_in_address
from streams.domain.extract import find_identifier_spans
from streams.domain.identity import (
    PersonKeyer,
    mask_id,
    mask_name,
    mask_phone,
    mask_plate,
    normalize_id_number,
    normalize_name,
    normalize_phone,
    normalize_plate,
)
from streams.domain.ids import SOURCES, event_id
from streams.domain.text import clean_text, fold_width, to_simplified

NEAREST_VILLAGE_MAX_M = 5000.0
ACCURACY_REGISTRY_M = 10.0
ACCURACY_DEVICE_GPS_M = 50.0
ACCURACY_GRID_APP_M = 30.0
ACCURACY_110 = {"manual": 50.0, "auto": 500.0}
ACCURACY_110_DEFAULT_M = 200.0
ACCURACY_VILLAGE_M = 2000.0
ACCURACY_TOWN_M = 5000.0
ACCURACY_COUNTY_M = 30000.0


class NormalizeError(ValueError):
    """A raw record that cannot become an Event; the message names the field."""


@runtime_checkable
class DeviceInfo(Protocol):
    """What normalize needs from a registry entry (connectors/sources/devices.py satisfies it)."""

    @property
    def lat(self) -> float | None: ...
    @property
    def lon(self) -> float | None: ...
    @property
    def admin_code(self) -> str | None: ...
    @property
    def address(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...


class DeviceLocator(Protocol):
    """Read-only device registry: device id → its fixed location."""

    def lookup(self, device_id: str) -> DeviceInfo | None: ...


@dataclass(frozen=True, slots=True)
class StaticDevice:
    """A plain DeviceInfo (tests, simulator)."""

    lat: float | None = None
    lon: float | None = None
    admin_code: str | None = None
    address: str | None = None
    name: str | None = None


class StaticDeviceLocator:
    """A DeviceLocator over a fixed mapping (copied; never modified)."""

    def __init__(self, devices: Mapping[str, DeviceInfo]) -> None:
        self._devices = dict(devices)

    def lookup(self, device_id: str) -> DeviceInfo | None:
        return self._devices.get(device_id)


# ---------------------------------------------------------------- time
_TIME_RE = re.compile(
    r"^(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})"
    r"(?:[T ](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?)?"
    r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_COMPACT_RE = re.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?:(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})?)?$")


def parse_local_time(text: Any, tz: ZoneInfo) -> int:
    """Local time text → UTC epoch milliseconds (the text's own offset wins over `tz`)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty time")
    s = fold_width(text).strip().replace("年", "-").replace("月", "-").replace("日", "")
    m = _TIME_RE.match(s) or _COMPACT_RE.match(s)
    if not m:
        raise ValueError(f"unrecognised time format {text!r}")
    g = m.groupdict()
    frac = (g.get("f") or "0")[:6].ljust(6, "0")
    dt = datetime(int(g["y"]), int(g["m"]), int(g["d"]), int(g["H"] or 0), int(g["M"] or 0),
                  int(g["S"] or 0), int(frac))
    off = g.get("tz")
    if off:
        if off == "Z":
            tzinfo: Any = dt_timezone.utc
        else:
            sign = 1 if off[0] == "+" else -1
            digits = off[1:].replace(":", "")
            tzinfo = dt_timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        dt = dt.replace(tzinfo=tzinfo)
    else:
        dt = dt.replace(tzinfo=tz)
    return (dt - _EPOCH) // timedelta(milliseconds=1)


# ---------------------------------------------------------------- helpers
def _opt_str(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _opt_float(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _opt_int(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(str(v).strip())
    except ValueError:
        return None


def _clean_admin_code(code: Any) -> str | None:
    """6/9/12-digit admin code with zero padding removed, or None."""
    s = re.sub(r"\D", "", str(code or ""))
    if len(s) < 6:
        return None
    s = s[:12] if len(s) >= 12 else s[:9] if len(s) >= 9 else s[:6]
    if len(s) == 12 and s[9:] == "000":
        s = s[:9]
    if len(s) == 9 and s[6:] == "000":
        s = s[:6]
    return s


@dataclass(slots=True)
class _Party:
    role: str | None
    name: str | None = None
    id_number: str | None = None
    phones: list[str] = field(default_factory=list)
    address: str | None = None


@dataclass(slots=True)
class _Draft:
    native_id: str
    occurred_at: int
    received_at: int
    classification: kinds.Classification
    text_original: str
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    admin_codes: list[str] = field(default_factory=list)  # explicit, most trusted first
    address: str | None = None
    gb_device_id: str | None = None
    device_id: str | None = None
    parties: list[_Party] = field(default_factory=list)
    plates: list[str] = field(default_factory=list)
    related_ids: list[str] = field(default_factory=list)


class Normalizer:
    """Turns raw source records into canonical Event dicts (see module contract)."""

    def __init__(self, secret: bytes, timezone: str = "Asia/Shanghai",
                 devices: DeviceLocator | None = None) -> None:
        self._keyer = PersonKeyer(secret)
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {timezone!r}") from exc
        self._devices = devices
        self._handlers: dict[str, Callable[[Mapping[str, Any]], _Draft]] = {
            "camera": self._camera, "grid": self._grid, "alarm110": self._alarm110,
            "mediation": self._mediation, "door": self._door,
        }

    # ------------------------------------------------------------ public
    def normalize(self, source: str, record: Mapping[str, Any], *, raw_topic: str | None = None,
                  raw_partition: int | None = None, raw_offset: int | None = None) -> dict[str, Any]:
        """The canonical Event dict for one raw record; raises NormalizeError on bad input."""
        src = (source or "").strip().lower()
        if src not in SOURCES:
            raise NormalizeError(f"source: unknown source {source!r}")
        if not isinstance(record, Mapping):
            raise NormalizeError(f"record: expected a mapping, got {type(record).__name__}")
        draft = self._handlers[src](record)
        location = self._locate(draft)
        persons, vehicles, text_original = self._people(draft, location.get("village_code"))
        return {
            "event_id": event_id(src, draft.native_id),
            "source": src,
            "kind": draft.classification.kind,
            "severity": draft.classification.severity,
            "occurred_at": draft.occurred_at,
            "received_at": draft.received_at,
            "location": location,
            "persons": persons,
            "vehicles": vehicles,
            "text": clean_text(text_original),
            "text_original": text_original,
            "refs": {
                "native_id": draft.native_id,
                "related_ids": draft.related_ids,
                "device_id": draft.device_id,
                "raw_topic": raw_topic,
                "raw_partition": raw_partition,
                "raw_offset": raw_offset,
            },
            "duplicate_of": None,
        }

    # ------------------------------------------------------------ common fields
    @staticmethod
    def _required(record: Mapping[str, Any], name: str) -> Any:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise NormalizeError(f"{name}: required field is missing or empty")
        return value

    def _time(self, record: Mapping[str, Any], name: str) -> int:
        value = self._required(record, name)
        try:
            return parse_local_time(value, self._tz)
        except (ValueError, OverflowError) as exc:
            raise NormalizeError(f"{name}: unparseable time {value!r} ({exc})") from exc

    def _received_at(self, record: Mapping[str, Any]) -> int:
        value = self._required(record, "received_at")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise NormalizeError(f"received_at: expected epoch milliseconds, got {value!r}")
        return int(value)

    def _native_id(self, record: Mapping[str, Any], fallback: str | None = None) -> str:
        nid = _opt_str(record.get("native_id"))
        if nid is None and fallback is not None:
            nid = _opt_str(record.get(fallback))
        if nid is None:
            names = "native_id" + (f" (or {fallback})" if fallback else "")
            raise NormalizeError(f"{names}: required field is missing or empty")
        return nid

    @staticmethod
    def _coords(record: Mapping[str, Any], coord_system: str | None) -> tuple[float | None, float | None]:
        lat, lon = _opt_float(record.get("latitude")), _opt_float(record.get("longitude"))
        if lat is not None and lon is not None and abs(lat) > 90 >= abs(lon):
            lat, lon = lon, lat  # swapped columns are a common export mistake
        if not geo.valid_latlon(lat, lon):
            return None, None
        assert lat is not None and lon is not None
        try:
            return geo.to_wgs84(lat, lon, coord_system)
        except ValueError as exc:
            raise NormalizeError(f"coord_system: {exc}") from exc

    def _device(self, device_id: str) -> DeviceInfo | None:
        return self._devices.lookup(device_id) if self._devices is not None else None

    def _apply_device(self, draft: _Draft, device_id: str) -> None:
        """Registry position and admin code override whatever the payload said."""
        dev = self._device(device_id)
        if dev is None:
            return
        if geo.valid_latlon(dev.lat, dev.lon):
            draft.lat, draft.lon, draft.accuracy_m = float(dev.lat), float(dev.lon), ACCURACY_REGISTRY_M  # type: ignore[arg-type]
        code = _clean_admin_code(dev.admin_code)
        if code:
            draft.admin_codes.insert(0, code)
        if dev.address:
            draft.address = dev.address

    # ------------------------------------------------------------ per source
    def _camera(self, r: Mapping[str, Any]) -> _Draft:
        device_id = str(self._required(r, "device_id")).strip()
        event_type = str(self._required(r, "event_type")).strip().lower()
        if event_type not in kinds.CAMERA_EVENT_TYPES:
            mapped = kinds.isapi_event_type(event_type)
            if mapped == "other":
                mapped = kinds.gb28181_event_type(_opt_int(r.get("alarm_method")), _opt_int(r.get("alarm_type")))
            event_type = mapped
        draft = _Draft(
            native_id=self._native_id(r),
            occurred_at=self._time(r, "occurred_at_local"),
            received_at=self._received_at(r),
            classification=kinds.camera_kind(event_type, _opt_int(r.get("alarm_priority"))),
            text_original=str(r.get("description") or ""),
            device_id=device_id,
            gb_device_id=device_id if len(device_id) == 20 and device_id.isdigit() else None,
        )
        lat, lon = self._coords(r, "WGS84")
        if lat is not None:
            draft.lat, draft.lon, draft.accuracy_m = lat, lon, ACCURACY_DEVICE_GPS_M
        self._apply_device(draft, device_id)
        if r.get("person_name") or r.get("employee_no"):
            draft.parties.append(_Party(role="subject", name=_opt_str(r.get("person_name"))))
        plate = _opt_str(r.get("plate"))
        if plate:
            draft.plates.append(plate)
        return draft

    def _grid(self, r: Mapping[str, Any]) -> _Draft:
        report_id = self._native_id(r, "report_id")
        if r.get("description") is None:
            raise NormalizeError("description: required field is missing")
        description = str(r.get("description"))
        draft = _Draft(
            native_id=report_id,
            occurred_at=self._time(r, "reported_at_local"),
            received_at=self._received_at(r),
            classification=kinds.grid_kind(_opt_str(r.get("category_code")),
                                           clean_text(_opt_str(r.get("category_name"))),
                                           clean_text(description)),
            text_original=description,
            address=_opt_str(r.get("address")),
        )
        lat, lon = self._coords(r, _opt_str(r.get("coord_system")) or "GCJ02")
        if lat is not None:
            draft.lat, draft.lon, draft.accuracy_m = lat, lon, ACCURACY_GRID_APP_M
        grid_code = re.match(r"\d+", _opt_str(r.get("grid_code")) or "")
        if grid_code and (code := _clean_admin_code(grid_code.group(0))):
            draft.admin_codes.append(code)
        draft.parties.extend(self._parties(r.get("persons"), "persons", default_role="party"))
        return draft

    def _alarm110(self, r: Mapping[str, Any]) -> _Draft:
        jjdbh = self._native_id(r, "jjdbh")
        if r.get("content") is None:
            raise NormalizeError("content: required field is missing")
        content = str(r.get("content"))
        draft = _Draft(
            native_id=jjdbh,
            occurred_at=self._time(r, "bjsj_local"),
            received_at=self._received_at(r),
            classification=kinds.alarm110_kind(_opt_str(r.get("bjlb")), _opt_str(r.get("bjlx")),
                                               _opt_str(r.get("bjxl")), clean_text(content),
                                               _opt_int(r.get("jqjb"))),
            text_original=content,
            address=_opt_str(r.get("address")),
        )
        lat, lon = self._coords(r, _opt_str(r.get("coord_system")) or "WGS84")
        if lat is not None:
            draft.lat, draft.lon = lat, lon
            draft.accuracy_m = ACCURACY_110.get(_opt_str(r.get("location_source")) or "", ACCURACY_110_DEFAULT_M)
        if code := _clean_admin_code(r.get("xzqhbh")):
            draft.admin_codes.append(code)
        phones = [p for p in (_opt_str(r.get("caller_phone")), _opt_str(r.get("contact_phone"))) if p]
        if r.get("caller_name") or r.get("caller_id_number") or phones:
            draft.parties.append(_Party(role="caller", name=_opt_str(r.get("caller_name")),
                                        id_number=_opt_str(r.get("caller_id_number")), phones=phones))
        for rel in re.split(r"[\s,;，；、]+", _opt_str(r.get("gljjdbh")) or ""):
            rid = f"alarm110:{rel}"
            if rel and rel != jjdbh and rid not in draft.related_ids:
                draft.related_ids.append(rid)
        return draft

    def _mediation(self, r: Mapping[str, Any]) -> _Draft:
        case_no = self._native_id(r, "case_no")
        dispute_type = str(self._required(r, "dispute_type"))
        summary = _opt_str(r.get("summary"))
        draft = _Draft(
            native_id=case_no,
            occurred_at=self._time(r, "accepted_date_local"),
            received_at=self._received_at(r),
            classification=kinds.mediation_kind(clean_text(dispute_type), clean_text(summary)),
            text_original=summary or dispute_type,
            address=_opt_str(r.get("address")),
        )
        if code := _clean_admin_code(r.get("admin_code")):
            draft.admin_codes.append(code)
        draft.parties.extend(self._parties(r.get("parties"), "parties", default_role="party"))
        return draft

    def _door(self, r: Mapping[str, Any]) -> _Draft:
        device_id = str(self._required(r, "device_id")).strip()
        direction = {"in": "进", "out": "出"}.get((_opt_str(r.get("direction")) or "").lower())
        text = " ".join(p for p in ("门禁通行", _opt_str(r.get("community")), _opt_str(r.get("door")), direction) if p)
        draft = _Draft(
            native_id=self._native_id(r),
            occurred_at=self._time(r, "occurred_at_local"),
            received_at=self._received_at(r),
            classification=kinds.door_kind(),
            text_original=text,
            device_id=device_id,
            gb_device_id=device_id if len(device_id) == 20 and device_id.isdigit() else None,
            address=_opt_str(r.get("community")),
        )
        self._apply_device(draft, device_id)
        if r.get("person_name"):
            draft.parties.append(_Party(role="resident", name=_opt_str(r.get("person_name"))))
        return draft

    @staticmethod
    def _parties(value: Any, name: str, default_role: str) -> list[_Party]:
        if value is None:
            return []
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise NormalizeError(f"{name}: expected a list of parties")
        out: list[_Party] = []
        for i, p in enumerate(value):
            if not isinstance(p, Mapping):
                raise NormalizeError(f"{name}[{i}]: expected an object")
            phone = _opt_str(p.get("phone"))
            out.append(_Party(role=_opt_str(p.get("role")) or default_role, name=_opt_str(p.get("name")),
                              id_number=_opt_str(p.get("id_number")), phones=[phone] if phone else [],
                              address=_opt_str(p.get("address"))))
        return out

    # ------------------------------------------------------------ location
    def _locate(self, d: _Draft) -> dict[str, Any]:
        explicit = [c for c in d.admin_codes if c]
        longest = max(explicit, key=len) if explicit else None
        address = normalize_address(d.address)

        def consistent(code: str) -> bool:
            return all(code.startswith(c) or c.startswith(code) for c in explicit)

        admin: str | None = next((c for c in explicit if len(c) == 12), None)
        if admin is None and d.lat is not None and d.lon is not None:
            near = geo.nearest_place(d.lat, d.lon, NEAREST_VILLAGE_MAX_M)
            if near is not None and consistent(near.village.code):
                admin = near.village.code
        named = village_in_address(address)
        if admin is None and named is not None and len(named.code) == 12 and consistent(named.code):
            admin = named.code
        if admin is None and longest is not None:
            admin = longest
        if admin is None and named is not None and consistent(named.code):
            admin = named.code
        if admin is None and d.gb_device_id is not None:
            admin = d.gb_device_id[:6]

        lat, lon, acc = d.lat, d.lon, d.accuracy_m
        if lat is None and admin is not None:
            ref = gazetteer.place(admin)
            if ref is not None:
                lat, lon = ref.lat, ref.lon
                acc = ACCURACY_VILLAGE_M if len(admin) == 12 else ACCURACY_TOWN_M
        county, town, village = gazetteer.split_admin_code(admin)
        has_point = lat is not None and lon is not None
        return {
            "lat": round(lat, 7) if has_point else None,  # type: ignore[arg-type]
            "lon": round(lon, 7) if has_point else None,  # type: ignore[arg-type]
            "accuracy_m": acc if has_point else None,
            "admin_code": admin,
            "county_code": county,
            "town_code": town,
            "village_code": village,
            "address": address,
            "geo_cell": geo.h3_cell(lat, lon) if has_point else None,  # type: ignore[arg-type]
        }

    # ------------------------------------------------------------ persons, vehicles, redaction
    def _people(self, d: _Draft, village_code: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
        persons: list[dict[str, Any]] = []
        seen_keys: set[str] = set()
        literals: dict[str, str] = {}  # clear value → masked replacement, for free-text redaction

        for p in d.parties:
            keys: list[str] = []
            idn = normalize_id_number(p.id_number)
            if k := self._keyer.id_key(idn):
                keys.append(k)
            phones = [n for n in (normalize_phone(x) for x in p.phones) if n]
            for n in phones:
                k = self._keyer.phone_key(n)
                if k and k not in keys:
                    keys.append(k)
            home = village_in_address(p.address)
            village = home.code if home is not None and len(home.code) == 12 else village_code
            if k := self._keyer.name_village_key(p.name, village):
                keys.append(k)
            ref = {
                "role": p.role,
                "keys": keys,
                "display_name": mask_name(p.name),
                "display_id": mask_id(idn),
                "display_phone": mask_phone(phones[0]) if phones else None,
            }
            if keys or ref["display_name"] or ref["display_id"] or ref["display_phone"]:
                persons.append(ref)
                seen_keys.update(keys)
            name = normalize_name(p.name)
            for clear, masked in ((p.name, mask_name(p.name)), (name, mask_name(p.name)),
                                  (p.id_number, mask_id(idn)), (idn, mask_id(idn))):
                if clear and len(clear) >= 2:
                    literals[clear] = masked or "*" * len(clear)
            for raw_phone in p.phones:
                literals[raw_phone] = mask_phone(raw_phone) or "*" * len(raw_phone)
            for n in phones:
                literals[n] = mask_phone(n) or "*" * len(n)

        vehicles: list[dict[str, Any]] = []
        seen_plates: set[str] = set()

        def add_vehicle(raw: str) -> None:
            key = self._keyer.plate_key(raw)
            display = mask_plate(raw)
            if key and display and key not in seen_plates:
                seen_plates.add(key)
                vehicles.append({"key": key, "display_plate": display})

        for plate in d.plates:
            add_vehicle(plate)
            if normalize_plate(plate):
                literals[plate] = mask_plate(plate) or "*" * len(plate)

        spans = find_identifier_spans(d.text_original)
        for span in spans:
            if span.kind == "plate":
                add_vehicle(span.value)
                continue
            if span.kind == "id":
                key, ref = self._keyer.id_key(span.value), {"display_id": mask_id(span.value)}
            else:
                key, ref = self._keyer.phone_key(span.value), {"display_phone": mask_phone(span.value)}
            if key and key not in seen_keys:
                seen_keys.add(key)
                persons.append({"role": "mentioned", "keys": [key], "display_name": None,
                                "display_id": ref.get("display_id"), "display_phone": ref.get("display_phone")})
        return persons, vehicles, _redact(d.text_original, spans, literals)


def _redact(text: str, spans: Sequence[Any], literals: Mapping[str, str]) -> str:
    """Replace identifier spans and known clear values (names, IDs, phones) by masked forms."""
    if not text:
        return ""
    folded = fold_width(text)
    haystacks = [folded]
    simplified = to_simplified(folded)
    if simplified != folded and len(simplified) == len(folded):
        haystacks.append(simplified)  # names written in traditional characters
    cuts: list[tuple[int, int, str]] = []
    for s in spans:
        masked = {"id": mask_id, "phone": mask_phone, "plate": mask_plate}[s.kind](s.value)
        cuts.append((s.start, s.end, masked or "*" * (s.end - s.start)))
    for clear in sorted(literals, key=len, reverse=True):
        needle = to_simplified(fold_width(clear))
        for hay in haystacks:
            start = hay.find(needle)
            while start >= 0:
                end = start + len(needle)
                if not any(start < e and b < end for b, e, _ in cuts):
                    cuts.append((start, end, literals[clear]))
                start = hay.find(needle, end)
    out: list[str] = []
    pos = 0
    for start, end, repl in sorted(cuts):
        out.append(text[pos:start])
        out.append(repl)
        pos = end
    out.append(text[pos:])
    return "".join(out)
