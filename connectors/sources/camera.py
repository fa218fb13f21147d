"""The CameraAlarm raw record, shared by the two camera feeds (gb28181, isapi).

Contract: `TOPIC`/`SCHEMA` name the raw camera topic and record; `EVENT_TYPES` is the canonical
camera `event_type` vocabulary each camera feed maps its native codes to (in its own `codes.py`);
`KIND` maps an event_type to a kind and severity (GB AlarmPriority 1 … 4 gives severity 5 − it);
`map_record` is the normalize step of a CameraAlarm record. A record whose event_type is not
canonical (an older or foreign producer) is mapped again through the camera feeds' native tables
(ISAPI's eventType table, then GB/T 28181's AlarmMethod/AlarmType table).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from connectors.sources.gb28181 import codes as gb_codes
from connectors.sources.isapi import codes as isapi_codes
from streams.domain.kinds import Classification, with_level
from streams.domain.normalize import Draft, Party, RecordReader

TOPIC: Final = "raw.camera.v1"
SCHEMA: Final = "pingan.raw.CameraAlarm"
ACCURACY_DEVICE_GPS_M: Final = 50.0  # a position the device sent itself

KIND: Final[Mapping[str, Classification]] = {
    "manual": Classification("help", 3),
    "moving_object": Classification("intrusion", 1),
    "vmd": Classification("intrusion", 1),
    "left_object": Classification("public_order", 2),
    "object_removed": Classification("theft", 2),
    "tripwire": Classification("intrusion", 3),
    "intrusion": Classification("intrusion", 3),
    "wrong_way": Classification("traffic", 2),
    "loitering": Classification("intrusion", 2),
    "flow_count": Classification("mass_gathering", 1),
    "density": Classification("mass_gathering", 3),
    "video_anomaly": Classification("device", 1),
    "fast_movement": Classification("public_order", 2),
    "video_loss": Classification("device", 1),
    "tamper": Classification("device", 2),
    "device_fault": Classification("device", 1),
    "phone_alarm": Classification("help", 3),
    "sms_alarm": Classification("help", 3),
    "gps_alarm": Classification("other", 2),
    "other": Classification("other", 1),
    "face": Classification("person_sighting", 1),
    "anpr": Classification("vehicle_sighting", 1),
    "access": Classification("person_sighting", 1),
}
EVENT_TYPES: Final[tuple[str, ...]] = tuple(KIND)

def camera_kind(event_type: str | None, alarm_priority: int | None = None) -> Classification:
    """Kind/severity of a camera event from its canonical event_type (and GB AlarmPriority)."""
    c = KIND.get((event_type or "").strip().lower(), KIND["other"])
    return with_level(c, alarm_priority)


def canonical_event_type(r: RecordReader, event_type: str) -> str:
    """`event_type` if canonical, else the native code mapped by ISAPI's table, else GB/T 28181's
    (AlarmMethod/AlarmType of the record)."""
    if event_type in KIND:
        return event_type
    mapped = isapi_codes.event_type(event_type)
    return mapped if mapped != "other" else gb_codes.event_type(r.integer("alarm_method"), r.integer("alarm_type"))


def map_record(r: RecordReader) -> Draft:
    """A CameraAlarm record → Draft (the registry position of `device_id` wins over the payload's)."""
    device_id = str(r.required("device_id")).strip()
    event_type = canonical_event_type(r, str(r.required("event_type")).strip().lower())
    draft = Draft(
        native_id=r.native_id(),
        occurred_at=r.time("occurred_at_local"),
        received_at=r.received_at(),
        classification=camera_kind(event_type, r.integer("alarm_priority")),
        text_original=str(r.get("description") or ""),
        device_id=device_id,
        gb_device_id=device_id if len(device_id) == 20 and device_id.isdigit() else None,
    )
    draft.set_point(r.coords("WGS84"), ACCURACY_DEVICE_GPS_M)
    if r.get("person_name") or r.get("employee_no"):
        draft.parties.append(Party(role="subject", name=r.text("person_name")))
    plate = r.text("plate")
    if plate:
        draft.plates.append(plate)
    return draft


#: Fields a CameraAlarm record cannot be normalized without.
REQUIRED: Final = ("native_id", "device_id", "event_type", "occurred_at_local", "received_at")
