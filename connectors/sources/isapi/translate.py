"""Hikvision ISAPI `EventNotificationAlert` → CameraAlarm raw records (pure).

Contract: `translate(body, content_type=..., registry=..., received_at_ms=...)` never raises.
Accepts multipart/form-data (XML/JSON part(s) + JPEG parts, which are counted in
`attachments` and ignored), bare XML (any namespace variant or none) and bare JSON. The device is
identified through the registry (MAC, then IP, then deviceID/UUID); the record carries only the
registry's device_id and never coordinates from the body, so a payload cannot move a device.
Heartbeats (`videoloss` + `inactive` + `activePostCount` 0) are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Mapping

from connectors.sources.camera import SCHEMA as CAMERA_SCHEMA
from connectors.sources.camera import TOPIC as CAMERA_TOPIC
from connectors.sources.isapi import codes
from connectors.sources.common import (
    Part,
    Rejected,
    TranslateError,
    TranslateResult,
    check_local_datetime,
    clean_str,
    element_to_dict,
    header_param,
    local_name,
    media_type,
    never_raises,
    parse_int,
    parse_json,
    parse_multipart,
    parse_xml,
    require,
    result,
    sniff_boundary,
)
from connectors.sources.devices import DeviceInfo, DeviceRegistry, normalize_ip

SOURCE_SYSTEM: Final = "isapi"

@dataclass(frozen=True, slots=True)
class Alert:
    """A format-neutral view of one EventNotificationAlert (values still as sent)."""

    fields: Mapping[str, Any]
    raw_format: str


def _ci_get(mapping: Mapping[str, Any], *names: str) -> Any:
    """Case-insensitive lookup of the first present key among `names`."""
    lowered = {str(k).lower(): v for k, v in mapping.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _scalar(mapping: Mapping[str, Any], *names: str) -> str | None:
    value = _ci_get(mapping, *names)
    if isinstance(value, (dict, list)):
        raise TranslateError(f"{names[0]} must be a scalar, got {type(value).__name__}")
    return clean_str(value)


def _sub(mapping: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = _ci_get(mapping, name)
    if value is None or value == "":
        return {}
    if isinstance(value, list):
        value = value[0] if value and isinstance(value[0], dict) else {}
    if not isinstance(value, dict):
        raise TranslateError(f"{name} must be an object, got {type(value).__name__}")
    return value


def alerts_from_body(body: bytes, content_type: str | None) -> tuple[list[Alert], int, list[Rejected]]:
    """Extract the alert documents of a push: (alerts, ignored binary parts, rejected parts).

    Raises TranslateError when the body as a whole cannot be read."""
    if not isinstance(body, (bytes, bytearray)):
        raise TranslateError(f"body must be bytes, got {type(body).__name__}", "InvalidInput")
    body = bytes(body)
    mtype = media_type(content_type)
    stripped = body.lstrip()
    if mtype.startswith("multipart/") or (not mtype and stripped.startswith(b"--")):
        boundary = header_param(content_type, "boundary") or sniff_boundary(body)
        if boundary is None:
            raise TranslateError("multipart body without a boundary", "MalformedMultipart")
        return _alerts_from_parts(parse_multipart(body, boundary))
    return [_alert_from_document(body, mtype, single=True)], 0, []


def _alerts_from_parts(parts: list[Part]) -> tuple[list[Alert], int, list[Rejected]]:
    alerts: list[Alert] = []
    rejected: list[Rejected] = []
    pictures = 0
    for part in parts:
        if part.is_jpeg:
            pictures += 1
            continue
        ptype = media_type(part.content_type)
        name = (part.filename or part.name or "").lower()
        head = part.data.lstrip()[:1]
        if "xml" in ptype or "json" in ptype or name.endswith((".xml", ".json")) or head in (b"<", b"{"):
            try:
                alerts.append(_alert_from_document(part.data, ptype, single=False))
            except TranslateError as exc:
                rejected.append(Rejected(f"part {part.name or part.filename or '?'}: {exc.reason}", exc.error_type))
        else:
            pictures += 1  # other binary attachment (e.g. application/octet-stream picture)
    if not alerts and not rejected:
        raise TranslateError("multipart body has no XML or JSON alert part", "MalformedMultipart")
    return alerts, pictures, rejected


def _alert_from_document(data: bytes, mtype: str, *, single: bool) -> Alert:
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if "json" in mtype or (not ("xml" in mtype) and head in (b"{", b"[")):
        doc = parse_json(data)
        if isinstance(doc, dict):
            inner = _ci_get(doc, "EventNotificationAlert")
            if isinstance(inner, dict):
                doc = inner
        if not isinstance(doc, dict):
            raise TranslateError("JSON alert must be an object", "MalformedJson")
        fmt = "isapi-json" if single else "isapi-multipart"
        return Alert(doc, fmt)
    root = parse_xml(data)
    if local_name(root.tag) != "EventNotificationAlert":
        raise TranslateError(f"root element <{local_name(root.tag)}> is not <EventNotificationAlert>",
                             "UnsupportedMessage")
    fmt = "isapi-xml" if single else "isapi-multipart"
    return Alert(element_to_dict(root), fmt)


def resolve_device(fields: Mapping[str, Any], registry: DeviceRegistry, peer_ip: str | None) -> DeviceInfo:
    """Registry device named by the alert (MAC, IP, deviceID/UUID), checked against the peer IP.

    Raises TranslateError("UnknownDevice"/"DeviceMismatch")."""
    mac = _scalar(fields, "macAddress")
    ip = _scalar(fields, "ipAddress", "ipv4Address")
    uuid = _scalar(fields, "deviceID", "deviceUUID", "UUID")
    device = registry.resolve(mac=mac, ip=ip, uuid=uuid, device_id=uuid)
    if device is None:
        if mac is None and ip is None and uuid is None:
            raise TranslateError("no device identifier in the body (no macAddress, ipAddress/ipv4Address or "
                                 "deviceID/UUID): configure the device to send its identity in event notifications",
                                 "UnknownDevice")
        named = ", ".join(f"{k}={v!r}" for k, v in (("mac", mac), ("ip", ip), ("deviceID", uuid)) if v is not None)
        raise TranslateError(f"unknown device: {named} not in the device registry; add it to the registry CSV "
                             "(PINGAN_REGISTRY_PATH), then re-drive this letter", "UnknownDevice")
    if peer_ip is not None:
        peer = normalize_ip(peer_ip)
        if device.ip and peer and device.ip != peer:
            raise TranslateError(f"device identity mismatch: payload names {device.device_id} "
                                 f"(registered {device.ip}) but the request came from {peer}", "DeviceMismatch")
    return device


def is_heartbeat(fields: Mapping[str, Any]) -> bool:
    """`videoloss` + `inactive` + activePostCount 0 (the ISAPI keep-alive)."""
    event_type = (_scalar(fields, "eventType") or "").lower()
    state = (_scalar(fields, "eventState") or "").lower()
    count = _scalar(fields, "activePostCount")
    return event_type in ("videoloss", "heartbeat") and state == "inactive" and (count in (None, "0"))


def alert_record(alert: Alert, device: DeviceInfo, received_at_ms: int) -> dict[str, Any]:
    """The CameraAlarm record of one alert for a registry device (raises TranslateError)."""
    fields = alert.fields
    native_type = require(_scalar(fields, "eventType"), "eventType")
    event_type = codes.event_type(native_type)
    date_time = check_local_datetime(require(_scalar(fields, "dateTime"), "dateTime"), "dateTime")
    channel = _scalar(fields, "channelID", "dynChannelID", "channelId")
    if channel is not None and len(channel) > 32:
        raise TranslateError(f"channelID {channel[:40]!r} is too long")
    state = _scalar(fields, "eventState")
    if state is not None:
        state = state.lower()
        if state not in ("active", "inactive"):
            raise TranslateError(f"eventState {state[:20]!r} not active/inactive")
    anpr = _sub(fields, "ANPR")
    access = _sub(fields, "AccessControllerEvent")
    plate = _scalar(anpr, "licensePlate")
    return {
        "source_system": SOURCE_SYSTEM,
        "native_id": f"{device.device_id}:{channel or ''}:{date_time}:{native_type}",
        "device_id": device.device_id,
        "channel_id": channel,
        "alarm_priority": None,
        "alarm_method": None,
        "alarm_type": None,
        "alarm_event_type": None,
        "event_type": event_type,
        "event_state": state,
        "occurred_at_local": date_time,
        "description": _scalar(fields, "eventDescription"),
        "longitude": None,
        "latitude": None,
        "plate": plate,
        "plate_color": _scalar(anpr, "plateColor"),
        "vehicle_type": _scalar(anpr, "vehicleType"),
        "direction": _scalar(anpr, "direction"),
        "confidence": parse_int(_scalar(anpr, "confidenceLevel"), "confidenceLevel", 0, 100),
        "person_name": _scalar(access, "name"),
        "employee_no": _scalar(access, "employeeNoString", "employeeNo"),
        "card_no": _scalar(access, "cardNo"),
        "received_at": int(received_at_ms),
        "raw_format": alert.raw_format,
    }


@never_raises(CAMERA_TOPIC, CAMERA_SCHEMA)
def translate(body: bytes, *, content_type: str | None, registry: DeviceRegistry, received_at_ms: int,
              peer_ip: str | None = None) -> TranslateResult:
    """Translate one ISAPI push into CameraAlarm records.

    `peer_ip` (optional, the TCP peer seen by the receiver): when given, the registry device must
    be registered at that address, so a forged body cannot speak for another camera.
    Door controllers are rejected here (they belong on /door/events)."""
    alerts, pictures, rejected = alerts_from_body(body, content_type)
    records: list[dict[str, Any]] = []
    dropped = 0
    for alert in alerts:
        try:
            if is_heartbeat(alert.fields):
                dropped += 1
                continue
            device = resolve_device(alert.fields, registry, peer_ip)
            if not device.is_camera:
                raise TranslateError(f"device {device.device_id} is a {device.kind} controller, not a camera; "
                                     "send access events to /door/events", "WrongSource")
            records.append(alert_record(alert, device, received_at_ms))
        except TranslateError as exc:
            rejected.append(exc.rejected())
    return result(CAMERA_TOPIC, CAMERA_SCHEMA, records, rejected, dropped, pictures)
