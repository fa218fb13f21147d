"""Address normalization for same-address matching.

Contract: `normalize_address(addr)` → `clean_text`, all spaces removed, leading 中国/四川省/
阿坝(藏族羌族自治)州/汶川县 prefixes stripped, Chinese numerals before 栋/幢/单元/组/号楼 turned into
digits, 幢/号楼/座 → 栋, ``N-M-R`` → ``N栋M单元R室``, and the room after 栋/单元 ending in 号/室/房
or nothing → ``R室`` (``1幢3单元302号`` and ``1栋3单元302室`` both give ``1栋3单元302室``);
None for empty input. `address_key(addr)` additionally drops a leading town name (威州镇金竹苑… and
金竹苑… match) and punctuation, and is None unless the address has a house-level detail (a digit),
so a bare village name never counts as "the same address". `village_in_address` finds a gazetteer
village (or town) named in the address.
"""
from __future__ import annotations

from functools import lru_cache

import re

from streams.domain import gazetteer
from streams.domain.gazetteer import Place
from streams.domain.text import clean_text

_PREFIXES: tuple[str, ...] = (
    "中华人民共和国", "中国", "四川省", "阿坝藏族羌族自治州", "阿坝州", "汶川县",
)
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5,
              "六": 6, "七": 7, "八": 8, "九": 9}
_CN_NUM_BEFORE_UNIT = re.compile(r"([零〇一二两三四五六七八九十]{1,3})(?=(?:号楼|栋|幢|单元|组))")
_BUILDING = re.compile(r"(\d+)(?:号楼|幢|座|栋)")
_DASHED = re.compile(r"(?<![\d-])(\d{1,3})-(\d{1,2})-(\d{3,4})(?:号|室|房)?(?![\d-])")
_ROOM_AFTER_UNIT = re.compile(r"(单元)(\d{3,4})(?:号|室|房)?(?![\d号室房])")
_ROOM_AFTER_BUILDING = re.compile(r"(栋)(\d{3,4})(?:号|室|房)?(?![\d号室房单])")
_PUNCT = re.compile(r"[\s,，。.、;；:：()（）\[\]【】#\-—_/\\'\"“”‘’]+")


def _cn_to_int(s: str) -> int:
    """Small Chinese numerals (up to 99): 三 → 3, 十二 → 12, 二十 → 20."""
    if "十" in s:
        tens, _, ones = s.partition("十")
        return (_CN_DIGITS.get(tens, 1) if tens else 1) * 10 + (_CN_DIGITS.get(ones, 0) if ones else 0)
    value = 0
    for ch in s:
        value = value * 10 + _CN_DIGITS[ch]
    return value


def _strip_prefixes(s: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if s.startswith(p) and len(s) > len(p):
                s = s[len(p):]
                changed = True
        if s.startswith("四川") and s[2:4] in ("阿坝", "汶川"):
            s, changed = s[2:], True
    return s


@lru_cache(maxsize=65536)  # pure; devices and addresses repeat, so most calls hit
def normalize_address(addr: str | None) -> str | None:
    """Normalized address text (see module contract), or None when empty."""
    s = re.sub(r"\s+", "", clean_text(addr))
    if not s:
        return None
    s = _strip_prefixes(s)
    s = _CN_NUM_BEFORE_UNIT.sub(lambda m: str(_cn_to_int(m.group(1))), s)
    s = _DASHED.sub(lambda m: f"{m.group(1)}栋{m.group(2)}单元{m.group(3)}室", s)
    s = _BUILDING.sub(r"\1栋", s)
    s = _ROOM_AFTER_UNIT.sub(r"\1\2室", s)
    s = _ROOM_AFTER_BUILDING.sub(r"\1\2室", s)
    return s or None


def address_key(addr: str | None) -> str | None:
    """Key for exact same-address matching, or None when the address is too vague."""
    s = normalize_address(addr)
    if not s:
        return None
    for town in gazetteer.TOWNS:
        if s.startswith(town.name) and len(s) > len(town.name):
            s = s[len(town.name):]
            break
    s = _PUNCT.sub("", s)
    if not any(ch.isdigit() for ch in s):
        return None
    return s


@lru_cache(maxsize=65536)  # pure; devices and addresses repeat, so most calls hit
def village_in_address(addr: str | None) -> Place | None:
    """The gazetteer village named in the address, else the town named in it, else None."""
    s = normalize_address(addr)
    if not s:
        return None
    for v in gazetteer.VILLAGES:
        if v.name in s:
            return v
    for t in gazetteer.TOWNS:
        if t.name in s:
            return t
    return None
