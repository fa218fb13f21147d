"""GB/T 28181 code tables: AlarmMethod and (AlarmMethod, AlarmType) → canonical camera event_type.

Contract: `event_type(method, alarm_type)` is the one mapping both translate (native XML →
CameraAlarm) and normalize (a non-canonical event_type of a gb28181 record) use. Unknown types
fall back per method; an unknown or missing method is ``other``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: AlarmMethod → (name, event_type when the method has no AlarmType table or the type is unknown).
ALARM_METHODS: Final[Mapping[int, tuple[str, str]]] = {
    1: ("phone", "phone_alarm"),
    2: ("device", "device_fault"),
    3: ("sms", "sms_alarm"),
    4: ("gps", "gps_alarm"),
    5: ("video", "other"),
    6: ("fault", "device_fault"),
    7: ("other", "other"),
}

#: (AlarmMethod, AlarmType) → canonical camera event_type (contracts.md CameraAlarm.event_type).
ALARM_TYPES: Final[Mapping[tuple[int, int], str]] = {
    # 5 video analytics
    (5, 1): "manual",
    (5, 2): "moving_object",
    (5, 3): "left_object",
    (5, 4): "object_removed",
    (5, 5): "tripwire",
    (5, 6): "intrusion",
    (5, 7): "wrong_way",
    (5, 8): "loitering",
    (5, 9): "flow_count",
    (5, 10): "density",
    (5, 11): "video_anomaly",
    (5, 12): "fast_movement",
    # 2 device alarms
    (2, 1): "video_loss",
    (2, 2): "tamper",
    (2, 3): "device_fault",  # storage fault
    (2, 4): "device_fault",  # over-temperature
    (2, 5): "device_fault",  # fan fault
    # 6 fault alarms
    (6, 1): "device_fault",  # storage full
    (6, 2): "device_fault",  # disk fault
}


def event_type(method: int | None, alarm_type: int | None) -> str:
    """Canonical event_type of an AlarmMethod/AlarmType pair (unknown types fall back per method)."""
    if method is None or method not in ALARM_METHODS:
        return "other"
    if alarm_type is not None and (method, alarm_type) in ALARM_TYPES:
        return ALARM_TYPES[(method, alarm_type)]
    return ALARM_METHODS[method][1]
