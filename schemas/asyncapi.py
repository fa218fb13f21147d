"""The downstream-facing AsyncAPI 2.6.0 document, generated from the catalogue and the schemas.

Contract: ``build(store)`` returns the document as a dict; its ``info.version`` is ``N.0.0`` for the
last schema release ``vN`` (``release_version()``), so the document's version follows the releases;
each message carries its fingerprint in both notations and the release that holds it; ``render(store)`` returns it as JSON text
(sorted keys, 2-space indent, UTF-8 characters kept, trailing newline) — deterministic, so
``docs/asyncapi.json`` can be checked for staleness byte for byte.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.catalogue import TOPICS, Topic
from schemas.examples import EXAMPLE_NAMES, example
from schemas.loader import RELEASED_DIR, SCHEMA_DIR, released_versions, short_name
from schemas.registry import UNRELEASED, fingerprint_hex, fingerprint_long
from schemas.serde import SchemaStore

ASYNCAPI_PATH: Path = SCHEMA_DIR.parent / "docs" / "asyncapi.json"
AVRO_FORMAT = "application/vnd.apache.avro;version=1.9.0"
CONTENT_TYPE = "application/vnd.apache.avro+binary"

_WIRE = (
    "Every value is Avro single-object encoded: the bytes C3 01, then the 8-byte little-endian "
    "CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form (x-avro-fingerprint below, "
    "as hex of those 8 bytes), then the Avro binary body. Find the writer schema by fingerprint and "
    "resolve it to your reader schema. Keys are UTF-8 strings. Times are UTC epoch milliseconds "
    "(logicalType timestamp-millis). Every schema version the bus writes is published before it is "
    "written: on the compacted topic schemas.v1 (pingan.SchemaEntry keyed by the fingerprint in wire "
    "hex) and at GET /schemas/{fingerprint} (wire hex or the signed decimal Java prints) and "
    "GET /schemas/{name}/versions of the search server; fetch an unknown fingerprint from there."
)


def release_version(released_dir: Path = RELEASED_DIR) -> str:
    """``N.0.0`` for the last release ``vN`` (``0.0.0`` before the first)."""
    versions = released_versions(released_dir)
    return f"{versions[-1][0][1:]}.0.0" if versions else "0.0.0"



def _jsonable(value: Any) -> Any:
    """Example values as JSON; ``bytes`` follow Avro's JSON encoding (one ISO-8859-1 char per byte)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _channel(t: Topic, store: SchemaStore) -> dict[str, Any]:
    sv = store.get(t.value_schema)
    topic_config: dict[str, Any] = {"cleanup.policy": t.config.get("cleanup.policy", "delete").split(",")}
    if "retention.ms" in t.config:
        topic_config["retention.ms"] = int(t.config["retention.ms"])
    message = {
        "name": short_name(sv.name),
        "title": sv.name,
        "summary": str(sv.schema.get("doc", "")),
        "contentType": CONTENT_TYPE,
        "schemaFormat": AVRO_FORMAT,
        "payload": sv.schema,
        "bindings": {
            "kafka": {
                "bindingVersion": "0.4.0",
                "key": {"type": "string", "description": f"UTF-8 value of the record field `{t.key}`"},
            }
        },
        "x-avro-fingerprint": fingerprint_hex(sv.fingerprint),
        "x-avro-fingerprint-long": fingerprint_long(sv.fingerprint),
        "x-schema-release": store.first_release(sv.fingerprint) or UNRELEASED,
    }
    if sv.name in EXAMPLE_NAMES:
        message["examples"] = [{"name": "wenchuan", "payload": _jsonable(example(sv.name))}]
    return {
        "description": f"{t.description}\n\nKey: `{t.key}`.\n\nGuarantees: {t.guarantees}",
        "subscribe": {
            "operationId": f"consume_{t.name.replace('.', '_')}",
            "summary": f"Consume {short_name(sv.name)} records from {t.name}",
            "message": message,
        },
        "bindings": {
            "kafka": {
                "bindingVersion": "0.4.0",
                "topic": t.name,
                "partitions": t.partitions,
                "topicConfiguration": topic_config,
            }
        },
        "x-guarantees": t.guarantees,
        "x-key-field": t.key,
    }


def build(store: SchemaStore) -> dict[str, Any]:
    """The AsyncAPI document for every catalogue topic."""
    return {
        "asyncapi": "2.6.0",
        "id": "urn:pingan-bus:events",
        "info": {
            "title": "Ping'an Bus (平安总线)",
            "version": release_version(),
            "description": "Topics of the county governance event bus. " + _WIRE,
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "url": "127.0.0.1:19092",
                "protocol": "kafka",
                "description": "Local development broker (deployments may prefix topic names).",
            }
        },
        "channels": {t.name: _channel(t, store) for t in TOPICS},
    }


def render(store: SchemaStore) -> str:
    """``build`` as deterministic JSON text."""
    return json.dumps(build(store), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write(store: SchemaStore, path: Path = ASYNCAPI_PATH) -> bool:
    """Write the document; True if the file changed."""
    text = render(store)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def is_current(store: SchemaStore, path: Path = ASYNCAPI_PATH) -> bool:
    """True when ``path`` holds exactly what ``render`` produces."""
    return path.exists() and path.read_text(encoding="utf-8") == render(store)
