"""Every schema parses, is self-consistent across fastavro and the avro package, and round-trips."""
from __future__ import annotations

import json

import avro.schema
import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form

from schemas.examples import EXAMPLE_NAMES, example
from schemas.loader import SCHEMA_DIR, SchemaLoadError, expand, load_dir, references
from schemas.serde import SchemaStore, crc64_avro

EXPECTED = {
    "pingan.raw.Party", "pingan.raw.CameraAlarm", "pingan.raw.GridReport", "pingan.raw.Alarm110",
    "pingan.raw.MediationCase", "pingan.raw.DoorAccess", "pingan.Location", "pingan.PersonRef",
    "pingan.VehicleRef", "pingan.Refs", "pingan.EventSummary", "pingan.Event", "pingan.Link",
    "pingan.Incident", "pingan.Escalation", "pingan.DeadLetter", "pingan.QualityFlag",
    "pingan.AuditAnchor", "pingan.Disposition", "pingan.DispositionSummary", "pingan.EscalationStep",
    "pingan.ClockTick",
}


@pytest.fixture(scope="module")
def raw() -> dict:
    return load_dir(SCHEMA_DIR)


def test_exactly_the_contract_types_one_per_file(raw: dict) -> None:
    assert set(raw) == EXPECTED
    assert set(EXAMPLE_NAMES) == EXPECTED
    for path in SCHEMA_DIR.glob("*.avsc"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["type"] == "record" and data["name"] == path.stem and data.get("doc")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parses_in_both_libraries_with_the_same_fingerprint(raw: dict, name: str) -> None:
    expanded = expand(name, raw)
    parsed = fastavro.parse_schema(expanded)
    pcf = to_parsing_canonical_form(parsed)
    ref = avro.schema.parse(json.dumps(expanded))
    assert ref.canonical_form == pcf
    assert ref.fingerprint("CRC-64-AVRO") == crc64_avro(pcf.encode())


def test_optional_fields_default_null_and_arrays_default_empty(raw: dict) -> None:
    for name, schema in raw.items():
        for field in schema["fields"]:
            t = field["type"]
            if isinstance(t, list):
                assert t[0] == "null" and field.get("default", "missing") is None, (name, field["name"])
            if isinstance(t, dict) and t.get("type") == "array":
                assert field.get("default") == [], (name, field["name"])
            assert "logicalType" not in json.dumps(t), "times are plain long (UTC epoch ms)"


def test_nested_types_are_referenced_by_name_and_inlined_once(raw: dict) -> None:
    assert references("pingan.Event", raw) == [
        "pingan.Location", "pingan.PersonRef", "pingan.VehicleRef", "pingan.Refs", "pingan.QualityFlag"]
    assert references("pingan.Incident", raw) == ["pingan.EventSummary", "pingan.QualityFlag", "pingan.Link",
                                                  "pingan.EscalationStep", "pingan.DispositionSummary"]
    assert references("pingan.raw.MediationCase", raw) == ["pingan.raw.Party", "pingan.QualityFlag"]
    assert json.dumps(expand("pingan.Incident", raw)).count('"name": "Link"') == 1


def test_unknown_reference_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "Broken.avsc").write_text(json.dumps(
        {"type": "record", "name": "Broken", "namespace": "pingan",
         "fields": [{"name": "loc", "type": "pingan.Nowhere"}]}))
    with pytest.raises(SchemaLoadError, match="pingan.Nowhere"):
        SchemaStore(tmp_path, None)


def test_rabin_fingerprint_matches_the_spec_test_value() -> None:
    # Avro spec: the CRC-64-AVRO fingerprint of the schema "null" is 0x63dd24e7cc258f8a,
    # written little-endian in single-object encoding.
    assert crc64_avro(b'"null"') == (0x63DD24E7CC258F8A).to_bytes(8, "little")
    assert avro.schema.parse('"null"').fingerprint() == crc64_avro(b'"null"')


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_round_trips(name: str) -> None:
    store = SchemaStore()
    record = example(name)
    data = store.encode(name, record)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == store.fingerprint(name)
    got_name, got = store.decode(data)
    assert got_name == name
    assert got == record
