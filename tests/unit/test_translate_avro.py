"""Every fixture record of every translate function matches its Avro schema exactly and round-trips
through the single-object serde; topic, schema and key agree with the topic catalogue."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.sources import registry
from connectors.sources.common import TranslateResult, key_of
from connectors.sources.devices import DeviceRegistry
from connectors.sources.spec import Payload

serde = pytest.importorskip("schemas.serde")
catalogue = pytest.importorskip("schemas.catalogue")

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def all_results() -> Iterator[tuple[str, TranslateResult]]:
    """Every fixture payload through its feed's translate function in the source registry."""
    ctx = registry.context(DeviceRegistry.from_csv(FIX / "isapi" / "devices.csv"))

    def run(feed: str, path: Path, content_type: str | None) -> TranslateResult:
        return registry.feed(feed).translate(Payload(path.read_bytes(), content_type, 1), ctx)

    for p in sorted((FIX / "gb28181").glob("*.xml")):
        yield p.name, run("gb28181", p, "Application/MANSCDP+xml")
    for sub in ("isapi", "door"):
        for name, exp in json.loads((FIX / sub / "manifest.json").read_text(encoding="utf-8")).items():
            yield name, run(sub, FIX / sub / name, exp["content_type"])
    for p in sorted((FIX / "grid").glob("*.json")):
        yield p.name, run("grid", p, "application/json")
    for p in sorted((FIX / "alarm110").glob("*.csv")):
        yield p.name, run("alarm110", p, "text/csv")
    ctypes = {".csv": "text/csv", ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
              ".json": "application/json"}
    for p in sorted((FIX / "mediation").iterdir()):
        yield p.name, run("mediation", p, ctypes[p.suffix])


RESULTS = list(all_results())


@pytest.mark.parametrize(("name", "res"), RESULTS, ids=[n for n, _ in RESULTS])
def test_records_match_avro_and_catalogue(name: str, res: TranslateResult) -> None:
    topic = catalogue.topic(res.topic)
    assert topic.value_schema == res.schema and registry.for_topic(res.topic) is not None
    for rec in res.records:
        avsc = json.loads((SCHEMAS / (res.schema.rsplit(".", 1)[1] + ".avsc")).read_text(encoding="utf-8"))
        assert set(rec) == {f["name"] for f in avsc["fields"]}
        schema_name, back = serde.decode(serde.encode(res.schema, rec))
        assert schema_name == res.schema and back == rec
        assert topic.key_bytes(rec) == key_of(rec, res.topic).encode("utf-8")


def test_fixtures_produce_records_on_every_topic() -> None:
    assert {r.topic for _, r in RESULTS if r.records} == set(registry.raw_topics())
