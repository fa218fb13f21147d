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
