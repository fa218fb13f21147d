"""Real-world noise: coordinate systems, character forms, phone and ID-number formats.

The coordinate transforms are the standard published forward transforms (WGS-84 → GCJ-02 of the
Chinese "Mars" offset, GCJ-02 → BD-09 of Baidu); they and the great-circle distance are
`streams/domain/geo.py`'s, re-exported here for the simulator's modules.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

# the apps' forward transforms (WGS-84 → GCJ-02 → BD-09) are the ones the normalizer inverts
from streams.domain.geo import gcj02_to_bd09, haversine_m, wgs84_to_bd09, wgs84_to_gcj02  # noqa: F401 - re-exported


ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def offset_m(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """Move a point by metres north/east (small distances)."""
    dlat = north_m / 111_320.0
    dlon = east_m / (111_320.0 * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


# --- ID numbers (GB 11643) -------------------------------------------------------------------

def id_check_digit(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS)) % 11]


def make_id_number(region: str, birth: str, seq: int) -> str:
    """A valid 18-digit ID: 6-digit region, YYYYMMDD, 3-digit sequence, check character."""
    first = f"{region}{birth}{seq:03d}"
    return first + id_check_digit(first)


def id_to_legacy15(id18: str) -> str:
    """The 15-digit legacy form (pre-1999): drop the century and the check character."""
    return id18[:6] + id18[8:17]


def id_wrong_check(id18: str) -> str:
    """The same ID with a mistyped (wrong) check character."""
    good = id18[-1]
    alt = "0123456789X"
    bad = alt[(alt.index(good) + 3) % len(alt)]
    return id18[:-1] + bad


# --- phones ----------------------------------------------------------------------------------

PHONE_STYLES = ("plain", "spaced", "plus86_dashed", "0086", "plus86", "dashed")


def format_phone(phone: str, style: str) -> str:
    """Format an 11-digit mobile (or a landline with area code, untouched) in a given style."""
    if not (len(phone) == 11 and phone.startswith("1")):
        return phone
    a, b, c = phone[:3], phone[3:7], phone[7:]
    return {
        "plain": phone,
        "spaced": f"{a} {b} {c}",
        "plus86_dashed": f"+86 {a}-{b}-{c}",
        "0086": f"0086 {phone}",
        "plus86": f"+86{phone}",
        "dashed": f"{a}-{b}-{c}",
    }[style]


# --- text ------------------------------------------------------------------------------------

_FW = str.maketrans("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", "０１２３４５６７８９ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ")


def to_fullwidth(text: str) -> str:
    """Replace ASCII digits and capital letters with their full-width forms."""
    return text.translate(_FW)


@dataclass
class TextNoise:
    """Simplified → traditional conversion (OpenCC, loaded lazily per instance)."""

    _conv: Any = field(default=None, repr=False)

    def traditional(self, text: str) -> str:
        """The text in traditional characters."""
        if self._conv is None:
            import opencc

            self._conv = opencc.OpenCC("s2t")
        return str(self._conv.convert(text))


@dataclass(frozen=True, slots=True)
class NoiseRates:
    """Probabilities of each kind of noise in background events."""

    traditional: float = 0.05
    fullwidth: float = 0.05
    id_missing: float = 0.15
    id_wrong_check: float = 0.06
    id_legacy15: float = 0.07
    duplicate: float = 0.02
    late: float = 0.02


def noisy_id(rng: random.Random, id18: str, rates: NoiseRates) -> str:
    """An ID number as a clerk or an app might record it: missing, mistyped, 15-digit, or fine."""
    r = rng.random()
    if r < rates.id_missing:
        return ""
    r -= rates.id_missing
    if r < rates.id_wrong_check:
        return id_wrong_check(id18)
    r -= rates.id_wrong_check
    if r < rates.id_legacy15 and id18[6:8] == "19":
        return id_to_legacy15(id18)
    if id18.endswith("X") and rng.random() < 0.3:
        return id18[:-1] + "x"
    return id18


def noisy_text(rng: random.Random, text: str, rates: NoiseRates, tn: TextNoise) -> str:
    """Sometimes traditional characters, sometimes full-width digits."""
    if rng.random() < rates.traditional:
        text = tn.traditional(text)
    if rng.random() < rates.fullwidth:
        text = to_fullwidth(text)
    return text
