"""Avro single-object encoding for every value on the bus.

Wire format (Avro spec, "Single-object encoding")::

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
            Parsing Canonical Form | fastavro schemaless body

Contract:
- ``SchemaStore(schema_dir, released_dir)`` parses the current ``*.avsc`` and every release snapshot
  (``released/v<N>/``) once, at construction. It holds no mutable state afterwards.
- ``encode(name, record)`` writes with the *current* schema. ``name`` is a full name
  (``pingan.Event``), a short name (``Event``) or a schema dict with a ``name``. Fields with a
  default may be omitted; a missing required field, an unknown field or a wrongly typed value
  raises ``RecordValidationError`` (a ``ValueError``) naming the field.
- ``decode(data)`` finds the writer schema by fingerprint among the current and all released
  schemas and resolves it to the current reader schema of the same name. It returns
  ``(full name, record)``, e.g. ``("pingan.Event", {...})``. Unknown fingerprints raise
  ``UnknownFingerprintError``; anything not single-object encoded, truncated or with trailing bytes
  raises ``DecodeError`` (both ``ValueError``).
- Times are plain ``int`` (UTC epoch milliseconds) in Python even where a schema declares
  ``timestamp-millis`` (the logical type is for other languages; it is not part of the Parsing
  Canonical Form, so it changes no fingerprint): fastavro parses a copy without logical types.
  ``bytes`` fields are ``bytes``.
- ``first_release(fingerprint)`` names the oldest release snapshot holding a writer version
  (``None``: only the current code has it — it is unreleased).
- ``default_store()`` is the process-wide store for callers that do not build their own; module
  functions ``encode``/``decode``/``fingerprint`` delegate to it.
"""
from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fa_fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate as _fa_validate

from schemas.loader import RELEASED_DIR, SCHEMA_DIR, expand, load_dir, released_versions, short_name

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
CURRENT = "current"


class SerdeError(ValueError):
    """Base of every encode/decode error."""


class RecordValidationError(SerdeError):
    """A record does not match its schema (the message names the field)."""


class DecodeError(SerdeError):
    """Bytes that are not a well-formed single-object encoded Avro value."""


class UnknownFingerprintError(SerdeError):
    """The writer schema's fingerprint matches no current or released schema."""


class UnknownSchemaError(SerdeError, KeyError):
    """No schema of that name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def crc64_avro(data: bytes) -> bytes:
    """CRC-64-AVRO (Rabin) fingerprint of ``data``, 8 bytes little-endian (Avro spec)."""
    return bytes.fromhex(_fa_fingerprint(data.decode("utf-8"), "CRC-64-AVRO"))


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One parsed schema: its full name, release (``current`` or ``v<N>``), JSON and fingerprint."""

    name: str
    version: str
    schema: Mapping[str, Any]  # self-contained JSON (named types inlined)
    parsed: Any  # fastavro parsed schema
    canonical_form: str
    fingerprint: bytes


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def without_logical_types(node: Any) -> Any:
    """A copy of a schema JSON with every ``logicalType`` annotation dropped and the annotated
    primitive written bare (``{"type": "long", "logicalType": ...}`` -> ``"long"``): the same Parsing
    Canonical Form, which fastavro computes wrongly for an annotated primitive."""
    if isinstance(node, list):
        return [without_logical_types(n) for n in node]
    if isinstance(node, Mapping):
        if isinstance(node.get("type"), str) and node["type"] in _PRIMITIVES and "logicalType" in node:
            return node["type"]
        return {k: without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    return node


def _parse_set(schema_dir: Path, version: str) -> dict[str, SchemaVersion]:
    raw = load_dir(schema_dir)
    out: dict[str, SchemaVersion] = {}
    for name in raw:
        expanded = expand(name, raw)
        parsed = fastavro.parse_schema(without_logical_types(expanded))
        pcf = to_parsing_canonical_form(parsed)
        out[name] = SchemaVersion(name, version, expanded, parsed, pcf, crc64_avro(pcf.encode("utf-8")))
    return out


class SchemaStore:
    """Parsed schemas (current and released) and the single-object codec over them."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR, released_dir: Path | None = RELEASED_DIR) -> None:
        self._current: dict[str, SchemaVersion] = _parse_set(schema_dir, CURRENT)
        self._short: dict[str, str] = {}
        for name in self._current:
            if short_name(name) in self._short:
                raise SerdeError(f"short name {short_name(name)!r} is ambiguous")
            self._short[short_name(name)] = name
        by_fp: dict[bytes, SchemaVersion] = {}
        first: dict[bytes, str] = {}
        for version, path in released_versions(released_dir) if released_dir else []:
            for sv in _parse_set(path, version).values():
                by_fp.setdefault(sv.fingerprint, sv)
                first.setdefault(sv.fingerprint, version)
        self._first_release = first
        for sv in self._current.values():  # current wins for an unchanged schema
            by_fp[sv.fingerprint] = sv
        self._by_fp = by_fp

    # --- lookup ----------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Full names of all current schemas, sorted."""
        return tuple(sorted(self._current))

    def full_name(self, name: str | Mapping[str, Any]) -> str:
        """Resolve a full name, short name or schema dict to the current full name."""
        if isinstance(name, Mapping):
            ns = name.get("namespace")
            nm = str(name.get("name", ""))
            name = nm if "." in nm or not ns else f"{ns}.{nm}"
        if name in self._current:
            return name
        if name in self._short:
            return self._short[name]
        raise UnknownSchemaError(f"unknown schema {name!r}; known: {', '.join(sorted(self._short))}")

    def get(self, name: str | Mapping[str, Any]) -> SchemaVersion:
        """The current ``SchemaVersion`` of a schema."""
        return self._current[self.full_name(name)]

    def schema(self, name: str | Mapping[str, Any]) -> Mapping[str, Any]:
        """Self-contained schema JSON (named types inlined) of the current version."""
        return self.get(name).schema

    def fingerprint(self, name: str | Mapping[str, Any]) -> bytes:
        """8-byte little-endian CRC-64-AVRO fingerprint of the current schema."""
        return self.get(name).fingerprint

    def writer_versions(self) -> tuple[SchemaVersion, ...]:
        """Every schema version ``decode`` accepts (current and released, distinct fingerprints)."""
        return tuple(sorted(self._by_fp.values(), key=lambda sv: (sv.name, sv.version)))

    def first_release(self, fp: bytes) -> str | None:
        """The oldest release (``v1`` ...) holding the writer version ``fp``; None when unreleased."""
        return self._first_release.get(bytes(fp))

    # --- codec -----------------------------------------------------------------------------
    def encode(self, name: str | Mapping[str, Any], record: Mapping[str, Any]) -> bytes:
        """Single-object encode ``record`` with the current schema ``name``."""
        sv = self.get(name)
        if not isinstance(record, Mapping):
            raise RecordValidationError(f"{sv.name}: record must be a mapping, got {type(record).__name__}")
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(sv.fingerprint)
        try:
            fastavro.schemaless_writer(buf, sv.parsed, record, strict_allow_default=True)
        except Exception as exc:  # fastavro raises ValueError/TypeError/OverflowError/KeyError...
            raise RecordValidationError(f"{sv.name}: {_explain(sv, record, exc)}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Decode a single-object encoded value into ``(full name, record)`` (current reader schema)."""
        writer = self.writer_of(data)
        reader = self._current.get(writer.name)
        buf = io.BytesIO(memoryview(data)[HEADER_LEN:])
        try:
            record = fastavro.schemaless_reader(
                buf, writer.parsed, reader.parsed if reader is not None and reader is not writer else None
            )
        except Exception as exc:
            raise DecodeError(f"{writer.name} ({writer.version}): corrupt body: {type(exc).__name__}: {exc}") from exc
        rest = len(data) - HEADER_LEN - buf.tell()
        if rest:
            raise DecodeError(f"{writer.name} ({writer.version}): {rest} trailing bytes after the record")
        return writer.name, record  # type: ignore[return-value]

    def writer_of(self, data: bytes) -> SchemaVersion:
        """The writer ``SchemaVersion`` named by a single-object header."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        head = bytes(data[:HEADER_LEN])
        if len(head) < HEADER_LEN or head[:2] != MAGIC:
            raise DecodeError(
                f"not Avro single-object encoded (need marker C3 01 and an 8-byte fingerprint; got {head[:4].hex(' ')!r})"
            )
        fp = head[2:]
        try:
            return self._by_fp[fp]
        except KeyError:
            raise UnknownFingerprintError(
                f"unknown writer schema fingerprint {fp.hex()} (0x{struct.unpack('<Q', fp)[0]:016x}); "
                "not a current or released pingan schema"
            ) from None


def _explain(sv: SchemaVersion, record: Mapping[str, Any], exc: BaseException) -> str:
    """A message naming the offending field: fastavro's validator paths when it finds the problem."""
    try:
        _fa_validate(record, sv.parsed, raise_errors=True)
    except Exception as verr:  # ValidationError carries "pingan.Event.location.lat is <x> ... expected double"
        errors = getattr(verr, "errors", None) or [str(verr)]
        return "; ".join(str(e)[:300] for e in errors)
    return f"{type(exc).__name__}: {str(exc)[:300]}"


@lru_cache(maxsize=1)
def default_store() -> SchemaStore:
    """The store over the package's own schemas and releases (parsed on first call)."""
    return SchemaStore()


def encode(name: str | Mapping[str, Any], record: Mapping[str, Any]) -> bytes:
    """``default_store().encode``."""
    return default_store().encode(name, record)


def decode(data: bytes) -> tuple[str, dict[str, Any]]:
    """``default_store().decode``."""
    return default_store().decode(data)


def fingerprint(name: str | Mapping[str, Any]) -> bytes:
    """``default_store().fingerprint``."""
    return default_store().fingerprint(name)
