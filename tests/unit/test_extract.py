from __future__ import annotations

from streams.domain.extract import extract_identifiers, find_identifier_spans

NARRATIVE = (
    "报警人称其邻居（身份证513221198511112349，电话１３８ ８８８８ １２３４）驾驶川u a1235号车辆"
    "撞坏院墙后离开，另一人联系电话+86-139-0837-6222，旧身份证130503670401001，"
    "错号110105194912310021，再次提及13888881234。"
)


def test_extracts_all_kinds_normalized_in_order() -> None:
    found = extract_identifiers(NARRATIVE)
    assert found.plates == ["川UA1235"]
    assert found.phones == ["13888881234", "13908376222"]
    assert found.id_numbers == ["513221198511112349", "130503196704010016"]


def test_invalid_id_is_not_reported_nor_read_as_phone() -> None:
    found = extract_identifiers("证件号110105194912310021")
    assert found.id_numbers == [] and found.phones == []


def test_phone_inside_id_not_extracted() -> None:
    found = extract_identifiers("身份证号11010519491231002X")
    assert found.id_numbers == ["11010519491231002X"]
    assert found.phones == []


def test_nothing_in_plain_text() -> None:
    found = extract_identifiers("柒山村村民因房屋拆迁补偿发生争执")
    assert (found.plates, found.phones, found.id_numbers) == ([], [], [])
    assert extract_identifiers(None).phones == []


def test_spans_point_into_original_text() -> None:
    text = "电话１３８８８８８１２３４，车牌川UA1235"
    spans = find_identifier_spans(text)
    assert [(s.kind, s.value) for s in spans] == [("phone", "13888881234"), ("plate", "川UA1235")]
    assert text[spans[0].start:spans[0].end] == "１３８８８８８１２３４"
    assert text[spans[1].start:spans[1].end] == "川UA1235"


# ---------------------------------------------------------------- the masking rule (extract.py docstring)
import pytest  # noqa: E402

from streams.domain.normalize import mask_free_text  # noqa: E402


@pytest.mark.parametrize("text, masked", [
    ("证号513221198511112341", "证号5132**********2341"),            # wrong check digit
    ("证号51322119851111234X", "证号5132**********234X"),
    ("证号513221 19851111 2341", "证号5132**********2341"),           # spaced
    ("证号5132-2119-8511-1123-41", "证号5132**********2341"),        # dashed
    ("证号５１３２２１１９８５１１１１２３４１", "证号5132**********2341"),  # full-width
    ("ID513221198511112349", "ID5132**********2349"),              # glued to letters
    ("旧证130503670401001", "旧证1305**********0016"),               # legacy, valid
    ("手机+86 138 8888 1234", "手机138****1234"),
    ("手机0086-13888881234", "手机138****1234"),
    ("手机8613888881234", "手机138****1234"),
    ("手机138.8888.1234", "手机138****1234"),
    ("手机１３８－８８８８－１２３４", "手机138****1234"),
    ("座机0837-6222110", "座机0837***2110"),
    ("座机(0837)6222110", "座机0837***2110"),
    ("座机（0837） 622 2110", "座机0837***2110"),
    ("座机+86 837 6222110", "座机0837***2110"),
    ("座机028-86123456", "座机028****3456"),
    ("联系电话：6222110", "联系电话：0837***2110"),
])
def test_id_and_phone_shaped_numbers_are_masked(text: str, masked: str) -> None:
    assert mask_free_text(text) == masked


@pytest.mark.parametrize("text", [
    "时间20260714162311", "案号J5132212026071400087", "汶三调〔2026〕第031号", "村513221107201",
    "镇513221107", "县513221", "赔偿3000000元", "坐标103.5912,31.4788", "设备51322110001320000123",
    "IP 10.51.32.17", "网格513221107201-03", "2026-07-14 16:23:11", "编号202607141623110001",
    "流水号 2026 0714 1623", "金额6222110元",
])
def test_things_that_are_not_identifiers_stay(text: str) -> None:
    assert mask_free_text(text) == text
    assert all(s.kind not in ("id", "phone") for s in find_identifier_spans(text))


def test_only_valid_ids_and_mobiles_are_keyed() -> None:
    spans = find_identifier_spans("证号513221198511112341，证号513221198511112349，座机0837-6222110，手机13888881234")
    assert [(s.kind, s.keyed) for s in spans] == [("id", False), ("id", True), ("phone", False), ("phone", True)]
    found = extract_identifiers("证号513221198511112341，座机0837-6222110，ID513221198511112349")
    assert (found.id_numbers, found.phones) == ([], [])
