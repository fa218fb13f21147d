"""GB/T 28181 `<Notify>` alarm → CameraAlarm raw record (pure).

Contract: `translate(body, received_at_ms=...)` never raises. CmdType=Alarm → one record;
CmdType=Keepalive → dropped; anything else → rejected with a reason naming the problem.
"""
from __future__ import annotations

import re
from typing import Any, Final, Mapping

from connectors.sources.camera import SCHEMA as CAMERA_SCHEMA
from connectors.sources.camera import TOPIC as CAMERA_TOPIC
from connectors.sources.gb28181 import codes
from connectors.sources.common import (
    TranslateError,
    TranslateResult,
    check_local_datetime,
    child_text,
    local_name,
    never_raises,
    parse_coordinates,
    parse_int,
    parse_xml,
    require,
    result,
)

SOURCE_SYSTEM: Final = "gb28181"
RAW_FORMAT: Final = "gb28181-xml"

_DEVICE_ID = re.compile(r"\d{20}")
_SN = re.compile(r"\d{1,10}")


@never_raises(CAMERA_TOPIC, CAMERA_SCHEMA)
def translate(body: bytes, *, received_at_ms: int) -> TranslateResult:
    """Translate one MANSCDP+xml body (any declared encoding) into a CameraAlarm record.

    Validates DeviceID (20 digits), SN, AlarmTime, AlarmPriority 1–4, AlarmMethod 1–7."""
    if not isinstance(body, (bytes, bytearray)):
        raise TranslateError(f"body must be bytes, got {type(body).__name__}", "InvalidInput")
    root = parse_xml(bytes(body))
    root_name = local_name(root.tag)
    if root_name != "Notify":
        raise TranslateError(f"root element <{root_name}> is not <Notify>", "UnsupportedMessage")
    cmd = child_text(root, "CmdType")
    if cmd is None:
        raise TranslateError("missing CmdType", "MissingField")
    if cmd.lower() == "keepalive":
        return result(CAMERA_TOPIC, CAMERA_SCHEMA, dropped=1)
    if cmd.lower() != "alarm":
        raise TranslateError(f"CmdType {cmd!r} is not Alarm or Keepalive", "UnsupportedMessage")
    return result(CAMERA_TOPIC, CAMERA_SCHEMA, records=[alarm_record(root, received_at_ms)])


def alarm_record(root: Any, received_at_ms: int) -> dict[str, Any]:
    """The CameraAlarm record of a parsed `<Notify>` Alarm element (raises TranslateError)."""
    device_id = require(child_text(root, "DeviceID"), "DeviceID")
    if not _DEVICE_ID.fullmatch(device_id):
        raise TranslateError(f"DeviceID must be 20 digits, got {device_id[:40]!r}")
    sn = require(child_text(root, "SN"), "SN")
    if not _SN.fullmatch(sn):
        raise TranslateError(f"SN must be a non-negative integer, got {sn[:40]!r}")
    alarm_time = check_local_datetime(require(child_text(root, "AlarmTime"), "AlarmTime"), "AlarmTime")
    priority = parse_int(require(child_text(root, "AlarmPriority"), "AlarmPriority"), "AlarmPriority", 1, 4)
    method = parse_int(require(child_text(root, "AlarmMethod"), "AlarmMethod"), "AlarmMethod", 1, 7)
    assert priority is not None and method is not None
    alarm_type = parse_int(child_text(root, "Info", "AlarmType") or child_text(root, "AlarmType"),
                           "AlarmType", 0, 999)
    event = parse_int(child_text(root, "Info", "AlarmTypeParam", "EventType"), "EventType", 0, 99)
    lon, lat = parse_coordinates(child_text(root, "Longitude"), child_text(root, "Latitude"),
                                 "Longitude", "Latitude")
    return {
        "source_system": SOURCE_SYSTEM,
        "native_id": f"{device_id}:{sn}:{alarm_time}",
        "device_id": device_id,
        "channel_id": None,
        "alarm_priority": priority,
        "alarm_method": method,
        "alarm_type": alarm_type,
        "alarm_event_type": event,
        "event_type": codes.event_type(method, alarm_type),
        "event_state": None,
        "occurred_at_local": alarm_time,
        "description": child_text(root, "AlarmDescription"),
        "longitude": lon,
        "latitude": lat,
        "plate": None,
        "plate_color": None,
        "vehicle_type": None,
        "direction": None,
        "confidence": None,
        "person_name": None,
        "employee_no": None,
        "card_no": None,
        "received_at": int(received_at_ms),
        "raw_format": RAW_FORMAT,
    }
