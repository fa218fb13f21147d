"""Geodesy for the bus: Chinese map datums → WGS-84, distances, H3 cells, nearest village.

Contract:
- `wgs84_to_gcj02` is the standard published GCJ-02 forward transform (Krasovsky 1940 ellipsoid,
  a = 6378245 m, e² = 0.00669342162296594323); points outside China are returned unchanged.
- `gcj02_to_wgs84` / `bd09_to_wgs84` invert it by fixed-point iteration until the forward
  transform of the result is within 1e-9° (~0.1 mm) of the input, so round-trip error << 0.5 m.
- `haversine_m` uses the mean Earth radius 6 371 008.8 m.
- `h3_cell` is the H3 cell at resolution 8 (~0.7 km²); `h3_neighbours` is the cell and its ring.
- `nearest_place` returns the nearest gazetteer village (and its town) with the distance in metres.
All functions take and return (lat, lon) in degrees.
"""
from __future__ import annotations

from functools import lru_cache

import math
from dataclasses import dataclass

import h3

from streams.domain import gazetteer
from streams.domain.gazetteer import Place

_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = math.pi * 3000.0 / 180.0
_EARTH_R = 6371008.8
H3_RES = 8
_EPS_DEG = 1e-9
_MAX_ITER = 30


def out_of_china(lat: float, lon: float) -> bool:
    """True outside the rough bounding box where GCJ-02 applies."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _transform_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _transform_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 → GCJ-02 (the published forward algorithm)."""
    if out_of_china(lat, lon):
        return lat, lon
    dlat = _transform_lat(lon - 105.0, lat - 35.0)
    dlon = _transform_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * math.pi
    magic = math.sin(radlat)
    magic = 1 - _EE * magic * magic
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * math.cos(radlat) * math.pi)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 → WGS-84, iterated until the forward transform reproduces the input (< 1e-9°)."""
    if out_of_china(lat, lon):
        return lat, lon
    wlat, wlon = lat, lon
    for _ in range(_MAX_ITER):
        glat, glon = wgs84_to_gcj02(wlat, wlon)
        dlat, dlon = glat - lat, glon - lon
        if abs(dlat) < _EPS_DEG and abs(dlon) < _EPS_DEG:
            break
        wlat -= dlat
        wlon -= dlon
    return wlat, wlon


def gcj02_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 → BD-09 (Baidu's published forward transform)."""
    x, y = lon, lat
    z = math.sqrt(x * x + y * y) + 0.00002 * math.sin(y * _X_PI)
    theta = math.atan2(y, x) + 0.000003 * math.cos(x * _X_PI)
    return z * math.sin(theta) + 0.006, z * math.cos(theta) + 0.0065


def bd09_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """BD-09 → GCJ-02, iterated until `gcj02_to_bd09` reproduces the input (< 1e-9°)."""
    x, y = lon - 0.0065, lat - 0.006
    z = math.sqrt(x * x + y * y) - 0.00002 * math.sin(y * _X_PI)
    theta = math.atan2(y, x) - 0.000003 * math.cos(x * _X_PI)
    glat, glon = z * math.sin(theta), z * math.cos(theta)
    for _ in range(_MAX_ITER):
        blat, blon = gcj02_to_bd09(glat, glon)
        dlat, dlon = blat - lat, blon - lon
        if abs(dlat) < _EPS_DEG and abs(dlon) < _EPS_DEG:
            break
        glat -= dlat
        glon -= dlon
    return glat, glon


def wgs84_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 → BD-09 (via GCJ-02); for tests and the simulator."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lat, lon))


def bd09_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """BD-09 → WGS-84 (via GCJ-02), both steps iterated to < 1e-9°."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lat, lon))


def to_wgs84(lat: float, lon: float, coord_system: str | None) -> tuple[float, float]:
    """Convert from "WGS84" | "GCJ02" | "BD09" (case/punctuation-insensitive; None = WGS84)."""
    cs = (coord_system or "WGS84").upper().replace("-", "").replace("_", "").strip()
    if cs in ("WGS84", "WGS", "GPS", ""):
        return lat, lon
    if cs in ("GCJ02", "GCJ", "MARS"):
        return gcj02_to_wgs84(lat, lon)
    if cs in ("BD09", "BD09LL", "BAIDU"):
        return bd09_to_wgs84(lat, lon)
    raise ValueError(f"unknown coord_system {coord_system!r}")


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_R * math.asin(min(1.0, math.sqrt(a)))


def valid_latlon(lat: float | None, lon: float | None) -> bool:
    """True for finite, in-range coordinates that are not the (0, 0) placeholder."""
    if lat is None or lon is None:
        return False
    try:
        lat_f, lon_f = float(lat), float(lon)
    except (TypeError, ValueError):
        return False
    if not (math.isfinite(lat_f) and math.isfinite(lon_f)):
        return False
    if lat_f == 0.0 and lon_f == 0.0:
        return False
    return -90.0 <= lat_f <= 90.0 and -180.0 <= lon_f <= 180.0


@lru_cache(maxsize=65536)  # pure; devices and addresses repeat, so most calls hit
def h3_cell(lat: float, lon: float, res: int = H3_RES) -> str:
    """The H3 cell (resolution 8 by default) containing the point."""
    return str(h3.latlng_to_cell(lat, lon, res))


def h3_neighbours(cell: str, k: int = 1) -> list[str]:
    """The cell and every cell within k rings of it, sorted (deterministic)."""
    return sorted(str(c) for c in h3.grid_disk(cell, k))


@dataclass(frozen=True, slots=True)
class NearestPlace:
    """The nearest gazetteer village, its town and the distance to it in metres."""

    village: Place
    town: Place
    distance_m: float


@lru_cache(maxsize=65536)  # pure; devices and addresses repeat, so most calls hit
def nearest_place(lat: float, lon: float, max_distance_m: float | None = None) -> NearestPlace | None:
    """Nearest village in the gazetteer (None if none within `max_distance_m`, when given)."""
    best: tuple[float, Place] | None = None
    for v in gazetteer.VILLAGES:
        d = haversine_m(lat, lon, v.lat, v.lon)
        if best is None or d < best[0] or (d == best[0] and v.code < best[1].code):
            best = (d, v)
    if best is None:
        return None
    dist, village = best
    if max_distance_m is not None and dist > max_distance_m:
        return None
    town = gazetteer.place(village.parent)
    if town is None:  # gazetteer invariant: every village has a town
        return None
    return NearestPlace(village=village, town=town, distance_m=dist)
