"""Personal identifiers: validation, normalization, masking and pseudonymous keys.

Contract:
- `normalize_id_number` → the 18-character GB 11643 number (upper-case X) or None. 15-digit legacy
  numbers are upgraded (``19`` inserted after the 6-digit area code, check digit computed); an
  18-digit number must carry the right check digit (weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2,
  sum mod 11 → ``10X98765432``) and a plausible birth date.
- `normalize_phone` → 11-digit mobile (``13888881234``) or a landline with its area code
  (``08376222110``); +86/0086 country codes, spaces, dashes, dots and parentheses are dropped; a
  bare 7-digit local number is taken as Aba (0837). None for anything else (e.g. ``110``).
- `normalize_plate` → ``川UA1235`` (province char + letter + 5–6 alphanumerics, or 4 + 挂/学/警/…).
- masks: `mask_name` 王某学/王某, `mask_id` ``5132**********123X``, `mask_phone` ``138****5678``,
  `mask_plate` ``川U·A1**5``; `mask_id_shaped` / `mask_phone_shaped` mask what only looks like an
  ID or a phone (a wrong check digit, a local number) the same way, never returning None.
- `PersonKeyer(secret)`: ``<kind>:<first 32 hex of HMAC-SHA256(secret, normalized value)>``,
  kinds ``id``, ``phone``, ``plate``, ``name_village`` (value ``name|village_code``).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

from streams.domain.text import clean_text, fold_width

ID_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"
PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_SUFFIXES = "挂学警港澳领试超使"
KEY_HEX_LEN = 32

_ID18 = re.compile(r"^\d{17}[\dX]$")
_ID15 = re.compile(r"^\d{15}$")
_PHONE_JUNK = re.compile(r"[\s\-().·/]+")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0(?:10|2\d|[3-9]\d{2})[2-9]\d{6,7}$")
_PLATE = re.compile(
    rf"^[{PLATE_PROVINCES}][A-Z](?:[A-Z0-9]{{5,6}}|[A-Z0-9]{{4}}[{PLATE_SUFFIXES}])$"
)
_PLATE_JUNK = re.compile(r"[\s·•・.\-_]+")
_NAME_JUNK = re.compile(r"\s+")
_NAME_DOTS = re.compile(r"[•・.．]")
ABA_AREA_CODE = "0837"


def id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("id_check_char needs exactly 17 digits")
    total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS))
    return ID_CHECK_CHARS[total % 11]


def _plausible_birth(ymd: str) -> bool:
    try:
        born = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:8]))
    except ValueError:
        return False
    return 1880 <= born.year <= 2100


def normalize_id_number(raw: str | None) -> str | None:
    """A valid 18-character resident ID number (15-digit legacy form upgraded), else None."""
    if not raw:
        return None
    s = re.sub(r"[\s\-]+", "", fold_width(str(raw))).upper()
    if _ID15.match(s):
        first17 = s[:6] + "19" + s[6:15]
        if not _plausible_birth(first17[6:14]):
            return None
        return first17 + id_check_char(first17)
    if not _ID18.match(s) or not _plausible_birth(s[6:14]):
        return None
    return s if id_check_char(s[:17]) == s[17] else None


def is_valid_id_number(raw: str | None) -> bool:
    """True when `normalize_id_number` accepts the value."""
    return normalize_id_number(raw) is not None


def normalize_phone(raw: str | None) -> str | None:
    """Mobile (11 digits) or landline with area code (0837xxxxxxx), else None."""
    if not raw:
        return None
    s = _PHONE_JUNK.sub("", fold_width(str(raw)))
    if s.startswith("+"):
        s = s[1:]
        if not s.startswith("86"):
            return None  # foreign numbers are out of scope
        s = s[2:]
    elif s.startswith("0086"):
        s = s[4:]
    elif s.startswith("86") and len(s) == 13 and _MOBILE.match(s[2:]):
        s = s[2:]
    if not s.isdigit():
        return None
    if _MOBILE.match(s):
        return s
    if not s.startswith("0") and not s.startswith("1") and 9 <= len(s) <= 11:
        s = "0" + s  # area code written without its trunk 0 after +86
    if len(s) == 7 and s[0] in "23456789":
        s = ABA_AREA_CODE + s
    return s if _LANDLINE.match(s) else None


def normalize_plate(raw: str | None) -> str | None:
    """Normalized plate (``川UA1235``) or None when it is not a valid civil plate."""
    if not raw:
        return None
    s = _PLATE_JUNK.sub("", clean_text(str(raw))).upper()
    return s if _PLATE.match(s) else None


def normalize_name(raw: str | None) -> str | None:
    """A person's name: simplified, no spaces, middle dots unified to ``·``; None if empty."""
    if not raw:
        return None
    s = _NAME_DOTS.sub("·", _NAME_JUNK.sub("", clean_text(str(raw))))
    return s or None


def mask_name(name: str | None) -> str | None:
    """王德学 → 王某学, 王五 → 王某, 扎西·多吉 → 扎某吉; None if empty."""
    n = normalize_name(name)
    if not n:
        return None
    if len(n) == 1:
        return "某"
    if len(n) == 2:
        return n[0] + "某"
    return n[0] + "某" + n[-1]


def mask_id(id_number: str | None) -> str | None:
    """Valid ID → first 4 + ten '*' + last 4 (``5132**********123X``); None if invalid."""
    n = normalize_id_number(id_number)
    return n[:4] + "*" * 10 + n[-4:] if n else None


def mask_phone(phone: str | None) -> str | None:
    """Mobile → ``138****5678``; landline keeps its area code and last 4 (``0837***2110``)."""
    n = normalize_phone(phone)
    if not n:
        return None
    if n.startswith("0"):
        area = 3 if n[1] in "12" else 4
        return n[:area] + "*" * (len(n) - area - 4) + n[-4:]
    return n[:3] + "****" + n[-4:]


def _digits(raw: str) -> str:
    return re.sub(r"[^0-9X]", "", fold_width(str(raw)).upper())


def mask_id_shaped(raw: str) -> str:
    """An ID-shaped number, valid or not → first 4 + '*' + last 4 (``5132**********1231``)."""
    masked = mask_id(raw)
    if masked:
        return masked
    d = _digits(raw)
    return d[:4] + "*" * max(len(d) - 8, 1) + d[-4:] if len(d) > 8 else "*" * max(len(d), 1)


def mask_phone_shaped(raw: str) -> str:
    """A phone-shaped number → `mask_phone`'s form; otherwise every digit but the last 4 starred."""
    masked = mask_phone(raw)
    if masked:
        return masked
    d = _digits(raw)
    return "*" * max(len(d) - 4, 1) + d[-4:] if len(d) > 4 else "*" * max(len(d), 1)


def mask_plate(plate: str | None) -> str | None:
    """``川UA1235`` → ``川U·A1**5``; None if the plate is invalid."""
    n = normalize_plate(plate)
    if not n:
        return None
    rest = n[2:]
    return n[:2] + "·" + rest[:2] + "*" * (len(rest) - 3) + rest[-1]


class PersonKeyer:
    """Pseudonymous keys: ``kind:`` + first 32 hex chars of HMAC-SHA256(secret, normalized value).

    Each method normalizes its input first and returns None when the value is invalid, so the
    same person yields the same key whatever the formatting of the source.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray)) or not secret:
            raise ValueError("PersonKeyer needs a non-empty bytes secret")
        self._secret = bytes(secret)

    def __repr__(self) -> str:
        return "PersonKeyer(secret=<hidden>)"

    def _key(self, kind: str, value: str) -> str:
        digest = hmac.new(self._secret, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{kind}:{digest[:KEY_HEX_LEN]}"

    def id_key(self, id_number: str | None) -> str | None:
        """``id:<hex>`` of the normalized 18-digit ID number."""
        n = normalize_id_number(id_number)
        return self._key("id", n) if n else None

    def phone_key(self, phone: str | None) -> str | None:
        """``phone:<hex>`` of the normalized phone number."""
        n = normalize_phone(phone)
        return self._key("phone", n) if n else None

    def plate_key(self, plate: str | None) -> str | None:
        """``plate:<hex>`` of the normalized plate."""
        n = normalize_plate(plate)
        return self._key("plate", n) if n else None

    def name_village_key(self, name: str | None, village_code: str | None) -> str | None:
        """``name_village:<hex>`` of ``name|village_code`` (village code must be 12 digits)."""
        n = normalize_name(name)
        if not n or not village_code or len(village_code) != 12 or not village_code.isdigit():
            return None
        return self._key("name_village", f"{n}|{village_code}")
