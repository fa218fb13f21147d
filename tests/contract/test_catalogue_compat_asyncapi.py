"""The topic catalogue, the BACKWARD compatibility gate and the AsyncAPI document."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from schemas import asyncapi, compat
from schemas.catalogue import DAY_MS, DOWNSTREAM_TOPICS, TOPICS, by_schema, topic
from schemas.registry import fingerprint_hex, fingerprint_long
from streams.cli.schemas import app
from schemas.examples import example
from schemas.loader import RELEASED_DIR, SCHEMA_DIR, load_dir, released_versions
from schemas.serde import SchemaStore

CONTRACT = {  # docs/contracts.md topic table: key field, schema, partitions, retention days (None = compact)
    "raw.camera.v1": ("device_id", "pingan.raw.CameraAlarm", 6, 7),
    "raw.grid.v1": ("report_id", "pingan.raw.GridReport", 3, 30),
    "raw.alarm110.v1": ("jjdbh", "pingan.raw.Alarm110", 3, 30),
    "raw.mediation.v1": ("case_no", "pingan.raw.MediationCase", 3, 365),
    "raw.door.v1": ("device_id", "pingan.raw.DoorAccess", 3, 7),
    "events.v1": ("event_id", "pingan.Event", 6, 30),
    "internal.events-by-county.v1": ("location.county_code", "pingan.Event", 3, 30),
    "links.v1": ("county_code", "pingan.Link", 3, 30),
    "incidents.v1": ("incident_id", "pingan.Incident", 3, None),
    "incident-members.v1": ("event_id", "pingan.IncidentMember", 3, None),
    "escalations.v1": ("incident_id", "pingan.Escalation", 3, 90),
    "deadletters.v1": ("source", "pingan.DeadLetter", 3, 30),
    "audit-anchors.v1": ("log_id", "pingan.AuditAnchor", 1, 3650),
    "dispositions.v1": ("incident_id", "pingan.Disposition", 3, 3650),
    "clock.v1": ("county_code", "pingan.ClockTick", 3, 3650),
    "schemas.v1": ("fingerprint", "pingan.SchemaEntry", 1, None),
}


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore()


def test_catalogue_matches_the_contract_table(store: SchemaStore) -> None:
    names = [t.name for t in TOPICS]
    assert len(names) == len(set(names))
    assert set(names) == set(CONTRACT)
    for t in TOPICS:
        key, schema, partitions, days = CONTRACT[t.name]
        assert (t.key, t.value_schema, t.partitions) == (key, schema, partitions)
        assert t.value_schema in store.names
        fields = {f["name"] for f in store.schema(t.value_schema)["fields"]}
        assert t.key.split(".")[0] in fields, f"{t.name}: key {t.key} is not a field of {t.value_schema}"
        assert t.description and t.guarantees
        if days is None:
            assert t.compacted and dict(t.config) == {"cleanup.policy": "compact"}
        else:
            assert not t.compacted
            assert dict(t.config) == {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}


def test_lookup_helpers_and_keys() -> None:
    assert topic("incidents.v1").compacted
    with pytest.raises(KeyError, match="events.v1"):
        topic("events.v2")
    assert [t.name for t in by_schema("Event")] == ["events.v1", "internal.events-by-county.v1"] \
        == [t.name for t in by_schema("pingan.Event")]
    assert by_schema("Party") == ()
    assert topic("links.v1").key_bytes(example("Link")) == b"513221"
    assert topic("raw.mediation.v1").key_bytes(example("MediationCase")) == "汶三调〔2026〕第031号".encode()
    with pytest.raises(ValueError, match="event_id"):
        topic("events.v1").key_bytes({"event_id": ""})
    with pytest.raises(TypeError):
        topic("events.v1").config["x"] = "y"  # type: ignore[index]


def test_a_released_snapshot_exists_and_gate_passes_now() -> None:
    versions = released_versions(RELEASED_DIR)
    assert versions and versions[0][0] == "v1"
    assert set(load_dir(versions[0][1])) <= set(load_dir(SCHEMA_DIR))  # types are added, never removed
    report = compat.check()
    assert report.ok, report.render()
    assert report.baseline == versions[-1][0]
    assert len(report.findings) == len(load_dir(SCHEMA_DIR))


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    cur = tmp_path / "current"
    rel = tmp_path / "released"
    shutil.copytree(SCHEMA_DIR, cur, ignore=shutil.ignore_patterns("*.py", "released", "__pycache__"))
    shutil.copytree(cur, rel / "v1")
    return cur, rel


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def test_gate_fails_on_a_required_field_without_default(tmp_path: Path) -> None:
    cur, rel = _copy(tmp_path)
    _edit(cur / "Event.avsc", lambda s: s["fields"].append({"name": "priority_code", "type": "string"}))
    report = compat.check(cur, rel)
    assert not report.ok
    [failure] = report.failures()
    assert failure.name == "pingan.Event"
    assert "reader_field_missing_default_value" in failure.detail and "priority_code" in failure.detail
    # Incident embeds nothing from Event, so it stays fine; adding a default fixes Event
    _edit(cur / "Event.avsc", lambda s: s["fields"][-1].update(default=""))
    assert compat.check(cur, rel).ok


def test_gate_fails_on_type_change_in_a_nested_type_and_on_removal(tmp_path: Path) -> None:
    cur, rel = _copy(tmp_path)
    def int_lat(s: dict) -> None:
        next(f for f in s["fields"] if f["name"] == "lat")["type"] = ["null", "int"]
    _edit(cur / "Location.avsc", int_lat)
    (cur / "Escalation.avsc").unlink()
    failures = {f.name: f.detail for f in compat.check(cur, rel).failures()}
    assert set(failures) == {"pingan.Location", "pingan.Event", "pingan.Escalation"}
    assert "removed" in failures["pingan.Escalation"]
    # widening int -> long is BACKWARD compatible but not FORWARD
    cur2, rel2 = _copy(tmp_path / "b")
    _edit(cur2 / "Refs.avsc", lambda s: next(f for f in s["fields"] if f["name"] == "raw_partition").update(type=["null", "long"]))
    assert compat.check(cur2, rel2).ok
    assert not compat.check(cur2, rel2, "FULL").ok


def test_no_release_means_nothing_to_compare(tmp_path: Path) -> None:
    report = compat.check(SCHEMA_DIR, tmp_path / "none")
    assert report.ok and report.baseline is None


def test_asyncapi_document_is_current_and_complete(store: SchemaStore) -> None:
    assert asyncapi.ASYNCAPI_PATH.read_text(encoding="utf-8") == asyncapi.render(store), \
        "docs/asyncapi.json is stale: run `pingan schemas asyncapi`"
    doc = json.loads(asyncapi.render(store))
    assert doc["asyncapi"] == "2.6.0"
    assert set(doc["channels"]) == set(CONTRACT)
    inc = doc["channels"]["incidents.v1"]
    assert inc["bindings"]["kafka"]["topicConfiguration"] == {"cleanup.policy": ["compact"]}
    assert inc["bindings"]["kafka"]["partitions"] == 3
    msg = inc["subscribe"]["message"]
    assert msg["schemaFormat"] == "application/vnd.apache.avro;version=1.9.0"
    assert msg["payload"]["name"] == "Incident"
    assert msg["x-avro-fingerprint"] == store.fingerprint("Incident").hex()
    assert "incident_id" in msg["bindings"]["kafka"]["key"]["description"]
    assert asyncapi.render(store) == asyncapi.render(SchemaStore())  # deterministic


def test_cli_check_and_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["asyncapi", "--check"]).exit_code == 0
    stale = tmp_path / "asyncapi.json"
    stale.write_text("{}\n")
    assert runner.invoke(app, ["asyncapi", "--check", "--path", str(stale)]).exit_code == 1
    assert runner.invoke(app, ["asyncapi", "--path", str(stale)]).exit_code == 0
    assert runner.invoke(app, ["asyncapi", "--check", "--path", str(stale)]).exit_code == 0
    assert runner.invoke(app, ["compat"]).exit_code == 0
    monkeypatch.setattr("streams.cli.schemas.RELEASED_DIR", tmp_path / "released")
    assert runner.invoke(app, ["release", "2"]).exit_code == 2
    res = runner.invoke(app, ["release", "v1"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "released" / "v1").glob("*.avsc"))) == len(list(SCHEMA_DIR.glob("*.avsc")))
    assert runner.invoke(app, ["release", "v1"]).exit_code == 1  # immutable
    order = (tmp_path / "released" / "v1" / "load-order.txt").read_text().split()
    assert sorted(order) == sorted(p.name for p in SCHEMA_DIR.glob("*.avsc"))
    assert order.index("Location.avsc") < order.index("Event.avsc") < order.index("Incident.avsc") or \
        order.index("EventSummary.avsc") < order.index("Incident.avsc")


def test_downstream_wire_schemas_are_released_versions(store: SchemaStore) -> None:
    """CI's release discipline: what the bus writes on a downstream topic is a released schema version,
    the last release holds it, and the AsyncAPI version is that release's."""
    last, last_dir = released_versions(RELEASED_DIR)[-1]
    released = SchemaStore(last_dir, None)
    for name in DOWNSTREAM_TOPICS:
        schema = topic(name).value_schema
        fp = store.fingerprint(schema)
        assert store.first_release(fp) is not None, (
            f"{name}: the wire schema {schema} ({fp.hex()}) is not released: run `pingan schemas release v<N+1>`")
        assert released.fingerprint(schema) == fp, f"{name}: {schema} differs from the last release {last}"
    doc = json.loads(asyncapi.render(store))
    assert doc["info"]["version"] == f"{last[1:]}.0.0"
    msg = doc["channels"]["incidents.v1"]["subscribe"]["message"]
    fp = store.fingerprint("Incident")
    assert msg["x-avro-fingerprint"] == fingerprint_hex(fp)
    assert msg["x-avro-fingerprint-long"] == fingerprint_long(fp) == int.from_bytes(fp, "little", signed=True)
    # the release that first carried this wire schema (a later release may carry it unchanged)
    assert msg["x-schema-release"] == store.first_release(fp) and released.fingerprint("Incident") == fp


def test_gate_is_full_for_downstream_topics(tmp_path: Path) -> None:
    """Dropping a required field is BACKWARD compatible but old consumers cannot read it: the gate fails."""
    cur, rel = _copy(tmp_path)
    _edit(cur / "Incident.avsc", lambda s: s.update(fields=[f for f in s["fields"] if f["name"] != "kind"]))
    assert compat.check(cur, rel).ok
    report = compat.gate(cur, rel)
    assert [f.name for f in report.failures()] == ["pingan.Incident"]
    assert "cannot read current" in report.failures()[0].detail
    # a raw (internal) type is gated BACKWARD only
    cur2, rel2 = _copy(tmp_path / "b")
    _edit(cur2 / "DoorAccess.avsc", lambda s: s.update(fields=[f for f in s["fields"] if f["name"] != "device_id"]))
    assert compat.gate(cur2, rel2).ok


def test_v2_is_forward_compatible_with_v1_readers() -> None:
    """Release v2 only added fields with defaults (and annotations): v1 readers keep reading."""
    v1 = compat.avro_schemas(RELEASED_DIR / "v1")
    v2 = compat.avro_schemas(RELEASED_DIR / "v2")
    for name in compat.downstream_schemas():
        if name in v1:
            assert compat._pair(v1[name], v2[name]) is None, name
            assert compat._pair(v2[name], v1[name]) is None, name
