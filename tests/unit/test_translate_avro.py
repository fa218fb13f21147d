"""Every fixture record of every translate function matches its Avro schema exactly and round-trips
through the single-object serde; topic, schema and key agree with the topic catalogue."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.sources import alarm110, door, gb28181, grid, isapi, mediation
from connectors.sources.common import TOPIC_KEYS, TranslateResult, key_of
from connectors.sources.devices import DeviceRegistry

serde = pytest.importorskip("schemas.serde")
catalogue = pytest.importorskip("schemas.catalogue")

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def all_results() -> Iterator[tuple[str, TranslateResult]]:
    reg = DeviceRegistry.from_csv(FIX / "isapi" / "devices.csv")
    for p in sorted((FIX / "gb28181").glob("*.xml")):
        yield p.name, gb28181.translate(p.read_bytes(), received_at_ms=1)
    for sub, fn in (("isapi", isapi.translate), ("door", door.translate)):
        for name, exp in json.loads((FIX / sub / "manifest.json").read_text(encoding="utf-8")).items():
            yield name, fn((FIX / sub / name).read_bytes(), content_type=exp["content_type"], registry=reg, received_at_ms=1)
    for p in sorted((FIX / "grid").glob("*.json")):
        yield p.name, grid.translate(p.read_bytes(), received_at_ms=1)
    for p in sorted((FIX / "alarm110").glob("*.csv")):
        yield p.name, alarm110.translate_csv(p.read_bytes(), received_at_ms=1)
    readers = {".csv": mediation.translate_csv, ".xlsx": mediation.translate_xlsx, ".json": mediation.translate_json}
    for p in sorted((FIX / "mediation").iterdir()):
        yield p.name, readers[p.suffix](p.read_bytes(), received_at_ms=1)


RESULTS = list(all_results())


@pytest.mark.parametrize(("name", "res"), RESULTS, ids=[n for n, _ in RESULTS])
def test_records_match_avro_and_catalogue(name: str, res: TranslateResult) -> None:
    topic = catalogue.topic(res.topic)
    assert topic.value_schema == res.schema and topic.key == TOPIC_KEYS[res.topic]
    for rec in res.records:
        avsc = json.loads((SCHEMAS / (res.schema.rsplit(".", 1)[1] + ".avsc")).read_text(encoding="utf-8"))
        assert set(rec) == {f["name"] for f in avsc["fields"]}
        schema_name, back = serde.decode(serde.encode(res.schema, rec))
        assert schema_name == res.schema and back == rec
        assert topic.key_bytes(rec) == key_of(rec, res.topic).encode("utf-8")


def test_fixtures_produce_records_on_every_topic() -> None:
    assert {r.topic for _, r in RESULTS if r.records} == set(TOPIC_KEYS)
