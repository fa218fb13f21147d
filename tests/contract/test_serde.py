"""Single-object encoding: header, validation errors, unknown fingerprints, old versions."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from schemas import serde
from schemas.examples import example
from schemas.loader import SCHEMA_DIR
from schemas.serde import (
    DecodeError, RecordValidationError, SchemaStore, UnknownFingerprintError, UnknownSchemaError,
)


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore()


def test_header_is_marker_plus_little_endian_fingerprint(store: SchemaStore) -> None:
    rec = example("Escalation")
    data = store.encode("pingan.Escalation", rec)
    fp = store.fingerprint("Escalation")
    assert len(fp) == 8
    assert data[:10] == b"\xc3\x01" + fp
    # the body is plain Avro binary: first field is a string -> zigzag length then UTF-8
    assert data[10] == len(rec["escalation_id"]) * 2
    assert struct.unpack("<Q", fp)[0] == int.from_bytes(fp, "little")


def test_short_full_and_dict_names_are_equivalent(store: SchemaStore) -> None:
    rec = example("Link")
    schema_dict = json.loads((SCHEMA_DIR / "Link.avsc").read_text(encoding="utf-8"))
    assert store.encode("Link", rec) == store.encode("pingan.Link", rec) == store.encode(schema_dict, rec)
    with pytest.raises(UnknownSchemaError, match="Nope"):
        store.encode("Nope", rec)


def test_module_functions_use_the_default_store() -> None:
    rec = example("DeadLetter")
    data = serde.encode("DeadLetter", rec)
    assert serde.decode(data) == ("pingan.DeadLetter", rec)
    assert isinstance(serde.decode(data)[1]["raw"], bytes)
    assert serde.default_store() is serde.default_store()
    assert serde.fingerprint("DeadLetter") == data[2:10]


def test_omitted_optional_fields_take_defaults(store: SchemaStore) -> None:
    rec = {"native_id": "J1", "received_at": 1, "raw_format": "alarm110-db", "jjdbh": "J1",
           "bjsj_local": "2026-07-14 16:26:05", "content": "求助"}
    _, got = store.decode(store.encode("Alarm110", rec))
    assert got["coord_system"] == "WGS84" and got["gljjdbh"] is None and got["jqjb"] is None


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.update(severity="high"), "severity"),
        (lambda r: r["location"].update(lat="31.09"), "lat"),
        (lambda r: r.pop("text"), "text"),
        (lambda r: r.update(colour="red"), "colour"),
        (lambda r: r.update(occurred_at=2**70), "occurred_at"),
    ],
)
def test_bad_records_raise_value_error_naming_the_field(store: SchemaStore, mutate, field: str) -> None:
    rec = example("Event")
    mutate(rec)
    with pytest.raises(ValueError, match=field) as info:
        store.encode("Event", rec)
    assert isinstance(info.value, RecordValidationError)
    assert "pingan.Event" in str(info.value)


def test_unknown_fingerprint_is_a_clear_error(store: SchemaStore) -> None:
    data = b"\xc3\x01" + b"\x00" * 8 + b"\x02"
    with pytest.raises(UnknownFingerprintError, match="unknown writer schema fingerprint 0000000000000000"):
        store.decode(data)


@pytest.mark.parametrize("data", [b"", b"\xc3", b"\xc3\x01\x00", b'{"json": 1}', b"\x00\x01" + b"\x00" * 12])
def test_not_single_object_encoded(store: SchemaStore, data: bytes) -> None:
    with pytest.raises(DecodeError, match="single-object"):
        store.decode(data)


def test_truncated_and_trailing_bytes(store: SchemaStore) -> None:
    data = store.encode("Escalation", example("Escalation"))
    with pytest.raises(DecodeError, match="corrupt"):
        store.decode(data[:-3])
    with pytest.raises(DecodeError, match="trailing"):
        store.decode(data + b"\x00")


def _evolve(tmp_path: Path) -> tuple[Path, Path]:
    """An 'old' schema set (v1) and a 'new' one where Event gained an optional field."""
    old = tmp_path / "released" / "v1"
    new = tmp_path / "current"
    shutil.copytree(SCHEMA_DIR, old, ignore=shutil.ignore_patterns("*.py", "released", "__pycache__"))
    shutil.copytree(old, new)
    event = json.loads((new / "Event.avsc").read_text(encoding="utf-8"))
    event["fields"].append({"name": "tags", "type": {"type": "array", "items": "string"}, "default": []})
    (new / "Event.avsc").write_text(json.dumps(event, ensure_ascii=False), encoding="utf-8")
    return old, new


def test_old_messages_decode_with_the_current_reader(tmp_path: Path) -> None:
    old, new = _evolve(tmp_path)
    old_store = SchemaStore(old, None)
    new_store = SchemaStore(new, tmp_path / "released")
    rec = example("Event")
    old_bytes = old_store.encode("Event", rec)
    assert old_store.fingerprint("Event") != new_store.fingerprint("Event")
    name, got = new_store.decode(old_bytes)
    assert name == "pingan.Event"
    assert got == {**rec, "tags": []}
    # without the release snapshot the old writer is unknown
    with pytest.raises(UnknownFingerprintError):
        SchemaStore(new, None).decode(old_bytes)
    # and the writer version is reported
    assert new_store.writer_of(old_bytes).version == "v1"
