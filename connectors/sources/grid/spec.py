"""Grid-worker reports (网格员上报): the grid app's JSON webhook; the app retries (Retry-After)."""
from __future__ import annotations

import re
from typing import Final

from connectors.sources.common import TranslateResult
from connectors.sources.grid import codes
from connectors.sources.grid.translate import FEED, TOPIC
from connectors.sources.grid.translate import translate as translate_body
from connectors.sources.spec import Payload, SourceContext, SourceSpec
from streams.domain import admin
from streams.domain.normalize import Draft, RecordReader
from streams.domain.text import clean_text

ACCURACY_GRID_APP_M: Final = 30.0  # the app's GPS fix
DEFAULT_COORD_SYSTEM: Final = "GCJ02"  # records always carry coord_system (translate: the profile's default)


def translate(payload: Payload, ctx: SourceContext) -> TranslateResult:
    """One report object or a list of them → GridReport records (keys, category table and default
    coordinate system from the deployment's grid profile)."""
    return translate_body(payload.body, received_at_ms=payload.received_at_ms, profile=ctx.profile(FEED))


def map_record(r: RecordReader) -> Draft:
    """A GridReport record → Draft (grid code → admin code; coordinates GCJ-02 unless it says)."""
    report_id = r.native_id("report_id")
    description = r.present("description")
    draft = Draft(
        native_id=report_id,
        occurred_at=r.time("reported_at_local"),
        received_at=r.received_at(),
        classification=codes.kind(r.text("category_code"), clean_text(r.text("category_name")),
                                  clean_text(description)),
        text_original=description,
        address=r.text("address"),
    )
    draft.set_point(r.coords(r.text("coord_system") or DEFAULT_COORD_SYSTEM), ACCURACY_GRID_APP_M)
    grid_code = re.match(r"\d+", r.text("grid_code") or "")
    if grid_code and (code := admin.clean(grid_code.group(0))):
        draft.admin_codes.append(code)
    draft.parties.extend(r.parties("persons", default_role="party"))
    draft.resolution = codes.settled(r.text("status"))
    return draft


SPEC = SourceSpec(
    feed="grid",
    source="grid",
    title="Grid-worker reports (网格员上报)",
    topic=TOPIC,
    required=("report_id", "description", "reported_at_local", "received_at"),
    mapper=map_record,
    translate=translate,
    route="/grid/reports",
    content_type="application/json",
    sender_retries=True,
)
