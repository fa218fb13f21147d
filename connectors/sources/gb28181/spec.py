"""GB/T 28181 camera alarms: SIP MESSAGE bodies (MANSCDP+xml `<Notify>` Alarm), POSTed by a SIP
gateway to the receiver or taken by the SIP listener. Senders never re-send (no Retry-After).
An alarm whose DeviceID is not in the device registry is rejected (``UnknownDevice``: a dead
letter, re-drivable once the device is registered), never passed on as if the device were known."""
from __future__ import annotations

from dataclasses import replace

from connectors.sources import camera
from connectors.sources.common import Rejected, TranslateResult
from connectors.sources.gb28181.translate import translate as translate_body
from connectors.sources.spec import Payload, SourceContext, SourceSpec


def translate(payload: Payload, ctx: SourceContext) -> TranslateResult:
    """A MANSCDP+xml body (any declared encoding) → one CameraAlarm record of a registered device,
    dropped keepalives."""
    result = translate_body(payload.body, received_at_ms=payload.received_at_ms)
    unknown = [r for r in result.records if ctx.devices.lookup(str(r.get("device_id"))) is None]
    if not unknown:
        return result
    return replace(result, records=[r for r in result.records if r not in unknown],
                   rejected=[*result.rejected, *(
                       Rejected(f"unknown device: DeviceID {str(r.get('device_id'))[:40]!r} not in the device "
                                "registry", "UnknownDevice") for r in unknown)])


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
