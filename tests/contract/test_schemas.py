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
    "pingan.Incident", "pingan.IncidentMember", "pingan.Escalation", "pingan.DeadLetter", "pingan.QualityFlag",
    "pingan.AuditAnchor", "pingan.Disposition", "pingan.DispositionSummary", "pingan.EscalationStep",
    "pingan.ClockTick", "pingan.SchemaEntry",
}
#: long fields that are instants (timestamp-millis); every other long is a count, offset or clock-free number
INSTANTS = {"received_at", "anchored_at", "now_ms", "at", "occurred_at", "first_seen", "last_seen", "updated_at",
            "opened_at", "deadline_at", "resolved_at", "opening_at", "created_at"}
#: field names that break generated code (Avro 1.12 SpecificCompiler: hashCode's local `result`, builder's
#: `record`, the SpecificRecord methods) or are reserved words in common targets
HOSTILE_NAMES = {"result", "record", "class", "default", "package", "int", "long", "new", "this", "return",
                 "static", "void", "import", "public", "private", "enum"}


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
    from schemas.serde import without_logical_types
    expanded = expand(name, raw)
    parsed = fastavro.parse_schema(expanded)
    pcf = to_parsing_canonical_form(parsed)
    # the Avro spec strips logicalType and writes an annotated primitive bare ("long", as Java does);
    # the `avro` package 1.12 keeps {"type":"long"}, so it is compared on the stripped schema
    ref = avro.schema.parse(json.dumps(without_logical_types(expanded)))
    assert to_parsing_canonical_form(fastavro.parse_schema(without_logical_types(expanded))) == pcf
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
            base = [b for b in t if b != "null"][0] if isinstance(t, list) else t
            if field["name"] in INSTANTS:
                assert base == {"type": "long", "logicalType": "timestamp-millis"}, (name, field["name"])
            else:
                assert "logicalType" not in json.dumps(t), (name, field["name"])


def test_names_and_docs_suit_code_generators(raw: dict) -> None:
    """No field name that breaks Java code generation, no doc text that ends a Javadoc comment early."""
    for name, schema in raw.items():
        assert "*/" not in schema.get("doc", ""), name
        for field in schema["fields"]:
            assert field["name"] not in HOSTILE_NAMES, (name, field["name"])
            assert "*/" not in field.get("doc", ""), (name, field["name"])


def test_timestamp_millis_changes_no_fingerprint_and_decodes_to_int() -> None:
    from schemas.serde import without_logical_types
    raw_ = load_dir(SCHEMA_DIR)
    expanded = expand("pingan.Escalation", raw_)
    assert "timestamp-millis" in json.dumps(expanded)
    bare = without_logical_types(expanded)
    assert to_parsing_canonical_form(fastavro.parse_schema(bare)) == to_parsing_canonical_form(fastavro.parse_schema(expanded))
    assert '"type":"long"' in to_parsing_canonical_form(fastavro.parse_schema(expanded))
    store = SchemaStore()
    rec = example("Escalation")
    assert isinstance(store.decode(store.encode("Escalation", rec))[1]["at"], int)


def test_mediation_outcome_reads_records_written_with_result(tmp_path) -> None:
    """The v1 field `result` (renamed `outcome` with an alias) resolves to `outcome`."""
    from schemas.loader import RELEASED_DIR
    old = SchemaStore(RELEASED_DIR / "v1", None)
    rec = example("MediationCase")
    rec["result"] = rec.pop("outcome")
    rec.pop("result_text", None)
    rec["workstation"] = rec["workstation"] or ""
    v1_fields = {f["name"] for f in old.schema("MediationCase")["fields"]}
    data = old.encode("MediationCase", {k: v for k, v in rec.items() if k in v1_fields})
    _, got = SchemaStore().decode(data)
    assert got["outcome"] == "agreement" and "result" not in got


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
