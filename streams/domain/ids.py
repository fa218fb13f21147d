"""Deterministic identifiers.

Contract: ``event_id(source, native_id) == f"{source}:{native_id}"`` (source lower-case);
`sha1_hex(*parts)` hashes the parts joined by ``|`` (UTF-8), so equal inputs give equal ids on
every run and every machine.
"""
from __future__ import annotations

import hashlib


def event_id(source: str, native_id: str) -> str:
    """The canonical event id: ``<source>:<native_id>``."""
    src = source.strip().lower()
    nid = str(native_id).strip()
    if not src or not nid:
        raise ValueError("event_id needs a non-empty source and native_id")
    return f"{src}:{nid}"


def sha1_hex(*parts: str) -> str:
    """Hex SHA-1 of the parts joined with ``|``."""
    return hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()


def short_sha1(*parts: str, length: int = 16) -> str:
    """The first `length` hex chars of `sha1_hex(*parts)`."""
    return sha1_hex(*parts)[:length]


def link_id(event_a: str, event_b: str) -> str:
    """Link id per contracts.md: sha1(min|max), first 20 hex chars."""
    a, b = sorted((event_a, event_b))
    return sha1_hex(a, b)[:20]


def incident_id(root_event_id: str) -> str:
    """Incident id per contracts.md: ``inc-`` + sha1(root event id), first 16 hex chars."""
    return "inc-" + sha1_hex(root_event_id)[:16]
