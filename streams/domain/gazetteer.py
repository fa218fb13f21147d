"""Wenchuan County (汶川县, 513221) admin hierarchy and reference points.

Pure data plus lookups. Town codes are NBS 9-digit codes (DESIGN.md §9); village codes are the
town code followed by a 3-digit village number (2xx = village committees). Coordinates other than
the county seat, 映秀 and 绵虒 are approximate, as DESIGN.md §9 allows. WGS-84 throughout.
"""
from __future__ import annotations

from dataclasses import dataclass


PROVINCE_CODE = "51"        # 四川省
PREFECTURE_CODE = "5132"    # 阿坝藏族羌族自治州
COUNTY_CODE = "513221"      # 汶川县
COUNTY_NAME = "汶川县"


@dataclass(frozen=True, slots=True)
class Place:
    """A town or village: its code, name, parent code and a WGS-84 reference point."""

    code: str
    name: str
    parent: str
    lat: float
    lon: float


TOWNS: tuple[Place, ...] = (
    Place("513221100", "威州镇", COUNTY_CODE, 31.4800, 103.5900),
    Place("513221102", "映秀镇", COUNTY_CODE, 31.0540, 103.4870),
    Place("513221103", "卧龙镇", COUNTY_CODE, 31.0450, 103.2000),
    Place("513221105", "水磨镇", COUNTY_CODE, 31.0300, 103.4000),
    Place("513221106", "漩口镇", COUNTY_CODE, 30.9990, 103.4650),
    Place("513221107", "三江镇", COUNTY_CODE, 31.0950, 103.3550),
    Place("513221108", "耿达镇", COUNTY_CODE, 30.9900, 103.2900),
    Place("513221109", "绵虒镇", COUNTY_CODE, 31.3620, 103.4970),
    Place("513221111", "灞州镇", COUNTY_CODE, 31.5900, 103.6200),
)

# (town code, village number, name, lat, lon) — a few villages per town, approximate points
# a few kilometres from the town centre.
_VILLAGES: tuple[tuple[str, str, str, float, float], ...] = (
    ("513221100", "201", "七盘沟村", 31.4560, 103.5720),
    ("513221100", "202", "布瓦村", 31.4960, 103.6030),
    ("513221100", "203", "姜维城村", 31.4870, 103.5770),
    ("513221102", "201", "渔子溪村", 31.0620, 103.4650),
    ("513221102", "202", "中滩堡村", 31.0460, 103.4960),
    ("513221102", "203", "张家山村", 31.0700, 103.5050),
    ("513221103", "201", "卧龙关村", 31.0320, 103.1750),
    ("513221103", "202", "足木山村", 31.0560, 103.2250),
    ("513221105", "201", "老人村", 31.0420, 103.3850),
    ("513221105", "202", "白果坪村", 31.0180, 103.4150),
    ("513221106", "201", "水田坪村", 30.9880, 103.4520),
    ("513221106", "202", "蒲溪村", 31.0120, 103.4790),
    ("513221107", "201", "柒山村", 31.1080, 103.3420),
    ("513221107", "202", "草坪村", 31.0850, 103.3700),
    ("513221107", "203", "席草村", 31.1000, 103.3700),
    ("513221108", "201", "幸福村", 30.9800, 103.2750),
    ("513221108", "202", "龙潭村", 31.0020, 103.3050),
    ("513221109", "201", "羌锋村", 31.3500, 103.4880),
    ("513221109", "202", "高店村", 31.3750, 103.5050),
    ("513221111", "201", "克枯村", 31.5750, 103.6100),
    ("513221111", "202", "大寺村", 31.6050, 103.6300),
)

VILLAGES: tuple[Place, ...] = tuple(
    Place(town + num, name, town, lat, lon) for town, num, name, lat, lon in _VILLAGES
)

_BY_CODE: dict[str, Place] = {p.code: p for p in TOWNS + VILLAGES}


def place(code: str) -> Place | None:
    """The town or village with this exact code, if known."""
    return _BY_CODE.get(code)


def villages_of(town_code: str) -> tuple[Place, ...]:
    """Villages under a town, in code order."""
    return tuple(v for v in VILLAGES if v.parent == town_code)


def name_of(code: str | None) -> str | None:
    """Human name of a county, town or village code."""
    if code == COUNTY_CODE:
        return COUNTY_NAME
    p = _BY_CODE.get(code or "")
    return p.name if p else None
