"""Identifiers mentioned in free text (110 narratives, grid descriptions, case summaries).

Contract: `extract_identifiers(text)` finds vehicle plates, phone numbers and resident ID numbers
that are *valid* (18-digit with a right check digit, or 15-digit legacy, returned upgraded to 18;
mobiles), returns them normalized (see identity.py), de-duplicated, in order of first appearance:
these are the in-text identifiers that get person keys. `find_identifier_spans(text)` gives the
(start, end, kind, value, keyed) spans in the *same* string (width-folded, length preserved) of
everything that must be masked: the keyed identifiers above and, with ``keyed=False``, anything
ID-shaped or phone-shaped that is not a valid identifier (a wrong check digit, a landline).

The masking rule (what is ID- or phone-shaped). The text is width-folded (full-width digits,
``＋``, ``－``, ``（）`` and the ideographic space count as their ASCII forms). A *number* is a
maximal run of digit groups joined by single separators (space, ``-``, ``.``, en/em dash),
optionally opened by ``+``; a group is never split. A run of consecutive groups of a number is
- **ID-shaped** when its digits are 17 digits + a digit or X (18) or 15 digits, the first digit is
  a province digit 1–8, the birth date in it is possible by shape (18: year 18xx/19xx/20xx; month
  01–12, day 01–31 — the check digit and the calendar are *not* checked); letters glued to it do
  not matter (``ID513221…`` is masked), but the run is whole groups, so the 19 digits of the case
  number ``J5132212026071400087`` are not an ID;
- **phone-shaped** when its digits are a mobile (``1[3-9]`` + 9 digits), optionally after ``86`` /
  ``0086`` / ``+86``, or a landline with its area code (``0`` + 2–3 digit area code + 7–8 digits,
  e.g. ``0837-6222110``; ``+86 837 6222110``), or a 7–8 digit local number (first digit 2–9)
  written right after a phone word (电话, 手机, 座机, 联系, 号码, tel); ``(0837)6222110`` with
  parentheses is a landline too.
Runs are taken greedily, longest first, left to right. Everything else stays: timestamps
(``20260714162311``, 14 digits), case numbers (letters attached, 19+ digits, ``〔2026〕第031号``),
admin codes (6/9/12 digits, not starting with 0), 20-digit device ids, amounts and decimals,
coordinates, IP addresses. Only valid IDs and mobiles are keyed (``keyed=True``); an invalid
ID-shaped number, a landline or a cue-word local number is masked and keyed by nothing.
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

_NUMBER_RE = re.compile(r"\+?\d+(?:[\s\-.–—]\d+)*(?:[\s\-]?[Xx](?![A-Za-z]))?")
_GROUP_RE = re.compile(r"\+?\d+[Xx]?|[Xx]")
_PAREN_LANDLINE_RE = re.compile(r"\(\s*(0\d{2,3})\s*\)\s*[\-.]?\s*([2-9]\d{2,3}(?:[\s\-.]?\d{3,4}))(?!\d)")
_PHONE_CUE_RE = re.compile(r"(?:电话|手机|座机|联系|号码|tel|TEL|Tel|phone|Phone)[^0-9]{0,4}$")
_MOBILE_RE = re.compile(r"1[3-9]\d{9}")
_LANDLINE_RE = re.compile(r"0(?:10|2\d|[3-9]\d{2})[2-9]\d{6,7}")
_LOCAL_RE = re.compile(r"[2-9]\d{6,7}")
_PLATE_RE = re.compile(
    rf"[{PLATE_PROVINCES}][ ·•・\-]?[A-Za-z][ ·•・\-]?[A-Za-z0-9]{{4,6}}(?:[挂学警港澳领试超])?(?![A-Za-z0-9])"
)


@dataclass(frozen=True, slots=True)
class Span:
    """A found identifier: its span in the scanned string, kind and value.

    `keyed` spans carry the normalized, valid identifier (it gets a person key); the others carry
    the digits as written (an ID-shaped or phone-shaped number that is masked, never keyed)."""

    start: int
    end: int
    kind: str  # "id" | "phone" | "plate"
    value: str
    keyed: bool = True


@dataclass(frozen=True, slots=True)
class Identifiers:
    """Normalized identifiers found in a text."""

    plates: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    id_numbers: list[str] = field(default_factory=list)


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in taken)


def _possible_date(month: str, day: str) -> bool:
    return 1 <= int(month) <= 12 and 1 <= int(day) <= 31


def _id_shaped(digits: str) -> bool:
    """18 (17 digits + digit/X) or 15 digits, province digit first, a birth date possible by shape."""
    if digits[:1] not in "12345678" or not digits[:-1].isdigit():
        return False
    if len(digits) == 18 and (digits[-1].isdigit() or digits[-1] == "X"):
        return digits[6:8] in ("18", "19", "20") and _possible_date(digits[10:12], digits[12:14])
    if len(digits) == 15 and digits.isdigit():
        return _possible_date(digits[8:10], digits[10:12])
    return False


def _phone_shaped(digits: str, plus: bool) -> str | None:
    """The national number when `digits` spell a mobile or a landline with area code, else None."""
    if not digits.isdigit():
        return None
    if plus:
        if not digits.startswith("86"):
            return None
        digits = digits[2:]
        if not digits.startswith("1"):
            digits = "0" + digits  # +86 837 6222110: the area code loses its trunk 0
    elif digits.startswith("0086"):
        digits = digits[4:]
        if not digits.startswith("1"):
            digits = "0" + digits
    elif digits.startswith("86") and len(digits) == 13 and _MOBILE_RE.fullmatch(digits[2:]):
        digits = digits[2:]
    if _MOBILE_RE.fullmatch(digits) or _LANDLINE_RE.fullmatch(digits):
        return digits
    return None


def _number_spans(folded: str) -> list[Span]:
    """ID- and phone-shaped runs of groups in every number of the folded text (see the rule)."""
    out: list[Span] = []
    for m in _NUMBER_RE.finditer(folded):
        if m.start() > 0 and folded[m.start() - 1].isdigit():
            continue  # cannot happen with a maximal match, kept for safety
        before = folded[m.start() - 1] if m.start() > 0 else ""
        after = folded[m.end()] if m.end() < len(folded) else ""
        letter_touch = before.isascii() and before.isalpha() or after.isascii() and after.isalpha()
        if after == "." and m.end() + 1 < len(folded) and folded[m.end() + 1].isdigit():
            letter_touch = True  # never read the integer part of a decimal as an identifier
        groups = [(g.start() + m.start(), g.end() + m.start(), g.group(0)) for g in _GROUP_RE.finditer(m.group(0))]
        i = 0
        while i < len(groups):
            found: Span | None = None
            for j in range(len(groups) - 1, i - 1, -1):
                parts = [g[2] for g in groups[i:j + 1]]
                if any(p[-1] in "Xx" for p in parts[:-1]) or (j > i and any(p.startswith("+") for p in parts[1:])):
                    continue
                plus = parts[0].startswith("+")
                digits = "".join(parts).lstrip("+").upper()
                if len(digits) > 20:
                    continue
                start, end = groups[i][0], groups[j][1]
                if not plus and _id_shaped(digits):
                    valid = normalize_id_number(digits)
                    # glued to letters (ID513221…, a code): masked, never keyed
                    found = Span(start, end, "id", valid or digits, keyed=bool(valid) and not letter_touch)
                    break
                if digits.endswith("X"):
                    continue
                phone = _phone_shaped(digits, plus)
                if phone is not None:
                    mobile = phone.startswith("1")
                    found = Span(start, end, "phone", phone, keyed=mobile)
                    break
                if (i == 0 and j == len(groups) - 1 and not plus and _LOCAL_RE.fullmatch(digits)
                        and j - i <= 1 and _PHONE_CUE_RE.search(folded[max(0, start - 8):start])):
                    found = Span(start, end, "phone", digits, keyed=False)
                    break
            if found is not None:
                out.append(found)
                i = next(k for k in range(i, len(groups)) if groups[k][1] == found.end) + 1
            else:
                i += 1
    return out


def find_identifier_spans(text: str | None) -> list[Span]:
    """Every identifier to mask in `text` (keyed or not), as non-overlapping spans sorted by position."""
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
    for m in _PAREN_LANDLINE_RE.finditer(folded):
        digits = re.sub(r"\D", "", m.group(1) + m.group(2))
        if _LANDLINE_RE.fullmatch(digits):
            spans.append(Span(m.start(), m.end(), "phone", digits, keyed=False))
            taken.append((m.start(), m.end()))
    for s in _number_spans(folded):
        if not _overlaps((s.start, s.end), taken):
            spans.append(s)
            taken.append((s.start, s.end))
    for m in _PLATE_RE.finditer(simple):
        value = normalize_plate(m.group(0))
        if value and not _overlaps((m.start(), m.end()), taken):
            spans.append(Span(m.start(), m.end(), "plate", value))
            taken.append((m.start(), m.end()))
    return sorted(spans, key=lambda s: s.start)


def extract_identifiers(text: str | None) -> Identifiers:
    """Valid plates, mobile phones and ID numbers mentioned in `text`, normalized and de-duplicated."""
    out = Identifiers()
    buckets = {"plate": out.plates, "phone": out.phones, "id": out.id_numbers}
    for span in find_identifier_spans(text):
        if not span.keyed:
            continue
        bucket = buckets[span.kind]
        if span.value not in bucket:
            bucket.append(span.value)
    return out
