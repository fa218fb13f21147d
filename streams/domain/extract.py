"""Identifiers mentioned in free text (110 narratives, grid descriptions, case summaries).

Contract: `extract_identifiers(text)` finds vehicle plates, mobile phone numbers and resident ID
numbers (18-digit with a valid check digit, or 15-digit legacy, returned upgraded to 18), returns
them normalized (see identity.py), de-duplicated, in order of first appearance. Full-width digits,
lower-case letters, and spaces/dashes inside phone numbers and plates are tolerated.
`find_identifier_spans(text)` gives the (start, end, kind, normalized) spans in the *same* string
(width-folded, length preserved), for redaction.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from streams.domain.identity import (
    PLATE_PROVINCES,
    normalize_id_number,
    normalize_phone,
    normalize_plate,
)
from streams.domain.text import fold_width, to_simplified

_ID_RE = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")
_PHONE_RE = re.compile(r"(?<![0-9])(?:(?:\+|00)?86[\s\-]?)?(1[3-9]\d(?:[\s\-]?\d){8})(?![0-9])")
_PLATE_RE = re.compile(
    rf"[{PLATE_PROVINCES}][ ·•・\-]?[A-Za-z][ ·•・\-]?[A-Za-z0-9]{{4,6}}(?:[挂学警港澳领试超])?(?![A-Za-z0-9])"
)


@dataclass(frozen=True, slots=True)
class Span:
    """A found identifier: its span in the scanned string, kind and normalized value."""

    start: int
    end: int
    kind: str  # "id" | "phone" | "plate"
    value: str


@dataclass(frozen=True, slots=True)
class Identifiers:
    """Normalized identifiers found in a text."""

    plates: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    id_numbers: list[str] = field(default_factory=list)


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in taken)


def find_identifier_spans(text: str | None) -> list[Span]:
    """All valid identifiers in `text`, as non-overlapping spans sorted by position."""
    if not text:
        return []
    folded = fold_width(text)
    # Plates start with a province character; converting to simplified keeps the length for
    # single characters (遼 → 辽), so spans stay valid.
    simple = to_simplified(folded)
    if len(simple) != len(folded):
        simple = folded
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []
    for m in _ID_RE.finditer(folded):
        value = normalize_id_number(m.group(1))
        if value:
            spans.append(Span(m.start(), m.end(), "id", value))
            taken.append((m.start(), m.end()))
    for m in _PHONE_RE.finditer(folded):
        value = normalize_phone(m.group(1))
        if value and not _overlaps((m.start(), m.end()), taken):
            spans.append(Span(m.start(), m.end(), "phone", value))
            taken.append((m.start(), m.end()))
    for m in _PLATE_RE.finditer(simple):
        value = normalize_plate(m.group(0))
        if value and not _overlaps((m.start(), m.end()), taken):
            spans.append(Span(m.start(), m.end(), "plate", value))
            taken.append((m.start(), m.end()))
    return sorted(spans, key=lambda s: s.start)


def extract_identifiers(text: str | None) -> Identifiers:
    """Plates, mobile phones and ID numbers mentioned in `text`, normalized and de-duplicated."""
    out = Identifiers()
    buckets = {"plate": out.plates, "phone": out.phones, "id": out.id_numbers}
    for span in find_identifier_spans(text):
        bucket = buckets[span.kind]
        if span.value not in bucket:
            bucket.append(span.value)
    return out
