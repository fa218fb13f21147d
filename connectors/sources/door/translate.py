"""Smart-community door access → DoorAccess raw records (pure).

Contract: `translate(body, content_type=..., registry=..., received_at_ms=...)` never raises.
Accepts (a) ISAPI `AccessControllerEvent` pushes (bare JSON/XML or multipart with pictures) and
(b) GA/T 1400-style community records (one object, a list, or
`{"AccessRecordListObject": {"AccessRecordObject": [...]}}`). The device must be in the registry
(ISAPI: by MAC, IP, UUID; GA/T 1400: by DeviceID); unknown devices are rejected.
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
    media_type,
    never_raises,
    parse_int,
    parse_json,
    require,
    result,
)
from connectors.sources.isapi.translate import Alert, alerts_from_body, is_heartbeat, resolve_device
from connectors.sources.devices import DeviceInfo, DeviceRegistry

TOPIC: Final = "raw.door.v1"
SCHEMA: Final = "pingan.raw.DoorAccess"

RAW_FORMAT_ISAPI: Final = "isapi-access"
RAW_FORMAT_GAT1400: Final = "gat1400"
MAX_RECORDS: Final = 1000

ATTENDANCE_DIRECTIONS: Final[Mapping[str, str]] = {
    "checkin": "in", "breakin": "in", "overtimein": "in",
    "checkout": "out", "breakout": "out", "overtimeout": "out",
}
GAT1400_DIRECTIONS: Final[Mapping[str, str]] = {"1": "in", "2": "out"}


def _ci(mapping: Mapping[str, Any], *names: str) -> Any:
    lowered = {str(k).lower(): v for k, v in mapping.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _text(mapping: Mapping[str, Any], *names: str) -> str | None:
    value = _ci(mapping, *names)
    if isinstance(value, (dict, list)):
        raise TranslateError(f"{names[0]} must be a scalar, got {type(value).__name__}")
    return clean_str(value)


def _empty_record() -> dict[str, Any]:
    return {"device_id": None, "native_id": None, "community": None, "door": None, "person_name": None,
            "card_no": None, "employee_no": None, "direction": None, "occurred_at_local": None,
            "event_code": None, "received_at": None, "raw_format": None}


def isapi_record(alert: Alert, device: DeviceInfo, received_at_ms: int) -> dict[str, Any]:
    """DoorAccess record of one ISAPI AccessControllerEvent alert (raises TranslateError)."""
    fields = alert.fields
    event_type = require(_text(fields, "eventType"), "eventType")
    if event_type.lower() != "accesscontrollerevent":
        raise TranslateError(f"eventType {event_type[:40]!r} is not AccessControllerEvent", "UnsupportedMessage")
    access = _ci(fields, "AccessControllerEvent")
    if not isinstance(access, Mapping):
        raise TranslateError("missing AccessControllerEvent object", "MissingField")
    date_time = check_local_datetime(require(_text(fields, "dateTime"), "dateTime"), "dateTime")
    major = parse_int(_text(access, "majorEventType"), "majorEventType", 0, 99999)
    sub = parse_int(_text(access, "subEventType"), "subEventType", 0, 99999)
    attendance = (_text(access, "attendanceStatus") or "").lower()
    employee_no = _text(access, "employeeNoString", "employeeNo")
    card_no = _text(access, "cardNo")
    serial = _text(access, "serialNo")
    door_no = _text(access, "doorNo")
    record = _empty_record()
    record.update({
        "device_id": device.device_id,
        "native_id": f"{device.device_id}:{date_time}:{serial or employee_no or card_no or ''}",
        "door": door_no,
        "person_name": _text(access, "name"),
        "card_no": card_no,
        "employee_no": employee_no,
        "direction": ATTENDANCE_DIRECTIONS.get(attendance),
        "occurred_at_local": date_time,
        "event_code": f"{major}-{sub}" if major is not None and sub is not None else (
            str(major) if major is not None else None),
        "received_at": int(received_at_ms),
        "raw_format": RAW_FORMAT_ISAPI,
    })
    return record


def _pass_time(text: str) -> str:
    """GA/T 1400 `YYYYMMDDHHMMSS` → ISO `YYYY-MM-DDTHH:MM:SS` (other accepted forms kept)."""
    if re.fullmatch(r"\d{14}", text):
        iso = f"{text[0:4]}-{text[4:6]}-{text[6:8]}T{text[8:10]}:{text[10:12]}:{text[12:14]}"
        return check_local_datetime(iso, "PassTime")
    return check_local_datetime(text, "PassTime")


def gat1400_record(obj: Any, registry: DeviceRegistry, received_at_ms: int) -> dict[str, Any]:
    """DoorAccess record of one GA/T 1400 community access record (raises TranslateError)."""
    if not isinstance(obj, Mapping):
        raise TranslateError(f"access record must be an object, got {type(obj).__name__}", "MalformedJson")
    record_id = require(_text(obj, "RecordID"), "RecordID")
    device_ref = require(_text(obj, "DeviceID"), "DeviceID")
    device = registry.lookup(device_ref) or registry.by_uuid(device_ref)
    if device is None:
        raise TranslateError(f"unknown device: DeviceID {device_ref[:40]!r} not in the device registry",
                             "UnknownDevice")
    direction_text = _text(obj, "Direction")
    if direction_text is not None and direction_text not in GAT1400_DIRECTIONS:
        raise TranslateError(f"Direction {direction_text[:10]!r} not 1 (in) or 2 (out)")
    record = _empty_record()
    record.update({
        "device_id": device.device_id,
        "native_id": record_id,
        "community": _text(obj, "CommunityName"),
        "door": _text(obj, "DoorName"),
        "person_name": _text(obj, "PersonName"),
        "card_no": _text(obj, "CardNo"),
        "employee_no": _text(obj, "PersonID", "EmployeeNo"),
        "direction": GAT1400_DIRECTIONS.get(direction_text) if direction_text else None,
        "occurred_at_local": _pass_time(require(_text(obj, "PassTime"), "PassTime")),
        "event_code": _text(obj, "EventType", "EventCode"),
        "received_at": int(received_at_ms),
        "raw_format": RAW_FORMAT_GAT1400,
    })
    return record


def _gat1400_items(doc: Any) -> list[Any] | None:
    """The GA/T 1400 records of a decoded document, None if it is not GA/T 1400-shaped."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, Mapping):
        wrapper = doc.get("AccessRecordListObject")
        if isinstance(wrapper, Mapping):
            items = wrapper.get("AccessRecordObject")
            if isinstance(items, list):
                return items
            if isinstance(items, Mapping):
                return [items]
            raise TranslateError("AccessRecordListObject.AccessRecordObject must be a list", "MalformedJson")
        if "RecordID" in doc or "PassTime" in doc:
            return [doc]
    return None


def _translate_gat1400(items: list[Any], registry: DeviceRegistry, received_at_ms: int) -> TranslateResult:
    if not items:
        raise TranslateError("empty list of access records", "MissingField")
    if len(items) > MAX_RECORDS:
        raise TranslateError(f"{len(items)} access records in one request, limit {MAX_RECORDS}", "TooLarge")
    records: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        try:
            records.append(gat1400_record(item, registry, received_at_ms))
        except TranslateError as exc:
            prefix = f"record[{index}]: " if len(items) > 1 else ""
            rejected.append(Rejected(prefix + exc.reason, exc.error_type))
    return result(TOPIC, SCHEMA, records, rejected)


@never_raises(TOPIC, SCHEMA)
def translate(body: bytes | str | Mapping[str, Any] | list[Any], *, registry: DeviceRegistry, received_at_ms: int,
              content_type: str | None = None, peer_ip: str | None = None) -> TranslateResult:
    """Translate one door-access push (ISAPI or GA/T 1400) into DoorAccess records.

    `peer_ip`, when given, must be the registered IP of an ISAPI device (see isapi.translate)."""
    if isinstance(body, (Mapping, list)):
        doc: Any = body
    elif isinstance(body, str):
        doc = parse_json(body)
    else:
        doc = None
        mtype = media_type(content_type)
        head = bytes(body).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] if isinstance(body, (bytes, bytearray)) else b""
        if not mtype.startswith("multipart/") and "xml" not in mtype and head in (b"{", b"["):
            doc = parse_json(bytes(body))
    if doc is not None:
        items = _gat1400_items(doc)
        if items is not None:
            return _translate_gat1400(items, registry, received_at_ms)
        if not isinstance(doc, Mapping):
            raise TranslateError("door event must be a JSON object or list", "MalformedJson")
        inner = doc.get("EventNotificationAlert")
        alerts, pictures, rejected = [Alert(inner if isinstance(inner, Mapping) else doc, "isapi-json")], 0, []
    else:
        alerts, pictures, rejected = alerts_from_body(body, content_type)  # type: ignore[arg-type]
    records: list[dict[str, Any]] = []
    dropped = 0
    for alert in alerts:
        try:
            event_type = (_text(alert.fields, "eventType") or "").lower()
            if is_heartbeat(alert.fields) or event_type in ("heartbeat", "heartbeatinfo"):
                dropped += 1
                continue
            device = resolve_device(alert.fields, registry, peer_ip)
            if device.kind != "door":
                raise TranslateError(f"device {device.device_id} is a {device.kind}, not a door controller",
                                     "WrongSource")
            records.append(isapi_record(alert, device, received_at_ms))
        except TranslateError as exc:
            rejected.append(exc.rejected())
    return result(TOPIC, SCHEMA, records, rejected, dropped, pictures)
