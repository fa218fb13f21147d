"""GB/T 28181 camera alarms: SIP MESSAGE bodies (MANSCDP+xml `<Notify>` Alarm), POSTed by a SIP
gateway to the receiver or taken by the SIP listener. Senders never re-send (no Retry-After)."""
from __future__ import annotations

from connectors.sources import camera
from connectors.sources.common import TranslateResult
from connectors.sources.gb28181.translate import translate as translate_body
from connectors.sources.spec import Payload, SourceContext, SourceSpec


def translate(payload: Payload, ctx: SourceContext) -> TranslateResult:
    """A MANSCDP+xml body (any declared encoding) → one CameraAlarm record, dropped keepalives."""
    return translate_body(payload.body, received_at_ms=payload.received_at_ms)


SPEC = SourceSpec(
    feed="gb28181",
    source="camera",
    title="GB/T 28181 camera alarms (天网/雪亮 platforms)",
    topic=camera.TOPIC,
    required=camera.REQUIRED,
    mapper=camera.map_record,
    translate=translate,
    route="/gb28181/alarm",
    content_type="Application/MANSCDP+xml",
)
