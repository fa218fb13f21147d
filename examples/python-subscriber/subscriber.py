"""A Python subscriber of Ping'an Bus's downstream topics, beside the Java one (../java-subscriber).

Needs only ``fastavro`` and ``kafka-python`` (no code of the bus): it reads the released schemas it
bundles (``schemas/released/vN``, files in ``load-order.txt`` order, named types referenced by full
name), decodes each value (Avro single-object encoding: C3 01, 8-byte little-endian CRC-64-AVRO
fingerprint, body) and, for a fingerprint it does not bundle, fetches the writer schema from the
bus's schema store (``GET /schemas/{fingerprint}``), checks that its fingerprint is the one asked
for, and resolves it to the bundled reader schema of the topic.

Run:  python examples/python-subscriber/subscriber.py --bootstrap 127.0.0.1:19092 \
          --schema-store http://127.0.0.1:8080 [--prefix P] [--topics incidents.v1,events.v1]

Output: one tab-separated line per record ``REC topic partition offset key schema fingerprint-hex
fingerprint-long origin json``, ``ERR ...`` for a record it could not decode, ``DONE records errors fetched``.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form

MAGIC = b"\xc3\x01"
TOPICS: Mapping[str, str] = {"incidents.v1": "pingan.Incident", "incident-members.v1": "pingan.IncidentMember",
                             "escalations.v1": "pingan.Escalation",
                             "links.v1": "pingan.Link", "events.v1": "pingan.Event",
                             "dispositions.v1": "pingan.Disposition"}
DEFAULT_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "released" / "v3"


def fingerprint_of(parsed: Any) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form of a self-contained parsed schema, in wire order."""
    return bytes.fromhex(_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def _full(schema: Mapping[str, Any]) -> str:
    name = str(schema["name"])
    return name if "." in name else f"{schema.get('namespace', '')}.{name}".lstrip(".")


def inline(name: str, files: Mapping[str, Any]) -> Any:
    """A self-contained schema for ``name``: each named type the files refer to by full name is
    inlined where it is first used and referred to by name afterwards (as the canonical form does)."""
    defined: set[str] = set()

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            if node in files and node not in defined:
                return walk(files[node])
            return node
        if isinstance(node, list):
            return [walk(n) for n in node]
        if isinstance(node, dict):
            out = dict(node)
            if out.get("type") in ("record", "enum", "fixed"):
                defined.add(_full(out))
            if "fields" in out:
                out["fields"] = [{**f, "type": walk(f["type"])} for f in out["fields"]]
            for key in ("items", "values"):
                if key in out:
                    out[key] = walk(out[key])
            if isinstance(out.get("type"), (list, dict)) or out.get("type") in files:
                out["type"] = walk(out["type"])
            return out
        return node

    return walk(files[name])


def load_bundled(folder: Path) -> dict[str, Any]:
    """``{full name: parsed self-contained schema}`` of a release folder (files in ``load-order.txt``)."""
    files: dict[str, Any] = {}
    for line in (folder / "load-order.txt").read_text(encoding="utf-8").split():
        schema = json.loads((folder / line).read_text(encoding="utf-8"))
        files[_full(schema)] = schema
    return {name: fastavro.parse_schema(inline(name, files), named_schemas={}) for name in files}


class Decoder:
    """Single-object decoding with bundled reader schemas and a fetch-by-fingerprint fallback."""

    def __init__(self, bundled: Mapping[str, Any], fetch: Callable[[bytes], str | None]) -> None:
        self.readers = dict(bundled)
        self.writers: dict[bytes, Any] = {fingerprint_of(p): p for p in bundled.values()}
        self.bundled = frozenset(self.writers)
        self.fetched: set[bytes] = set()
        self._fetch = fetch

    def writer(self, fp: bytes) -> Any:
        """The writer schema of a fingerprint (fetched and verified once when not bundled)."""
        if fp not in self.writers:
            text = self._fetch(fp)
            if text is None:
                raise KeyError(f"unknown writer schema fingerprint {fp.hex()}")
            parsed = fastavro.parse_schema(json.loads(text), named_schemas={})
            if fingerprint_of(parsed) != fp:
                raise ValueError(f"the schema store returned another schema for {fp.hex()}")
            self.writers[fp] = parsed
            self.fetched.add(fp)
        return self.writers[fp]

    def decode(self, value: bytes, reader_name: str) -> tuple[bytes, dict[str, Any]]:
        """``(fingerprint, record)``: the value resolved to the bundled reader schema ``reader_name``."""
        if len(value) < 10 or value[:2] != MAGIC:
            raise ValueError("not Avro single-object encoded")
        fp = bytes(value[2:10])
        writer = self.writer(fp)
        buf = io.BytesIO(value[10:])
        record = fastavro.schemaless_reader(buf, writer, self.readers[reader_name])
        if buf.read(1):
            raise ValueError("trailing bytes after the record")
        return fp, record


def http_fetch(base_url: str) -> Callable[[bytes], str | None]:
    """A fetcher over ``GET {base_url}/schemas/{fingerprint hex}`` (None on 404)."""
    def fetch(fp: bytes) -> str | None:
        try:
            with urllib.request.urlopen(f"{base_url.rstrip('/')}/schemas/{fp.hex()}", timeout=10) as resp:
                return resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
    return fetch


def run(bootstrap: str, schema_store: str, prefix: str, topics: list[str], schemas: Path,
        out: Any = sys.stdout, timeout_s: float = 60.0) -> int:
    """Read ``topics`` from the start to their current end; returns the number of errors."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    decoder = Decoder(load_bundled(schemas), http_fetch(schema_store))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             client_id="pingan-python-subscriber", isolation_level="read_committed")
    n = errors = 0
    try:
        tps = [TopicPartition(prefix + t, p) for t in topics for p in sorted(consumer.partitions_for_topic(prefix + t) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    n += 1
                    where = f"{r.topic}\t{r.partition}\t{r.offset}"
                    if r.value is None:
                        print(f"TOMBSTONE\t{where}", file=out)
                        continue
                    reader = TOPICS[r.topic[len(prefix):]]
                    try:
                        fp, rec = decoder.decode(r.value, reader)
                    except Exception as exc:  # noqa: BLE001 - reported per record, the stream goes on
                        errors += 1
                        print(f"ERR\t{where}\t{type(exc).__name__}: {exc}", file=out)
                        continue
                    origin = "bundled" if fp in decoder.bundled else "fetched"
                    key = r.key.decode("utf-8") if r.key else ""
                    print("\t".join([
                        "REC", r.topic, str(r.partition), str(r.offset), key, reader, fp.hex(),
                        str(int.from_bytes(fp, "little", signed=True)), origin,
                        json.dumps(rec, ensure_ascii=False, default=str)]), file=out)
    finally:
        consumer.close()
    print(f"DONE\t{n}\t{errors}\t{len(decoder.fetched)}", file=out)
    return errors


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default="127.0.0.1:19092")
    p.add_argument("--schema-store", default="http://127.0.0.1:8080")
    p.add_argument("--prefix", default="")
    p.add_argument("--topics", default=",".join(TOPICS))
    p.add_argument("--schemas", type=Path, default=DEFAULT_SCHEMAS)
    p.add_argument("--timeout-s", type=float, default=60.0)
    a = p.parse_args(argv)
    return 1 if run(a.bootstrap, a.schema_store, a.prefix, a.topics.split(","), a.schemas, timeout_s=a.timeout_s) else 0


if __name__ == "__main__":
    sys.exit(main())
