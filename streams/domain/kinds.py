"""The canonical event kinds and severities (1 low … 4 critical), and the generic rules on them.

Contract: `KINDS` is the vocabulary of `Event.kind` (contracts.md); `DEFAULT_SEVERITY` has one
entry per kind. Sources map their own codes to a `Classification` in their folder
(`connectors/sources/<feed>/codes.py`); the rules every source shares live here: keyword
refinements (`refine`, e.g. 家暴 in a dispute narrative makes it domestic violence), a source level
where 1 is most serious (`with_level`: GB AlarmPriority, 110 JQJB → severity 5 − level) and
keyword tables (`by_keywords`).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

KINDS: tuple[str, ...] = (
    "dispute", "domestic_violence", "criminal", "theft", "public_order", "traffic", "fire",
    "rescue", "medical", "help", "mass_gathering", "disaster", "intrusion", "vehicle_sighting",
    "person_sighting", "device", "other",
)

DEFAULT_SEVERITY: dict[str, int] = {
    "dispute": 2, "domestic_violence": 3, "criminal": 3, "theft": 2, "public_order": 2,
    "traffic": 2, "fire": 4, "rescue": 4, "medical": 3, "help": 2, "mass_gathering": 4,
    "disaster": 4, "intrusion": 3, "vehicle_sighting": 1, "person_sighting": 1, "device": 1,
    "other": 1,
}


class Classification(NamedTuple):
    """A canonical kind and its severity (1 low … 4 critical)."""

    kind: str
    severity: int


# ---------------------------------------------------------------- keyword refinements
# (applies to kinds, keywords, result): the first matching row wins.
KEYWORD_REFINEMENTS: tuple[tuple[frozenset[str], tuple[str, ...], Classification], ...] = (
    (frozenset({"dispute", "public_order", "criminal", "help", "other"}),
     ("家暴", "家庭暴力"), Classification("domestic_violence", 3)),
    (frozenset({"criminal"}), ("盗", "偷", "扒窃"), Classification("theft", 2)),
    (frozenset({"fire", "help", "other"}), ("落水", "溺水", "被困", "坠崖", "走失"), Classification("rescue", 4)),
)


#: A keyword table: the first row whose words occur in the text gives the classification.
KeywordTable = tuple[tuple[tuple[str, ...], Classification], ...]


def refine(c: Classification, *texts: str | None) -> Classification:
    """Apply the shared keyword refinements to a classification, given the record's texts."""
    blob = " ".join(t for t in texts if t)
    if not blob:
        return c
    for kinds, words, result in KEYWORD_REFINEMENTS:
        if c.kind in kinds and any(w in blob for w in words):
            return result
    return c


def with_level(c: Classification, level: int | None) -> Classification:
    """Apply a source level where 1 is the most serious (GB AlarmPriority, 110 JQJB)."""
    if level is not None and 1 <= int(level) <= 4:
        return Classification(c.kind, 5 - int(level))
    return c


def by_keywords(table: KeywordTable, texts: Iterable[str | None]) -> Classification | None:
    """The first row of `table` whose words occur in one of the texts, or None."""
    present = [t for t in texts if t]
    for words, result in table:
        if any(w in t for w in words for t in present):
            return result
    return None


def default(kind: str) -> Classification:
    """A kind at its default severity."""
    return Classification(kind, DEFAULT_SEVERITY[kind])
