"""110 alarm desk (接处警): call sheets (JJD rows) polled from the desk's database, or its CSV/XLSX
export. Rows are mappings keyed by the desk's column names (JJDBH, BJSJ, BJNR … or the aliases of the
deployment's profile, ``[aliases]`` in ``alarm110.toml``)."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from connectors.sources.alarm110 import codes
from connectors.sources.alarm110.translate import (
    FEED,
    RAW_FORMAT_CSV,
    RAW_FORMAT_DB,
    RAW_FORMAT_XLSX,
    SCHEMA,
    TOPIC,
    read_export,
    translate_export,
)
from connectors.sources.alarm110.translate import translate_rows as translate_row_batch
from connectors.sources.common import TranslateResult, never_raises, parse_json
from connectors.sources.spec import Payload, SourceContext, SourceSpec
from streams.domain.normalize import Draft, Party, RecordReader
from streams.domain.text import clean_text

#: Location accuracy by `location_source` (auto: the carrier's cell fix; manual: the operator's pin).
ACCURACY_M: Final[Mapping[str, float]] = {"manual": 50.0, "auto": 500.0}
ACCURACY_DEFAULT_M: Final = 200.0


def translate_rows(rows: Sequence[Mapping[str, Any]], received_at_ms: int, raw_format: str,
                   ctx: SourceContext) -> TranslateResult:
    """A batch of JJD rows → Alarm110 records (read with the deployment's profile); each bad row is
    one rejection naming its JJDBH; columns no alias names are reported in ``unmapped``."""
    return translate_row_batch(rows, received_at_ms=received_at_ms, raw_format=raw_format,
                               profile=ctx.profile(FEED))


@never_raises(TOPIC, SCHEMA)
def translate(payload: Payload, ctx: SourceContext) -> TranslateResult:
    """A CSV or XLSX export (by content type), or a JSON row or list of rows (the poller's form)."""
    ctype = (payload.content_type or "").lower()
    if "sheet" in ctype or "xlsx" in ctype or "excel" in ctype:
        return translate_export(payload.body, "export.xlsx", received_at_ms=payload.received_at_ms,
                                profile=ctx.profile(FEED))
    if "csv" in ctype:
        return translate_export(payload.body, "export.csv", received_at_ms=payload.received_at_ms,
                                profile=ctx.profile(FEED))
    doc = parse_json(payload.body)
    rows = doc if isinstance(doc, list) else [doc]
    return translate_rows(rows, payload.received_at_ms, RAW_FORMAT_DB, ctx)


def read_table(data: bytes, name: str) -> list[dict[str, Any]]:
    """Rows of a CSV (UTF-8, UTF-8-BOM or GBK) or XLSX export, by file name. The header is not
    checked here (the deployment's aliases are not known yet): `translate_rows` with the profile
    rejects each row that has no call-sheet number."""
    return read_export(data, name, check=False)


def map_record(r: RecordReader) -> Draft:
    """An Alarm110 record → Draft (caller as a party, GLJJDBH as related call sheets)."""
    jjdbh = r.native_id("jjdbh")
    content = r.present("content")
    draft = Draft(
        native_id=jjdbh,
        occurred_at=r.time("bjsj_local"),
        received_at=r.received_at(),
        classification=codes.kind(r.text("bjlb"), r.text("bjlx"), r.text("bjxl"), clean_text(content),
                                  r.integer("jqjb")),
        text_original=content,
        address=r.text("address"),
    )
    draft.set_point(r.coords(r.text("coord_system") or "WGS84"),
                    ACCURACY_M.get(r.text("location_source") or "", ACCURACY_DEFAULT_M))
    if code := r.admin_code("xzqhbh"):
        draft.admin_codes.append(code)
    phones = [p for p in (r.text("caller_phone"), r.text("contact_phone")) if p]
    if r.get("caller_name") or r.get("caller_id_number") or phones:
        draft.parties.append(Party(role="caller", name=r.text("caller_name"),
                                   id_number=r.text("caller_id_number"), phones=phones))
    for rel in re.split(r"[\s,;，；、]+", r.text("gljjdbh") or ""):
        rid = f"alarm110:{rel}"
        if rel and rel != jjdbh and rid not in draft.related_ids:
            draft.related_ids.append(rid)
    return draft


SPEC = SourceSpec(
    feed="alarm110",
    source="alarm110",
    title="110 alarm desk call sheets (接处警)",
    topic=TOPIC,
    required=("jjdbh", "content", "bjsj_local", "received_at"),
    mapper=map_record,
    translate=translate,
    content_type="application/json",
    translate_rows=translate_rows,
    read_table=read_table,
)

__all__ = ["SPEC", "RAW_FORMAT_CSV", "RAW_FORMAT_DB", "RAW_FORMAT_XLSX"]
