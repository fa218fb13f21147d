from __future__ import annotations

import pytest

from streams.domain import geo

WEIZHOU = (31.4788, 103.5912)  # 威州镇, WGS-84


# Published reference pairs (WGS-84 → GCJ-02) used by the eviltransform test-suite.
@pytest.mark.parametrize(
    "wgs, gcj",
    [
        ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),  # Shanghai
        ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),  # Shenzhen
        ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),  # Beijing
    ],
)
def test_wgs_to_gcj_matches_reference_points(wgs: tuple[float, float], gcj: tuple[float, float]) -> None:
    got = geo.wgs84_to_gcj02(*wgs)
    assert geo.haversine_m(*got, *gcj) < 0.05
    back = geo.gcj02_to_wgs84(*gcj)
    assert geo.haversine_m(*back, *wgs) < 0.5


def test_gcj_round_trip_near_weizhou_within_a_metre() -> None:
    gcj = geo.wgs84_to_gcj02(*WEIZHOU)
    offset = geo.haversine_m(*gcj, *WEIZHOU)
    assert 200 < offset < 600  # the GCJ-02 shift in Wenchuan is a few hundred metres
    back = geo.gcj02_to_wgs84(*gcj)
    assert geo.haversine_m(*back, *WEIZHOU) < 0.5


def test_bd09_round_trip_near_yingxiu() -> None:
    wgs = (31.054, 103.487)
    bd = geo.wgs84_to_bd09(*wgs)
    assert geo.haversine_m(*bd, *wgs) > 500  # BD-09 adds Baidu's own shift on top of GCJ-02
    assert geo.haversine_m(*geo.bd09_to_wgs84(*bd), *wgs) < 0.5
    gcj = geo.wgs84_to_gcj02(*wgs)
    assert geo.haversine_m(*geo.bd09_to_gcj02(*geo.gcj02_to_bd09(*gcj)), *gcj) < 0.5


def test_outside_china_is_unchanged() -> None:
    assert geo.wgs84_to_gcj02(48.8566, 2.3522) == (48.8566, 2.3522)
    assert geo.gcj02_to_wgs84(48.8566, 2.3522) == (48.8566, 2.3522)


def test_to_wgs84_dispatch() -> None:
    gcj = geo.wgs84_to_gcj02(*WEIZHOU)
    assert geo.to_wgs84(*WEIZHOU, "WGS84") == WEIZHOU
    assert geo.haversine_m(*geo.to_wgs84(*gcj, "gcj02"), *WEIZHOU) < 0.5
    assert geo.haversine_m(*geo.to_wgs84(*geo.wgs84_to_bd09(*WEIZHOU), "BD-09"), *WEIZHOU) < 0.5
    with pytest.raises(ValueError):
        geo.to_wgs84(*WEIZHOU, "UTM")


def test_haversine_known_distance() -> None:
    # 威州 → 映秀 is about 48 km as the crow flies.
    d = geo.haversine_m(31.48, 103.59, 31.054, 103.487)
    assert 47_000 < d < 49_000
    assert geo.haversine_m(31.0, 103.0, 31.0, 103.0) == 0.0
    # one degree of latitude ≈ 111.2 km
    assert abs(geo.haversine_m(31.0, 103.0, 32.0, 103.0) - 111_195) < 50


def test_h3_cell_and_neighbours() -> None:
    cell = geo.h3_cell(*WEIZHOU)
    assert isinstance(cell, str) and len(cell) == 15
    ring = geo.h3_neighbours(cell)
    assert len(ring) == 7 and cell in ring and ring == sorted(ring)
    # a point 100 m east is in the same cell or a neighbour
    assert geo.h3_cell(31.4788, 103.5922) in ring


def test_nearest_place_finds_village_and_town() -> None:
    near = geo.nearest_place(31.1079, 103.3421)  # next to 柒山村
    assert near is not None
    assert near.village.name == "柒山村" and near.village.code == "513221107201"
    assert near.town.name == "三江镇"
    assert near.distance_m < 50


def test_nearest_place_with_limit() -> None:
    assert geo.nearest_place(30.66, 104.06, max_distance_m=5000) is None  # Chengdu
    assert geo.nearest_place(30.66, 104.06) is not None


def test_valid_latlon() -> None:
    assert geo.valid_latlon(31.4, 103.5)
    assert not geo.valid_latlon(0.0, 0.0)
    assert not geo.valid_latlon(None, 103.5)
    assert not geo.valid_latlon(float("nan"), 103.5)
    assert not geo.valid_latlon(131.4, 103.5)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(lat=st.floats(30.7, 31.7), lon=st.floats(102.9, 103.8))
def test_round_trips_anywhere_in_wenchuan(lat: float, lon: float) -> None:
    assert geo.haversine_m(*geo.gcj02_to_wgs84(*geo.wgs84_to_gcj02(lat, lon)), lat, lon) < 0.5
    assert geo.haversine_m(*geo.bd09_to_wgs84(*geo.wgs84_to_bd09(lat, lon)), lat, lon) < 0.5
