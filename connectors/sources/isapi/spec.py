"""Hikvision ISAPI `EventNotificationAlert` pushes (multipart, bare XML or JSON). Devices never
re-send and ignore Retry-After; device identity and position come from the device registry."""
from __future__ import annotations

from connectors.sources import camera
from connectors.sources.common import TranslateResult
from connectors.sources.isapi.translate import translate as translate_body
from connectors.sources.spec import Payload, SourceContext, SourceSpec


def translate(payload: Payload, ctx: SourceContext) -> TranslateResult:
    """An alert push → CameraAlarm records (heartbeats dropped, pictures counted as attachments)."""
    return translate_body(payload.body, content_type=payload.content_type, registry=ctx.devices,
                          received_at_ms=payload.received_at_ms, peer_ip=payload.peer_ip)


SPEC = SourceSpec(
    feed="isapi",
    source="camera",
    title="Hikvision ISAPI camera alerts (慧眼)",
    topic=camera.TOPIC,
    required=camera.REQUIRED,
    mapper=camera.map_record,
    translate=translate,
    route="/isapi/alert",
)
