from __future__ import annotations

import pytest

from streams.domain.address import address_key, normalize_address, village_in_address


@pytest.mark.parametrize(
    "raw",
    [
        "1幢3单元302号",
        "1栋3单元302室",
        "1栋 3单元 302",
        "1号楼3单元302房",
        "一幢三单元302",
        "1-3-302",
        "１幢３單元３０２號",
    ],
)
def test_building_unit_room_unified(raw: str) -> None:
    assert normalize_address("金竹苑" + raw) == "金竹苑1栋3单元302室"


def test_prefixes_stripped() -> None:
    assert normalize_address("四川省阿坝藏族羌族自治州汶川县威州镇金竹苑1幢302") == "威州镇金竹苑1栋302室"
    assert normalize_address("四川阿坝州汶川县三江镇柒山村3组") == "三江镇柒山村3组"
    assert normalize_address("阿坝师范学院") == "阿坝师范学院"  # 阿坝 alone is not a prefix


def test_street_numbers_kept() -> None:
    assert normalize_address("威州镇岷江路12号") == "威州镇岷江路12号"


def test_empty() -> None:
    assert normalize_address(None) is None
    assert normalize_address("   ") is None
    assert address_key(None) is None


def test_address_key_matches_same_address_in_different_spellings() -> None:
    a = address_key("四川省阿坝州汶川县威州镇金竹苑1幢3单元302号")
    b = address_key("金竹苑 1栋3单元302室")
    assert a is not None and a == b == "金竹苑1栋3单元302室"
    assert address_key("金竹苑1栋3单元303室") != a


def test_address_key_none_when_too_vague() -> None:
    assert address_key("三江镇柒山村") is None
    assert address_key("汶川县") is None
    assert address_key("三江镇柒山村3组") == "柒山村3组"


def test_village_in_address() -> None:
    v = village_in_address("汶川县三江镇柒山村3组")
    assert v is not None and v.code == "513221107201"
    t = village_in_address("威州镇金竹苑")
    assert t is not None and t.code == "513221100"
    assert village_in_address("成都市武侯区") is None
