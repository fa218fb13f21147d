"""Admin division codes (行政区划代码): levels, ancestry, cleaning — the one home of that logic (pure).

Contract:
- A code is a digit string of 2 (province), 4 (prefecture), 6 (county), 9 (town) or 12 (village)
  digits (`LEVELS`); a code's first n digits are its ancestor at level n (``513221107201`` lies in
  ``513221107`` 三江镇, ``513221`` 汶川县, ``5132`` 阿坝州, ``51`` 四川省).
- `levels(code)` is every ancestor-or-self code of a digit string (its ``admin_path``), coarsest
  first; `levels_of(codes)` their sorted union; `within(code, area)` is ``area in levels(code)``.
- `prefix(code, level)` is the level-n ancestor (None when the code is shorter); `split(code)` the
  (county, town, village) ancestors of a digit string; `common(codes)` the deepest village, town
  or county code all codes share.
- `clean(value)` turns a native value (``"513221107000"``, ``"5132 2110 7201"``) into a 6/9/12-digit
  code with the zero padding of an unused level removed, or None when fewer than 6 digits remain.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

PROVINCE, PREFECTURE, COUNTY, TOWN, VILLAGE = 2, 4, 6, 9, 12
LEVELS: tuple[int, ...] = (PROVINCE, PREFECTURE, COUNTY, TOWN, VILLAGE)
"""Lengths of province, prefecture, county, town and village codes."""

_NON_DIGIT = re.compile(r"\D")


def is_code(code: object) -> bool:
    """True for a digit string of a known level length (2, 4, 6, 9 or 12)."""
    return isinstance(code, str) and code.isdigit() and len(code) in LEVELS


def prefix(code: str | None, level: int) -> str | None:
    """The first `level` characters of `code` (its ancestor at that level); None when it is shorter."""
    return code[:level] if code and len(code) >= level else None


def split(code: str | None) -> tuple[str | None, str | None, str | None]:
    """(county, town, village) codes contained in a digit string of 6, 9 or 12 digits."""
    if not code or not code.isdigit():
        return None, None, None
    return prefix(code, COUNTY), prefix(code, TOWN), prefix(code, VILLAGE)


def levels(code: str | None) -> list[str]:
    """Every ancestor-or-self code: ``513221107201`` → 51, 5132, 513221, 513221107, 513221107201."""
    if not code or not code.isdigit():
        return []
    return [code[:n] for n in LEVELS if n <= len(code)]


def levels_of(codes: Iterable[str | None]) -> list[str]:
    """Sorted (by level, then code) union of `levels` over several codes."""
    out: set[str] = set()
    for code in codes:
        out.update(levels(code))
    return sorted(out, key=lambda c: (len(c), c))


def within(code: str | None, area: str) -> bool:
    """True when `code` lies at or below `area` (``area`` is one of its `levels`)."""
    return bool(code) and area in levels(code)


def common(codes: Iterable[str]) -> str | None:
    """Deepest village (12), town (9) or county (6) code shared by all (non-empty) codes, else None."""
    found = [c for c in codes if c]
    for level in (VILLAGE, TOWN, COUNTY):
        if found and all(len(c) >= level for c in found) and len({c[:level] for c in found}) == 1:
            return found[0][:level]
    return None


def clean(value: object) -> str | None:
    """6/9/12-digit admin code with the zero padding of unused levels removed, or None."""
    s = _NON_DIGIT.sub("", str(value or ""))
    if len(s) < COUNTY:
        return None
    s = s[:VILLAGE] if len(s) >= VILLAGE else s[:TOWN] if len(s) >= TOWN else s[:COUNTY]
    if len(s) == VILLAGE and s[TOWN:] == "000":
        s = s[:TOWN]
    if len(s) == TOWN and s[COUNTY:] == "000":
        s = s[:COUNTY]
    return s
