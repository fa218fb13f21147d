from __future__ import annotations

from streams.domain.text import clean_text, fold_width, to_simplified


def test_traditional_to_simplified() -> None:
    assert clean_text("鄰里糾紛") == "邻里纠纷"
    assert clean_text("房屋拆遷補償發生爭執") == "房屋拆迁补偿发生争执"


def test_fullwidth_digits_and_letters_to_ascii() -> None:
    assert clean_text("１３８８８８８１２３４") == "13888881234"
    assert clean_text("川ＵＡ１２３５") == "川UA1235"
    assert clean_text("（电话）") == "(电话)"


def test_whitespace_collapse_including_ideographic_space() -> None:
    assert clean_text("  威州镇\u3000\u3000金竹苑 \t\n 1栋  ") == "威州镇 金竹苑 1栋"
    assert clean_text("a\u200bb\ufeff") == "ab"


def test_none_and_empty() -> None:
    assert clean_text(None) == ""
    assert clean_text("   ") == ""


def test_fold_width_preserves_length() -> None:
    s = "電話１３８\u3000ｘ"
    assert len(fold_width(s)) == len(s)
    assert fold_width(s) == "電話138 x"


def test_simplified_and_ascii_unchanged() -> None:
    assert to_simplified("汶川县威州镇") == "汶川县威州镇"
    assert to_simplified("abc 123") == "abc 123"
