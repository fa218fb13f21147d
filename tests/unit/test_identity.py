from __future__ import annotations

import hashlib
import hmac

import pytest

from streams.domain.identity import (
    PersonKeyer,
    id_check_char,
    mask_id,
    mask_name,
    mask_phone,
    mask_plate,
    normalize_id_number,
    normalize_name,
    normalize_phone,
    normalize_plate,
)


def test_valid_18_digit_id_with_x() -> None:
    assert normalize_id_number("11010519491231002X") == "11010519491231002X"
    assert normalize_id_number("11010519491231002x") == "11010519491231002X"
    assert normalize_id_number("513221196805120310") == "513221196805120310"


def test_wrong_check_digit_is_invalid() -> None:
    assert normalize_id_number("110105194912310021") is None
    assert normalize_id_number("513221196805120312") is None


def test_check_char_table() -> None:
    assert id_check_char("11010519491231002") == "X"
    with pytest.raises(ValueError):
        id_check_char("123")


def test_fifteen_digit_legacy_upgraded() -> None:
    assert normalize_id_number("130503670401001") == "130503196704010016"


def test_fullwidth_and_spaces_in_id() -> None:
    assert normalize_id_number("１１０１０５１９４９１２３１００２ｘ") == "11010519491231002X"
    assert normalize_id_number(" 110105 19491231 002X ") == "11010519491231002X"


def test_impossible_birth_date_rejected() -> None:
    first17 = "51322119681332031"  # month 13
    assert normalize_id_number(first17 + id_check_char(first17)) is None
    assert normalize_id_number(None) is None
    assert normalize_id_number("abc") is None


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("+86 138-8888-1234", "13888881234"),
        ("0086 13888881234", "13888881234"),
        ("8613888881234", "13888881234"),
        ("138 8888 1234", "13888881234"),
        ("１３８８８８８１２３４", "13888881234"),
        ("(0837)6222110", "08376222110"),
        ("0837-6222110", "08376222110"),
        ("+86 837 6222110", "08376222110"),
        ("6222110", "08376222110"),
        ("028-86123456", "02886123456"),
        ("110", None),
        ("12345", None),
        ("+1 415 555 0100", None),
        ("", None),
        (None, None),
    ],
)
def test_phone_normalization(raw: str | None, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("川u a1235", "川UA1235"),
        ("川U·A1235", "川UA1235"),
        ("川ＵＡ１２３５", "川UA1235"),
        ("川UD12345", "川UD12345"),  # new-energy plate, 6 characters
        ("川UA123学", "川UA123学"),
        ("川 U-A1235", "川UA1235"),
        ("無牌", None),
        ("XUA1235", None),
        ("川U123", None),
        ("川UA12345678", None),
    ],
)
def test_plate_normalization(raw: str, expected: str | None) -> None:
    assert normalize_plate(raw) == expected


def test_traditional_province_char() -> None:
    assert normalize_plate("遼A12345") == "辽A12345"


def test_masks() -> None:
    assert mask_name("王德学") == "王某学"
    assert mask_name("王五") == "王某"
    assert mask_name("扎西 多吉") == "扎某吉"
    assert mask_name(None) is None
    assert mask_id("11010519491231002X") == "1101**********002X"
    assert mask_id("513221198511112349") == "5132**********2349"
    assert mask_id("110105194912310021") is None
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("0837-6222110") == "0837***2110"
    assert mask_plate("川UA1235") == "川U·A1**5"
    assert mask_plate("川UD12345") == "川U·D1***5"


def test_name_normalization() -> None:
    assert normalize_name(" 王 德學 ") == "王德学"
    assert normalize_name("扎西•多吉") == "扎西·多吉"


def test_person_keys_are_hmac_of_normalized_value() -> None:
    keyer = PersonKeyer(b"secret")
    expected = hmac.new(b"secret", b"11010519491231002X", hashlib.sha256).hexdigest()[:32]
    assert keyer.id_key("11010519491231002x") == "id:" + expected
    assert keyer.phone_key("+86 138-8888-1234") == keyer.phone_key("13888881234")
    assert keyer.phone_key("13888881234").startswith("phone:")  # type: ignore[union-attr]
    assert keyer.plate_key("川u a1235") == keyer.plate_key("川UA1235")
    assert keyer.plate_key("川UA1235").startswith("plate:")  # type: ignore[union-attr]
    nv = keyer.name_village_key("王德學", "513221107201")
    assert nv == keyer.name_village_key("王德学", "513221107201")
    assert nv is not None and nv.startswith("name_village:") and len(nv.split(":")[1]) == 32


def test_person_keys_none_for_invalid_and_secret_matters() -> None:
    keyer = PersonKeyer(b"secret")
    assert keyer.id_key("110105194912310021") is None
    assert keyer.phone_key("110") is None
    assert keyer.plate_key("无牌") is None
    assert keyer.name_village_key("王德学", "513221107") is None
    assert keyer.name_village_key("", "513221107201") is None
    assert PersonKeyer(b"other").id_key("11010519491231002X") != keyer.id_key("11010519491231002X")
    assert "s3cr3t-value" not in repr(PersonKeyer(b"s3cr3t-value"))
    with pytest.raises(ValueError):
        PersonKeyer(b"")


def test_shaped_masks_never_return_none() -> None:
    from streams.domain.identity import mask_id_shaped, mask_phone_shaped

    assert mask_id_shaped("513221198511112349") == "5132**********2349"  # valid: mask_id's form
    assert mask_id_shaped("513221198511112341") == "5132**********2341"  # wrong check digit
    assert mask_id_shaped("5132 2119 8511 1123 4x") == "5132**********234X"
    assert mask_id_shaped("513221851131234") == "5132*******1234"
    assert mask_phone_shaped("138 8888 1234") == "138****1234"
    assert mask_phone_shaped("6222110") == "0837***2110"
    assert mask_phone_shaped("12345") == "*2345" and mask_phone_shaped("12") == "**"
