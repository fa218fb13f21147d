"""Smart-community door access: ISAPI `AccessControllerEvent` pushes or GA/T 1400 community
records. Controllers never re-send; their identity and place come from the device registry."""
from __future__ import annotations

from connectors.sources.common import TranslateResult
from connectors.sources.door.translate import TOPIC
from connectors.sources.door.translate import translate as translate_body
from connectors.sources.spec import Payload, SourceContext, SourceSpec
from streams.domain.kinds import default
from streams.domain.normalize import Draft, Party, RecordReader

#: The word a direction code gets in the event text.
DIRECTION_TEXT = {"in": "进", "out": "出"}


def translate(payload: Payload, ctx: SourceContext) -> TranslateResult:
    """A door push (ISAPI XML/JSON/multipart or GA/T 1400 JSON) → DoorAccess records."""
    return translate_body(payload.body, registry=ctx.devices, received_at_ms=payload.received_at_ms,
                          content_type=payload.content_type, peer_ip=payload.peer_ip)


def map_record(r: RecordReader) -> Draft:
    """A DoorAccess record → Draft: a person sighting at the controller's registered place."""
    device_id = str(r.required("device_id")).strip()
    direction = DIRECTION_TEXT.get((r.text("direction") or "").lower())
    text = " ".join(p for p in ("门禁通行", r.text("community"), r.text("door"), direction) if p)
    draft = Draft(
        native_id=r.native_id(),
        occurred_at=r.time("occurred_at_local"),
        received_at=r.received_at(),
        classification=default("person_sighting"),
        text_original=text,
        device_id=device_id,
        gb_device_id=device_id if len(device_id) == 20 and device_id.isdigit() else None,
        address=r.text("community"),
    )
    if r.get("person_name"):
        draft.parties.append(Party(role="resident", name=r.text("person_name")))
    return draft


SPEC = SourceSpec(
    feed="door",
    source="door",
    title="Smart-community door access (智慧小区门禁)",
    topic=TOPIC,
    required=("native_id", "device_id", "occurred_at_local", "received_at"),
    mapper=map_record,
    translate=translate,
    route="/door/events",
    content_type="application/json",
)
