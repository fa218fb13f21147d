"""Hikvision ISAPI code tables: eventType → canonical camera event_type.

Contract: `event_type(native)` (case-insensitive; unknown → ``other``) is the one mapping both
translate (ISAPI alert → CameraAlarm) and normalize (a non-canonical event_type of an isapi
record) use. Names vary by firmware (``VMD``/``motionDetection``, ``faceCapture``/``faceSnap``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Final

EVENT_TYPES: Final[Mapping[str, str]] = {
    "vmd": "vmd",
    "motiondetection": "vmd",
    "linedetection": "tripwire",
    "fielddetection": "intrusion",
    "regionentrance": "intrusion",
    "regionexiting": "intrusion",
    "facecapture": "face",
    "facesnap": "face",
    "facedetection": "face",
    "anpr": "anpr",
    "vehicledetection": "anpr",
    "accesscontrollerevent": "access",
    "videoloss": "video_loss",
    "shelteralarm": "tamper",
    "tamperdetection": "tamper",
    "hdderror": "device_fault",
    "hddfull": "device_fault",
    "diskfull": "device_fault",
    "loitering": "loitering",
    "unattendedbaggage": "left_object",
    "attendedbaggage": "object_removed",
    "peoplegathering": "density",
    "crowddetection": "density",
    "fastmoving": "fast_movement",
    "scenechangedetection": "video_anomaly",
    "defocus": "video_anomaly",
}


def event_type(native: str | None) -> str:
    """Canonical camera event_type of an ISAPI eventType (case-insensitive; unknown → ``other``)."""
    return EVENT_TYPES.get((native or "").strip().lower(), "other")
