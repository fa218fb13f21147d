"""The schema store's records (topic ``schemas.v1``, HTTP ``/schemas/...``): pure, no I/O.

Contract:
- ``fingerprint_hex(fp)`` is the wire notation: 16 lower-case hex digits of the 8 header bytes in
  wire order (little-endian). ``fingerprint_long(fp)`` is the signed 64-bit integer Java prints
  (``SchemaNormalization.parsingFingerprint64``, ``MissingSchemaException``).
  ``parse_fingerprint(text)`` accepts either notation (and an unsigned decimal) and returns the 8 bytes;
  ``ValueError`` otherwise.
- ``schema_entries(store)`` is one ``pingan.SchemaEntry`` dict per writer version the store accepts
  (current and released), sorted by name then fingerprint; ``release`` is the oldest release holding
  it or ``"unreleased"``. The same store gives the same entries (idempotent republishing).
- ``missing(store, published)`` lists the current schemas whose fingerprint (wire hex) is not in
  ``published``: a writer refuses to start while it is not empty.
- ``SchemaIndex`` holds entries by fingerprint and by name for the HTTP endpoint.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.serde import SchemaStore, SchemaVersion

SCHEMA_ENTRY = "pingan.SchemaEntry"
UNRELEASED = "unreleased"
_HEX = re.compile(r"^[0-9a-fA-F]{16}$")
_DEC = re.compile(r"^-?\d{1,20}$")


def fingerprint_hex(fp: bytes) -> str:
    """Wire notation: the 8 header bytes as hex, in wire (little-endian) order."""
    return bytes(fp).hex()


def fingerprint_long(fp: bytes) -> int:
    """Java notation: the fingerprint as a signed 64-bit integer."""
    return int.from_bytes(bytes(fp), "little", signed=True)


def parse_fingerprint(text: str) -> bytes:
    """8 fingerprint bytes from wire hex (16 digits) or a (signed or unsigned) decimal."""
    text = text.strip()
    if _HEX.match(text) and not _DEC.match(text):
        return bytes.fromhex(text)
    if _DEC.match(text):
        value = int(text)
        if -(2**63) <= value < 2**63:
            return value.to_bytes(8, "little", signed=True)
        if 0 <= value < 2**64:
            return value.to_bytes(8, "little", signed=False)
    if _HEX.match(text):
        return bytes.fromhex(text)
    raise ValueError(f"not a fingerprint: {text!r} (16 hex digits in wire order, or a 64-bit decimal)")


def entry(store: SchemaStore, sv: SchemaVersion) -> dict[str, Any]:
    """The ``pingan.SchemaEntry`` of one writer version."""
    return {
        "fingerprint": fingerprint_hex(sv.fingerprint),
        "fingerprint_long": fingerprint_long(sv.fingerprint),
        "name": sv.name,
        "release": store.first_release(sv.fingerprint) or UNRELEASED,
        "schema": json.dumps(sv.schema, ensure_ascii=False, separators=(",", ":")),
    }


def schema_entries(store: SchemaStore) -> tuple[dict[str, Any], ...]:
    """Every writer version of ``store`` as a SchemaEntry dict (sorted by name, fingerprint)."""
    entries = (entry(store, sv) for sv in store.writer_versions())
    return tuple(sorted(entries, key=lambda e: (e["name"], e["fingerprint"])))


def missing(store: SchemaStore, published: Iterable[str]) -> tuple[SchemaVersion, ...]:
    """Current schemas of ``store`` whose wire-hex fingerprint is not among ``published``."""
    have = set(published)
    return tuple(store.get(n) for n in store.names if fingerprint_hex(store.fingerprint(n)) not in have)


@dataclass
class SchemaIndex:
    """SchemaEntry dicts by wire-hex fingerprint, with a by-name view (for ``/schemas/...``)."""

    by_fingerprint: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Add or replace entries (keyed by their fingerprint)."""
        for e in entries:
            self.by_fingerprint[str(e["fingerprint"])] = dict(e)

    def find(self, fp: bytes) -> dict[str, Any] | None:
        """The entry of a fingerprint, or None."""
        return self.by_fingerprint.get(fingerprint_hex(fp))

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Entries of a full (``pingan.Incident``) or short (``Incident``) name, oldest release first."""
        hits = [e for e in self.by_fingerprint.values()
                if name in (e["name"], e["name"].rsplit(".", 1)[-1])]
        return sorted(hits, key=lambda e: (_release_order(e["release"]), e["fingerprint"]))


def _release_order(release: str) -> int:
    match = re.fullmatch(r"v(\d+)", release)
    return int(match.group(1)) if match else 1 << 30
