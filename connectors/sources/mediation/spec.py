"""People's mediation (人民调解, 无忧法治苑): the case system's REST JSON and its CSV/XLSX exports
(one row per party, grouped by 案件编号). The REST sender retries (Retry-After)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.sources.common import TranslateResult, never_raises, parse_json
from connectors.sources.mediation import codes
from connectors.sources.mediation.translate import (
    FEED,
    SCHEMA,
    TOPIC,
    is_export_rows,
    read_csv,
    read_xlsx,
    translate_csv,
    translate_json,
    translate_xlsx,
)
from connectors.sources.mediation.translate import translate_rows as translate_row_batch
from connectors.sources.spec import Payload, SourceContext, SourceSpec
from streams.domain.normalize import Draft, RecordReader
from streams.domain.text import clean_text


def translate_rows(rows: Sequence[Mapping[str, Any]], received_at_ms: int, raw_format: str,
                   ctx: SourceContext) -> TranslateResult:
    """Export rows (one per party) → MediationCase records, grouped by 案件编号 (columns from the
    deployment's mediation profile)."""
    return translate_row_batch(rows, received_at_ms=received_at_ms, raw_format=raw_format,
                               profile=ctx.profile(FEED))


@never_raises(TOPIC, SCHEMA)
def translate(payload: Payload, ctx: SourceContext) -> TranslateResult:
    """CSV or XLSX exports by content type; JSON: export rows (keyed by 案件编号) or REST cases."""
    ctype = (payload.content_type or "").lower()
    profile = ctx.profile(FEED)
    if "csv" in ctype:
        return translate_csv(payload.body, received_at_ms=payload.received_at_ms, profile=profile)
    if "sheet" in ctype or "xlsx" in ctype or "excel" in ctype:
        return translate_xlsx(payload.body, received_at_ms=payload.received_at_ms, profile=profile)
    doc = parse_json(payload.body)
    if is_export_rows(doc, profile):
        return translate_row_batch(doc, received_at_ms=payload.received_at_ms, profile=profile)
    return translate_json(doc, received_at_ms=payload.received_at_ms, profile=profile)


def read_table(data: bytes, name: str) -> list[dict[str, Any]]:
    """Rows of an export: XLSX by file name, else CSV (encoding auto-detected; the header row is
    found with the built-in aliases, translate_rows maps columns with the deployment's)."""
    return read_xlsx(data) if name.lower().endswith(".xlsx") else read_csv(data)


def map_record(r: RecordReader) -> Draft:
    """A MediationCase record → Draft (parties keyed; no coordinates, the address places it)."""
    case_no = r.native_id("case_no")
    dispute_type = str(r.required("dispute_type"))
    summary = r.text("summary")
    draft = Draft(
        native_id=case_no,
        occurred_at=r.time("accepted_date_local"),
        received_at=r.received_at(),
        classification=codes.kind(clean_text(dispute_type), clean_text(summary)),
        text_original=summary or dispute_type,
        address=r.text("address"),
    )
    if code := r.admin_code("admin_code"):
        draft.admin_codes.append(code)
    draft.parties.extend(r.parties("parties", default_role="party"))
    if r.text("outcome") == "agreement":  # 调解成功 (the translator maps the wording, see profile.toml)
        draft.resolution = "调解成功"
    return draft


SPEC = SourceSpec(
    feed="mediation",
    source="mediation",
    title="People's mediation cases (人民调解)",
    topic=TOPIC,
    required=("case_no", "dispute_type", "accepted_date_local", "received_at"),
    mapper=map_record,
    translate=translate,
    route="/mediation/cases",
    content_type="application/json",
    sender_retries=True,
    translate_rows=translate_rows,
    read_table=read_table,
)
