"""The source registry: one spec per feed, consistent with the catalogue, the receiver and normalize."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.ingest.receiver import RETRYING_SOURCES, ROUTES
from connectors.sources import registry
from connectors.sources.devices import DeviceRegistry
from connectors.sources.spec import Payload, SourceSpec
from schemas.catalogue import topic as catalogue_topic
from streams.domain.normalize import NormalizeError
from streams.worker.stages import RAW_SOURCES, SCHEMA_SOURCES

FIX = Path(__file__).resolve().parents[1] / "fixtures"
# the ISAPI fixtures' devices and the GB/T 28181 sample's camera (unknown devices are dead-lettered)
DEVICES = DeviceRegistry([*DeviceRegistry.from_csv(FIX / "isapi" / "devices.csv"), *DeviceRegistry.from_rows([{
    "device_id": "51322110201310000456", "kind": "camera_tianwang", "lat": "31.05", "lon": "103.49",
    "admin_code": "513221102"}])])

# one good fixture payload per feed: (file, content type)
SAMPLES: dict[str, tuple[str, str]] = {
    "gb28181": ("gb28181/alarm_video_tripwire_utf8.xml", "Application/MANSCDP+xml"),
    "isapi": ("isapi/anpr.json", "application/json"),
    "grid": ("grid/report_gcj02.json", "application/json"),
    "alarm110": ("alarm110/jjd_export_utf8.csv", "text/csv"),
    "mediation": ("mediation/case_rest.json", "application/json"),
    "door": ("door/isapi_access_checkin.json", "application/json"),
}


def sample_record(spec: SourceSpec) -> dict[str, Any]:
    name, ctype = SAMPLES[spec.feed]
    result = spec.translate(Payload((FIX / name).read_bytes(), ctype, 1_784_017_000_000), registry.context(DEVICES))
    assert result.records, result.rejected
    return dict(result.records[0])


def test_every_feed_has_one_spec_and_a_sample() -> None:
    feeds = [s.feed for s in registry.SOURCES]
    assert len(feeds) == len(set(feeds)) and set(feeds) == set(SAMPLES)
    with pytest.raises(KeyError, match="unknown feed"):
        registry.feed("fax")


@pytest.mark.parametrize("spec", registry.SOURCES, ids=lambda s: s.feed)
def test_spec_agrees_with_catalogue(spec: SourceSpec) -> None:
    entry = catalogue_topic(spec.topic)
    assert spec.topic.startswith("raw.") and entry.value_schema == spec.schema and entry.key == spec.key_field
    record = sample_record(spec)
    assert record[spec.key_field] and entry.key_bytes(record)
    assert spec.route is not None or spec.translate_rows is not None, "a feed must be reachable"


def test_receiver_and_stages_read_the_registry() -> None:
    assert ROUTES == {s.feed: s.route for s in registry.SOURCES if s.route}
    assert len(set(ROUTES.values())) == len(ROUTES)
    assert RETRYING_SOURCES == {s.feed for s in registry.SOURCES if s.sender_retries} == {"grid", "mediation"}
    assert set(RAW_SOURCES) == set(registry.raw_topics())
    assert set(SCHEMA_SOURCES.values()) == set(registry.canonical_sources()) == set(registry.mappers())


@pytest.mark.parametrize("spec", registry.SOURCES, ids=lambda s: s.feed)
def test_required_fields_are_what_normalize_requires(spec: SourceSpec) -> None:
    norm = registry.normalizer(b"k", "Asia/Shanghai", DEVICES)
    record = sample_record(spec)
    event = norm.normalize(spec.source, record)
    assert event["source"] == spec.source
    for name in spec.required:
        broken = {**record, name: None}
        if name in ("report_id", "jjdbh", "case_no"):  # the natural id stands in for native_id
            broken["native_id"] = None
        with pytest.raises(NormalizeError, match=name):
            norm.normalize(spec.source, broken)


def test_normalize_rejects_unregistered_source() -> None:
    norm = registry.normalizer(b"k", "Asia/Shanghai")
    with pytest.raises(NormalizeError, match="unknown source"):
        norm.normalize("fax", {"x": 1})


def test_redrive_translates_through_the_registry() -> None:
    from streams.ops.dlq import translate_payload

    row = json.dumps({"JJDBH": "J1", "BJSJ": "2026-07-14 10:00:00", "BJNR": "邻居吵架", "XZQHBH": "513221"})
    result = translate_payload("alarm110", row.encode(), "application/json", None, 1)
    assert [r["jjdbh"] for r in result.records] == ["J1"]
    with pytest.raises(ValueError, match="no translate function"):
        translate_payload("fax", b"", None, None, 1)
