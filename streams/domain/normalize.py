"""Raw source record → canonical Event dict (contracts.md, `pingan.Event`).

Contract: `Normalizer(secret, timezone, devices, mappers=…).normalize(source, record, raw_topic=…,
raw_partition=…, raw_offset=…)` returns a dict with exactly the Event fields (event_id, source,
kind, severity, occurred_at, received_at, location, persons, vehicles, text, text_original, refs,
duplicate_of) for every source that has a mapper, or raises `NormalizeError` naming the
missing/invalid field. The domain knows no source: each source's folder
(`connectors/sources/<feed>/`) supplies a `Mapper` that reads its raw record into a `Draft`
through a `RecordReader`; everything after that (devices, location, persons, redaction, ids) is
here and is the same for every source. Output is a pure function of the inputs
(same record → same dict, same event_id). Clear names, ID numbers, phone numbers and plates never
appear in the output: persons carry HMAC keys and masked displays, and identifiers in free text
(`text` and `text_original`, the address, quality-note reasons) are replaced by their masked forms —
anything ID- or phone-shaped, valid or not (the rule is in extract.py); only valid ones are keyed.

Rules:
- time: local text (`YYYY-MM-DDTHH:MM:SS[.f][±HH:MM|Z]`, `YYYY-MM-DD HH:MM:SS`, `YYYY/MM/DD[ …]`,
  `YYYY-MM-DD`, `YYYYMMDD[HHMMSS]`, `YYYY年MM月DD日`) in the configured zone unless it has an
  offset → UTC epoch ms.
- coordinates → WGS-84 in the source's coordinate system (its mapper says which). A draft with a
  `device_id` takes its position from the device registry when the device is known (a payload
  cannot move a registered device).
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

from streams.domain import admin as admin_codes
from streams.domain import gazetteer, geo, kinds
from streams.domain.address import normalize_address, village_in_address
from streams.domain.extract import find_identifier_spans
from streams.domain.identity import (
    PersonKeyer,
    mask_id,
    mask_id_shaped,
    mask_name,
    mask_phone,
    mask_phone_shaped,
    mask_plate,
    normalize_id_number,
    normalize_name,
    normalize_phone,
    normalize_plate,
)
from streams.domain.ids import event_id
from streams.domain.text import clean_text, fold_width, to_simplified

NEAREST_VILLAGE_MAX_M = 5000.0
ACCURACY_REGISTRY_M = 10.0
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
def opt_str(v: Any) -> str | None:
    """Stripped text, or None for None/blank."""
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def opt_float(v: Any) -> float | None:
    """A finite float, or None (booleans, blanks and junk are None)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def opt_int(v: Any) -> int | None:
    """An int, or None (booleans, blanks and junk are None)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(str(v).strip())
    except ValueError:
        return None


@dataclass(slots=True)
class Party:
    """A person a record names, in clear; normalize keys and masks it (nothing clear leaves)."""

    role: str | None
    name: str | None = None
    id_number: str | None = None
    phones: list[str] = field(default_factory=list)
    address: str | None = None


@dataclass(slots=True)
class Draft:
    """What a source's mapper reads out of one raw record; `Normalizer` makes the Event of it.

    `admin_codes` are explicit codes, most trusted first; `device_id` makes the device registry's
    position, admin code and address override the payload's (a payload cannot move a device)."""

    native_id: str
    occurred_at: int
    received_at: int
    classification: kinds.Classification
    text_original: str
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    admin_codes: list[str] = field(default_factory=list)
    address: str | None = None
    gb_device_id: str | None = None
    device_id: str | None = None
    parties: list[Party] = field(default_factory=list)
    plates: list[str] = field(default_factory=list)
    related_ids: list[str] = field(default_factory=list)
    quality: list[tuple[str, str]] = field(default_factory=list)  # (field, reason) of optional fields not used
    resolution: str | None = None  # the source says the matter is settled (Event.resolution)

    def flag(self, field_name: str, reason: str) -> None:
        """Note an optional field that could not be used (the event is still made)."""
        self.quality.append((field_name, reason))

    def set_point(self, point: tuple[float | None, float | None], accuracy_m: float | None) -> None:
        """Use a (lat, lon) from the payload, if it has one."""
        lat, lon = point
        if lat is not None and lon is not None:
            self.lat, self.lon, self.accuracy_m = lat, lon, accuracy_m


class RecordReader:
    """Validating access to one raw record's fields, for source mappers.

    Every failure is a `NormalizeError` whose message starts with the field name."""

    __slots__ = ("record", "_tz")

    def __init__(self, record: Mapping[str, Any], tz: ZoneInfo) -> None:
        self.record = record
        self._tz = tz

    def get(self, name: str) -> Any:
        """The raw value (or None)."""
        return self.record.get(name)

    def text(self, name: str) -> str | None:
        """The stripped text of a field, or None when missing or blank."""
        return opt_str(self.record.get(name))

    def integer(self, name: str) -> int | None:
        """The field as an int, or None."""
        return opt_int(self.record.get(name))

    def required(self, name: str) -> Any:
        """The value of a required field; missing or blank raises."""
        value = self.record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise NormalizeError(f"{name}: required field is missing or empty")
        return value

    def present(self, name: str) -> str:
        """A field that must be present (it may be empty text)."""
        value = self.record.get(name)
        if value is None:
            raise NormalizeError(f"{name}: required field is missing")
        return str(value)

    def time(self, name: str) -> int:
        """A required local time field → UTC epoch ms (the configured zone unless it has an offset)."""
        value = self.required(name)
        try:
            return parse_local_time(value, self._tz)
        except (ValueError, OverflowError) as exc:
            raise NormalizeError(f"{name}: unparseable time {value!r} ({exc})") from exc

    def received_at(self) -> int:
        """The receiver's epoch-ms stamp (required)."""
        value = self.required("received_at")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise NormalizeError(f"received_at: expected epoch milliseconds, got {value!r}")
        return int(value)

    def native_id(self, fallback: str | None = None) -> str:
        """`native_id`, else the `fallback` field; one of them is required."""
        nid = opt_str(self.record.get("native_id"))
        if nid is None and fallback is not None:
            nid = opt_str(self.record.get(fallback))
        if nid is None:
            names = "native_id" + (f" (or {fallback})" if fallback else "")
            raise NormalizeError(f"{names}: required field is missing or empty")
        return nid

    def coords(self, coord_system: str | None) -> tuple[float | None, float | None]:
        """`latitude`/`longitude` → WGS-84 (lat, lon), or (None, None) when absent or invalid."""
        lat, lon = opt_float(self.record.get("latitude")), opt_float(self.record.get("longitude"))
        if lat is not None and lon is not None and abs(lat) > 90 >= abs(lon):
            lat, lon = lon, lat  # swapped columns are a common export mistake
        if not geo.valid_latlon(lat, lon):
            return None, None
        assert lat is not None and lon is not None
        try:
            return geo.to_wgs84(lat, lon, coord_system)
        except ValueError as exc:
            raise NormalizeError(f"coord_system: {exc}") from exc

    def admin_code(self, name: str) -> str | None:
        """A 6/9/12-digit admin code field, zero padding removed, or None."""
        return admin_codes.clean(self.record.get(name))

    def parties(self, name: str, default_role: str) -> list[Party]:
        """A list field of party objects (role, name, id_number, phone, address)."""
        value = self.record.get(name)
        if value is None:
            return []
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise NormalizeError(f"{name}: expected a list of parties")
        out: list[Party] = []
        for i, p in enumerate(value):
            if not isinstance(p, Mapping):
                raise NormalizeError(f"{name}[{i}]: expected an object")
            phone = opt_str(p.get("phone"))
            out.append(Party(role=opt_str(p.get("role")) or default_role, name=opt_str(p.get("name")),
                             id_number=opt_str(p.get("id_number")), phones=[phone] if phone else [],
                             address=opt_str(p.get("address"))))
        return out


#: A source's mapping of its raw record (read through a `RecordReader`) to a `Draft`.
Mapper = Callable[[RecordReader], Draft]


class Normalizer:
    """Turns raw source records into canonical Event dicts (see module contract).

    `mappers` (canonical source name → `Mapper`) come from the source registry
    (`connectors.sources.registry.mappers()`); the domain itself knows no source."""

    def __init__(self, secret: bytes, timezone: str, devices: DeviceLocator | None = None, *,
                 mappers: Mapping[str, Mapper]) -> None:
        self._keyer = PersonKeyer(secret)
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {timezone!r}") from exc
        self._devices = devices
        self._mappers: dict[str, Mapper] = {name.strip().lower(): m for name, m in mappers.items()}

    @property
    def sources(self) -> frozenset[str]:
        """The canonical source names this normalizer maps."""
        return frozenset(self._mappers)

    # ------------------------------------------------------------ public
    def normalize(self, source: str, record: Mapping[str, Any], *, raw_topic: str | None = None,
                  raw_partition: int | None = None, raw_offset: int | None = None) -> dict[str, Any]:
        """The canonical Event dict for one raw record; raises NormalizeError on bad input."""
        src = (source or "").strip().lower()
        mapper = self._mappers.get(src)
        if mapper is None:
            raise NormalizeError(f"source: unknown source {source!r}")
        if not isinstance(record, Mapping):
            raise NormalizeError(f"record: expected a mapping, got {type(record).__name__}")
        draft = mapper(RecordReader(record, self._tz))
        if draft.device_id:
            self._apply_device(draft, draft.device_id)
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
            "resolution": draft.resolution,
            "quality": self._quality(record, draft),
        }

    @staticmethod
    def _quality(record: Mapping[str, Any], draft: Draft) -> list[dict[str, Any]]:
        """The record's translate flags and the mapper's, as Event quality notes (values left out)."""
        notes: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        raw = record.get("quality")
        pairs = [(str(f.get("field")), str(f.get("reason"))) for f in raw if isinstance(f, Mapping)] \
            if isinstance(raw, Sequence) and not isinstance(raw, (str, bytes)) else []
        for pair in [*pairs, *draft.quality]:
            if pair not in seen:
                seen.add(pair)
                notes.append({"field": pair[0], "reason": mask_free_text(pair[1]), "value": None})
        return notes

    # ------------------------------------------------------------ devices
    def _apply_device(self, draft: Draft, device_id: str) -> None:
        """Registry position and admin code override whatever the payload said."""
        dev = self._devices.lookup(device_id) if self._devices is not None else None
        if dev is None:
            return
        if geo.valid_latlon(dev.lat, dev.lon):
            draft.lat, draft.lon, draft.accuracy_m = float(dev.lat), float(dev.lon), ACCURACY_REGISTRY_M  # type: ignore[arg-type]
        code = admin_codes.clean(dev.admin_code)
        if code:
            draft.admin_codes.insert(0, code)
        if dev.address:
            draft.address = dev.address

    # ------------------------------------------------------------ location
    def _locate(self, d: Draft) -> dict[str, Any]:
        explicit = [c for c in d.admin_codes if c]
        longest = max(explicit, key=len) if explicit else None
        address = normalize_address(mask_free_text(d.address))

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
        county, town, village = admin_codes.split(admin)
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
    def _people(self, d: Draft, village_code: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
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
            if not span.keyed:
                continue  # ID- or phone-shaped but not a valid ID/mobile: masked, no person key
            if span.kind == "id":
                key, ref = self._keyer.id_key(span.value), {"display_id": mask_id(span.value)}
            else:
                key, ref = self._keyer.phone_key(span.value), {"display_phone": mask_phone(span.value)}
            if key and key not in seen_keys:
                seen_keys.add(key)
                persons.append({"role": "mentioned", "keys": [key], "display_name": None,
                                "display_id": ref.get("display_id"), "display_phone": ref.get("display_phone")})
        return persons, vehicles, _redact(d.text_original, spans, literals)


def mask_free_text(text: str | None) -> str | None:
    """`text` with every ID-, phone- and plate-shaped number masked (addresses, quality reasons)."""
    if not text:
        return text
    spans = find_identifier_spans(text)
    return _redact(text, spans, {}) if spans else text


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
        masked = {"id": mask_id_shaped, "phone": mask_phone_shaped, "plate": mask_plate}[s.kind](s.value)
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
