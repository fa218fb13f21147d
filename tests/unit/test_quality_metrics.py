"""Unmapped fields and quality notes are counted while running, never silent:
the receiver's ``pingan_receiver_unmapped_fields_total`` / ``pingan_receiver_quality_flags_total``
and the worker's ``pingan_events_quality_notes_total`` (normalize stage outcome)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from connectors.ingest.producer import RecordProducer
from connectors.ingest.receiver import MAX_FIELD_LABELS, OTHER_FIELD_LABEL, IngestGateway, ReceiverMetrics
from connectors.ingest.spool import Spool
from connectors.sources import registry as source_registry
from connectors.sources.common import quality_flag, result, with_unmapped
from connectors.sources.spec import Payload
from schemas.serde import default_store
from streams.settings import DEFAULT_TIMEZONE, Settings
from streams.worker.observability import observe_quality
from streams.worker.stages import NormalizeStage

GRID = source_registry.feed("grid")


def _grid_record(report_id: str, flags: list[dict[str, Any]]) -> dict[str, Any]:
    return {"native_id": report_id, "received_at": 1_784_000_000_000, "raw_format": "grid-json",
            "report_id": report_id, "grid_code": "513221107201-03", "reporter_id": "WGY-1",
            "category_code": "0401", "category_name": "山洪泥石流", "description": "沟水上涨",
            "address": "三江镇柒山村", "longitude": 103.342, "latitude": 31.108, "coord_system": "WGS84",
            "persons": [], "reported_at_local": "2026-07-14 10:00:00", "status": None, "quality": flags}


def _grid_result(unmapped: dict[str, int] | None = None):  # noqa: ANN202
    flags = [quality_flag("location.lng", "lng 'abc' is not a number", "abc")]
    res = result(GRID.topic, GRID.schema, [_grid_record("WG1", list(flags)), _grid_record("WG2", list(flags)),
                                           _grid_record("WG3", [])])
    return with_unmapped(res, unmapped or {})


class _Producer(RecordProducer):
    """Encodes like the real producer; `send_batch` only records (no Kafka)."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1:1")
        self.sent: list[Any] = []

    async def send_batch(self, items, *, timeout=None):  # noqa: ANN001, ANN201
        self.sent.extend(items)
        return []

    async def stop(self) -> None:
        return None


def test_receiver_counts_unmapped_fields_and_quality_flags_per_source_and_field(tmp_path: Path) -> None:
    res = _grid_result({"extraField": 3, "农户编号": 1})

    async def go() -> IngestGateway:
        gw = IngestGateway(Settings(run_dir=tmp_path), producer=_Producer(), spool=Spool(tmp_path / "spool"),
                           translators={"grid": lambda p: res})
        await gw.setup()
        outcome = await gw.ingest("grid", b"{}", content_type="application/json")
        assert outcome.status == 202 and outcome.accepted == 3
        await gw.close()
        return gw

    m = asyncio.run(go()).metrics
    assert m.value("unmapped_fields", "grid", field="extraField") == 3
    assert m.value("unmapped_fields", "grid", field="农户编号") == 1
    assert m.value("quality_flags", "grid", field="location.lng") == 2
    text = m.exposition().decode()
    assert 'pingan_receiver_unmapped_fields_total{field="extraField",source="grid"} 3.0' in text
    assert 'pingan_receiver_quality_flags_total{field="location.lng",source="grid"} 2.0' in text


def test_receiver_counts_an_unknown_column_through_the_real_translate(tmp_path: Path) -> None:
    """Whatever a feed's translate reports in `unmapped` is what the metric counts."""
    ctx = source_registry.context()
    body = b'{"reportId": "WG9", "gridCode": "513221107201-03", "reporterId": "W1", "category": "0401", ' \
           b'"description": "x", "reportTime": "2026-07-14 10:00:00", "farmerNo": "N-1"}'
    res = GRID.translate(Payload(body, "application/json", 1_784_000_000_000), ctx)
    m = ReceiverMetrics()
    m.observe_translation("grid", res)
    for name, count in res.unmapped.items():
        assert m.value("unmapped_fields", "grid", field=name) == count


def test_receiver_field_labels_are_bounded() -> None:
    m = ReceiverMetrics()
    m.observe_translation("grid", _grid_result({f"col{i}": 1 for i in range(MAX_FIELD_LABELS + 5)}))
    assert m.value("unmapped_fields", "grid", field=OTHER_FIELD_LABEL) >= 5
    assert m.value("unmapped_fields", "grid", field="x" * 100) == 0  # long names are cut, never kept whole


def test_normalize_outcome_carries_the_events_quality_notes_and_the_worker_counts_them(tmp_path: Path) -> None:
    from streams.worker.app import build_app

    store = default_store()
    stage = NormalizeStage(store, source_registry.normalizer(b"s", DEFAULT_TIMEZONE))
    flags = [quality_flag("location.lng", "lng 'abc' is not a number", "abc"),
             quality_flag("status", "status 'x' is not a known status", "x")]
    out = stage.handle("raw.grid.v1", 0, 7, store.encode(GRID.schema, _grid_record("WG1", flags)))
    assert out.quality_notes() == [("grid", "location.lng"), ("grid", "status")]
    assert all(n["value"] is None for n in out.events[0]["quality"])  # values never reach the event
    clean = stage.handle("raw.grid.v1", 0, 8, store.encode(GRID.schema, _grid_record("WG2", [])))
    assert clean.quality_notes() == []

    app = build_app(Settings(run_dir=tmp_path, app_id="quality-notes"), with_index=False, table_store="memory://")
    observe_quality(app, out.quality_notes())
    observe_quality(app, out.quality_notes())
    observe_quality(app, clean.quality_notes())
    got = app.pingan_registry.get_sample_value
    assert got("pingan_events_quality_notes_total", {"source": "grid", "field": "location.lng"}) == 2
    assert got("pingan_events_quality_notes_total", {"source": "grid", "field": "status"}) == 2
    assert "pingan_events_quality_notes_total" in generate_latest(app.pingan_registry).decode()
    observe_quality(object(), out.quality_notes())  # an app without observability: a no-op


# --------------------------------------------------------------------------- the page's data-quality notes
def test_quality_notes_travel_from_event_to_summary_to_document_to_the_detail_view() -> None:
    from connectors.elasticsearch.documents import incident_document
    from connectors.elasticsearch.templates import incident_mappings
    from schemas.examples import example
    from streams.domain.incidents import event_summary
    from streams.web.server import present_detail

    store = default_store()
    stage = NormalizeStage(store, source_registry.normalizer(b"s", DEFAULT_TIMEZONE))
    flags = [quality_flag("身份证号", "身份证号 '513221196805120312' has a bad check digit", "513221196805120312")]
    noted = stage.handle("raw.grid.v1", 0, 1, store.encode(GRID.schema, _grid_record("WG1", flags))).events[0]
    clean = stage.handle("raw.grid.v1", 0, 2, store.encode(GRID.schema, _grid_record("WG2", []))).events[0]

    summary = event_summary(noted)
    assert summary["quality"] == [{"field": "身份证号", "reason": noted["quality"][0]["reason"], "value": None}]
    assert event_summary(clean)["quality"] == []
    incident = dict(example("pingan.Incident"), events=[summary, event_summary(clean)])
    store.encode("pingan.Incident", incident)  # the summary's quality fits the contract

    _id, doc = incident_document(incident)
    by_id = {e["event_id"]: e for e in doc["events"]}
    notes = by_id[noted["event_id"]]["quality"]
    assert notes == [{"field": "身份证号", "reason": "身份证号 '…' has a bad check digit"}]  # value masked
    assert "quality" not in by_id[clean["event_id"]]  # documents without notes stay as they were
    mapped = incident_mappings()["properties"]["events"]["properties"]
    assert set(notes[0]) <= set(mapped["quality"]["properties"])  # the strict mapping takes them

    shown = present_detail(dict(doc, hidden_events=0), doc["county_code"])
    got = {e["event_id"]: e["quality"] for e in shown["events"]}
    assert got[noted["event_id"]] == notes and got[clean["event_id"]] == []
    assert "513221196805120312" not in repr(shown)


def test_older_event_summaries_without_quality_still_index() -> None:
    from connectors.elasticsearch.documents import incident_document
    from schemas.examples import example

    summary = {k: v for k, v in example("pingan.EventSummary").items() if k != "quality"}
    _id, doc = incident_document(dict(example("pingan.Incident"), events=[summary]))
    assert "quality" not in doc["events"][0]
