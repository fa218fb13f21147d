"""A downstream consumer of Ping'an Bus: the incident view and the escalation feed.

Copy this file. It needs only ``kafka-python`` and ``fastavro`` plus the ``.avsc`` files of the
bus (``schemas/*.avsc`` of the release you integrate against); it does not import the bus.

What it shows:

1. **Decoding.** Every value is Avro *single-object encoded*: ``C3 01`` + the 8-byte little-endian
   CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form + the Avro body. Parse the
   ``.avsc`` files once, index them by fingerprint, read the body with ``schemaless_reader``
   (`AvscDecoder`). (Inside the bus, ``schemas.serde.SchemaStore().decode`` does the same, plus
   resolution of older released writer schemas.)
2. **Compacted-topic semantics.** ``incidents.v1`` keeps the latest record per ``incident_id``; a
   consumer keeps the same: the record with the highest ``version`` per id wins (`IncidentView`).
3. **Merge redirects.** When two incidents merge, the retired id gets a final record with
   ``status = "merged"`` and ``merged_into`` = the surviving id. Look-ups follow the redirect chain
   (`IncidentView.resolve`), and the retired id is no longer listed as live.
4. **Escalations** (``escalations.v1``) are deduplicated by ``escalation_id`` (delivery is
   at-least-once).
5. **Every member of a big incident.** An incident record lists at most 1,000 member ids
   (``event_ids``; ``event_count`` is the true count). ``incident-members.v1`` (compacted, key
   ``event_id``) says which incident each event joined; follow that id through the redirects to the
   live incident (`IncidentView.members_of`).

Run:  ``python examples/downstream_consumer.py --bootstrap 127.0.0.1:19092 --schemas schemas``
(``--topic-prefix`` for a prefixed deployment, ``--from-beginning`` to rebuild the view, which you
should do on a compacted topic when you start a view from scratch).
"""
from __future__ import annotations

import argparse
import io
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint as avro_fingerprint
from fastavro.schema import to_parsing_canonical_form

MAGIC = b"\xc3\x01"
INCIDENTS = "incidents.v1"
ESCALATIONS = "escalations.v1"
MEMBERS = "incident-members.v1"


# --------------------------------------------------------------------------- decoding
def _load_named(schema_dir: Path) -> dict[str, dict[str, Any]]:
    """Every ``.avsc`` of a folder by full name (one named type per file)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(schema_dir).glob("*.avsc")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        name = schema["name"] if "." in schema["name"] else f"{schema.get('namespace', '')}.{schema['name']}"
        out[name.strip(".")] = schema
    return out


class AvscDecoder:
    """Single-object decoder over a folder of ``.avsc`` files (no schema registry needed)."""

    def __init__(self, schema_dir: Path) -> None:
        named = _load_named(schema_dir)
        self.by_fingerprint: dict[bytes, tuple[str, Any]] = {}
        for name in named:
            parsed = fastavro.parse_schema(_inline(name, named, set()))
            pcf = to_parsing_canonical_form(parsed)
            fp = bytes.fromhex(avro_fingerprint(pcf, "CRC-64-AVRO"))
            self.by_fingerprint[fp] = (name, parsed)

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """``(full schema name, record)`` of a single-object encoded value; ValueError otherwise."""
        if len(data) < 10 or data[:2] != MAGIC:
            raise ValueError("not Avro single-object encoded (no C3 01 marker)")
        fp = bytes(data[2:10])
        try:
            name, parsed = self.by_fingerprint[fp]
        except KeyError:
            raise ValueError(f"unknown writer schema fingerprint 0x{struct.unpack('<Q', fp)[0]:016x}; "
                             "update your copy of the .avsc files") from None
        return name, fastavro.schemaless_reader(io.BytesIO(data[10:]), parsed)


def _inline(node: Any, named: Mapping[str, Any], defined: set[str]) -> Any:
    """A self-contained schema: each referenced named type (by full name, as the bus's files refer to
    them) inlined where it first appears and referred to by name afterwards, as Avro requires."""
    if isinstance(node, str):
        if node in named and node not in defined:
            return _inline(named[node], named, defined)
        return node
    if isinstance(node, list):
        return [_inline(n, named, defined) for n in node]
    if isinstance(node, Mapping):
        out = dict(node)
        if out.get("type") in ("record", "enum", "fixed") and "name" in out:
            full = out["name"] if "." in out["name"] else f"{out.get('namespace', '')}.{out['name']}".strip(".")
            defined.add(full)
        if "fields" in out:
            out["fields"] = [{**f, "type": _inline(f["type"], named, defined)} for f in out["fields"]]
        for key in ("items", "values"):
            if key in out:
                out[key] = _inline(out[key], named, defined)
        if isinstance(out.get("type"), (list, Mapping)) or out.get("type") in named:
            out["type"] = _inline(out["type"], named, defined)
        return out
    return node


# --------------------------------------------------------------------------- the view
@dataclass
class IncidentView:
    """Latest incident per id (compacted-topic semantics) with merge redirects, escalations, and
    the incident each event joined (incident-members.v1)."""

    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    escalations: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)

    def apply_incident(self, record: Mapping[str, Any]) -> bool:
        """Keep `record` unless a newer version of the same id is already held; True if kept."""
        inc_id = record["incident_id"]
        held = self.incidents.get(inc_id)
        if held is not None and int(held.get("version", 0)) > int(record.get("version", 0)):
            return False
        self.incidents[inc_id] = dict(record)
        return True

    def apply_member(self, record: Mapping[str, Any]) -> None:
        """The incident an event joined (the latest record per event_id wins, as on the compacted topic)."""
        self.members[record["event_id"]] = record["incident_id"]

    def members_of(self, incident_id: str) -> set[str]:
        """Every member event of the live incident `incident_id` stands for: its listed ``event_ids``
        and every event whose member record leads to it through the redirects."""
        live = self.resolve(incident_id)
        if live is None:
            return set()
        out = set(live.get("event_ids") or ())
        if len(out) < int(live.get("event_count") or 0):  # more than listed: ask the members topic
            holders: dict[str, str | None] = {}
            for event_id, holder in self.members.items():
                if holder not in holders:
                    found = self.resolve(holder)
                    holders[holder] = found["incident_id"] if found is not None else None
                if holders[holder] == live["incident_id"]:
                    out.add(event_id)
        return out

    def apply_escalation(self, record: Mapping[str, Any]) -> bool:
        """Record an escalation once (by escalation_id); True if new."""
        if record["escalation_id"] in self.escalations:
            return False
        self.escalations[record["escalation_id"]] = dict(record)
        return True

    def resolve(self, incident_id: str) -> dict[str, Any] | None:
        """The live incident an id stands for now, following ``merged_into`` redirects."""
        seen: set[str] = set()
        current = self.incidents.get(incident_id)
        while current is not None and current.get("status") == "merged" and current.get("merged_into"):
            if current["incident_id"] in seen:  # a redirect cycle cannot happen; guard anyway
                return None
            seen.add(current["incident_id"])
            current = self.incidents.get(current["merged_into"])
        return current

    def live(self) -> dict[str, dict[str, Any]]:
        """Incidents that are not merged away, by id."""
        return {k: v for k, v in self.incidents.items() if v.get("status") != "merged"}

    def escalations_of(self, incident_id: str) -> list[dict[str, Any]]:
        """Escalations of an incident or of the incidents merged into it, oldest first."""
        target = self.resolve(incident_id)
        ids = {incident_id} if target is None else {
            i for i in self.incidents if (self.resolve(i) or {}).get("incident_id") == target["incident_id"]}
        return sorted((e for e in self.escalations.values() if e["incident_id"] in ids), key=lambda e: e["at"])


def apply_message(view: IncidentView, decoder: AvscDecoder, topic: str, value: bytes | None) -> str | None:
    """Decode one message and apply it to the view; returns the schema name (None for a tombstone)."""
    if value is None:  # a compaction tombstone: the key is gone
        return None
    name, record = decoder.decode(value)
    if name == "pingan.Incident":
        view.apply_incident(record)
    elif name == "pingan.Escalation":
        view.apply_escalation(record)
    elif name == "pingan.IncidentMember":
        view.apply_member(record)
    return name


# --------------------------------------------------------------------------- Kafka
def make_consumer(bootstrap: str, group_id: str | None, from_beginning: bool = True):  # noqa: ANN201
    """A kafka-python consumer (commits are the caller's business: a view rebuilt from scratch needs none)."""
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=group_id is not None,
                         auto_offset_reset="earliest" if from_beginning else "latest",
                         client_id="pingan-downstream-example", isolation_level="read_committed")


def consume(consumer: Any, view: IncidentView, decoder: AvscDecoder, topics: Iterable[str], *,
            until_end: bool = True, max_idle_polls: int = 5) -> int:
    """Read `topics` into `view`; with `until_end`, stop at the end offsets seen at the start. Returns messages read."""
    from kafka import TopicPartition

    topics = list(topics)
    tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps) if until_end else {}
    n = idle = 0
    while True:
        polled = consumer.poll(timeout_ms=500)
        for tp, records in polled.items():
            for r in records:
                try:
                    apply_message(view, decoder, r.topic, r.value)
                except ValueError as exc:
                    print(f"skipping {r.topic}[{r.partition}]@{r.offset}: {exc}")
                n += 1
        idle = 0 if polled else idle + 1
        if until_end and all(consumer.position(tp) >= ends[tp] for tp in tps):
            return n
        if idle >= max_idle_polls and until_end:
            return n


def print_view(view: IncidentView, limit: int = 20) -> None:
    """A short human-readable summary of the view."""
    live = sorted(view.live().values(), key=lambda i: i.get("last_seen", 0), reverse=True)
    merged = len(view.incidents) - len(live)
    print(f"{len(live)} live incident(s), {merged} merged away, {len(view.escalations)} escalation(s)")
    for inc in live[:limit]:
        print(f"  {inc['incident_id']}  v{inc['version']:<3} {inc['status']:<9} {inc['tier']:<7} {inc['kind']:<16} "
              f"{inc.get('event_count') or len(inc.get('event_ids') or [])} event(s)  {inc['admin_code']}")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--schemas", default=str(Path(__file__).resolve().parent.parent / "schemas"))
    parser.add_argument("--topic-prefix", default="")
    parser.add_argument("--follow", action="store_true", help="keep consuming after the current end")
    args = parser.parse_args(argv)
    decoder = AvscDecoder(Path(args.schemas))
    view = IncidentView()
    consumer = make_consumer(args.bootstrap, None)
    try:
        consume(consumer, view, decoder, [args.topic_prefix + t for t in (INCIDENTS, ESCALATIONS, MEMBERS)],
                until_end=not args.follow)
    finally:
        consumer.close()
    print_view(view)


if __name__ == "__main__":
    main()
