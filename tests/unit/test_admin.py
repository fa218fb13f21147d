"""Admin division codes: levels, ancestry, common area, cleaning (streams/domain/admin.py)."""
from __future__ import annotations

from hypothesis import given, strategies as st

from streams.domain import admin

QISHAN = "513221107201"  # 柒山村, 三江镇, 汶川县


def test_levels_prefix_every_level() -> None:
    assert admin.levels(QISHAN) == ["51", "5132", "513221", "513221107", QISHAN]
    assert admin.levels("513221107") == ["51", "5132", "513221", "513221107"]
    assert admin.levels("513221") == ["51", "5132", "513221"]
    assert admin.levels(None) == [] and admin.levels("abc") == [] and admin.levels("") == []
    assert admin.levels_of([QISHAN, "513221100203", None]) == [
        "51", "5132", "513221", "513221100", "513221107", "513221100203", QISHAN]


def test_is_code_accepts_only_the_five_level_lengths() -> None:
    assert all(admin.is_code(QISHAN[:n]) for n in admin.LEVELS)
    assert not admin.is_code("51322") and not admin.is_code("5132x") and not admin.is_code(513221)
    assert not admin.is_code("") and not admin.is_code(None)


def test_within() -> None:
    assert admin.within(QISHAN, "513221107") and admin.within(QISHAN, "5132") and admin.within(QISHAN, QISHAN)
    assert not admin.within(QISHAN, "513221100") and not admin.within(None, "513221")
    assert not admin.within("513221107", QISHAN)  # a town is not inside one of its villages
    assert not admin.within("5132211", "5132211")  # only whole levels count


def test_prefix_and_split() -> None:
    assert admin.prefix(QISHAN, admin.TOWN) == "513221107"
    assert admin.prefix("513221", admin.TOWN) is None and admin.prefix(None, admin.COUNTY) is None
    assert admin.split(QISHAN) == ("513221", "513221107", QISHAN)
    assert admin.split("513221107") == ("513221", "513221107", None)
    assert admin.split("5132x1107") == (None, None, None) and admin.split(None) == (None, None, None)


def test_common_is_the_deepest_shared_village_town_or_county() -> None:
    assert admin.common([QISHAN, "513221107202"]) == "513221107"
    assert admin.common([QISHAN, "513221102201"]) == "513221"
    assert admin.common([QISHAN, "513221107"]) == "513221107"
    assert admin.common([QISHAN, QISHAN, ""]) == QISHAN
    assert admin.common([]) is None and admin.common(["513221", "513222"]) is None


def test_clean_strips_zero_padding_and_separators() -> None:
    assert admin.clean("513221107000") == "513221107"
    assert admin.clean("513221000000") == "513221"
    assert admin.clean("513221000") == "513221"
    assert admin.clean("5132 2110 7201") == QISHAN
    assert admin.clean("51322110720199") == QISHAN
    assert admin.clean("5132211") == "513221"
    assert admin.clean("51322") is None and admin.clean(None) is None and admin.clean("") is None


@given(st.text(alphabet="0123456789x", min_size=0, max_size=14), st.text(alphabet="0123456789", max_size=13))
def test_within_is_a_whole_level_prefix(code: str, area: str) -> None:
    expected = admin.is_code(area) and code.isdigit() and code.startswith(area)
    assert admin.within(code, area) == expected
    assert admin.within(code, code[:len(area)]) == (admin.is_code(code[:len(area)]) and code.isdigit())
    cleaned = admin.clean(code)
    assert cleaned is None or (admin.is_code(cleaned) and cleaned in admin.levels(cleaned))
