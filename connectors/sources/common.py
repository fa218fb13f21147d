"""Shared pieces of the pure translate layer: result types, topic keys, safe XML and text decoding.

Contract: everything here is pure (bytes/str in, values out), has no import-time side effects and
keeps no mutable module state. Translate functions never raise on bad input; they return a
`TranslateResult` whose `rejected` list names the problem.
"""
from __future__ import annotations

import codecs
import json
import re
import xml.etree.ElementTree as _stdlib_et
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import Any, Final, ParamSpec, TypeVar
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring as _defused_fromstring

from schemas.catalogue import topic as catalogue_topic

#: Bodies larger than this are rejected by translate (receivers answer 413 earlier).
MAX_DOCUMENT_BYTES: Final = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Rejected:
    """One input (or part of an input) that could not become a record.

    `reason` is human readable and names the offending field/value; `error_type` is a short
    machine code (e.g. "InvalidField", "UnsafeXml", "UnknownDevice")."""

    reason: str
    error_type: str


@dataclass(frozen=True, slots=True)
class TranslateResult:
    """Outcome of translating one payload.

    `records`: raw records per docs/contracts.md, every schema field present (None when absent),
    ready for Avro; `rejected`: what could not be translated, with reasons; `dropped`: inputs
    deliberately discarded (heartbeats/keepalives); `topic`/`schema`: catalogue topic and Avro full
    name of the records; `attachments`: binary parts ignored (e.g. JPEG pictures of a multipart
    ISAPI push); `unmapped`: native field names present in the input that no mapping reads (name →
    how many records had it), so a county's extra or renamed column is counted, never silent."""

    records: list[dict[str, Any]]
    rejected: list[Rejected]
    dropped: int
    topic: str
    schema: str
    attachments: int = 0
    unmapped: Mapping[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return not self.rejected

    def key_of(self, record: Mapping[str, Any]) -> str:
        """Kafka key of one of this result's records."""
        return key_of(record, self.topic)


def key_of(record: Mapping[str, Any], topic: str) -> str:
    """Kafka key (UTF-8 string) of a raw record: its topic's key field in the catalogue.

    Raises KeyError for an unknown topic and ValueError when the key field is empty."""
    field_name = catalogue_topic(topic).key
    value = record.get(field_name)
    if value is None or str(value) == "":
        raise ValueError(f"record has no {field_name!r} for topic {topic}")
    return str(value)


def result(topic: str, schema: str, records: Iterable[dict[str, Any]] = (),
           rejected: Iterable[Rejected] = (), dropped: int = 0, attachments: int = 0) -> TranslateResult:
    """Build a TranslateResult (copies the iterables into fresh lists); every record gets its
    ``quality`` list (empty when nothing was flagged)."""
    out = list(records)
    for record in out:
        record.setdefault("quality", [])
    return TranslateResult(out, list(rejected), dropped, topic, schema, attachments)


T = TypeVar("T")
MAX_FLAG_VALUE = 200  # characters of a flagged raw value kept in the raw record


_ID_SHAPE: Final = re.compile(r"\d{15}|\d{17}[\dXx]")
_PHONE_SPLIT: Final = re.compile(r"[,，;；/、]+")
_PHONE_JUNK: Final = re.compile(r"[\s\-()（）.·]+")


def check_id_number(value: Any) -> str | None:
    """An optional resident ID number as sent; TranslateError when it is not ID-shaped (15 digits,
    or 17 digits and a digit/X; the check digit is left to normalize). Shared by every feed."""
    text = clean_str(value)
    if text is not None and not _ID_SHAPE.fullmatch(re.sub(r"\s+", "", text)):
        # the reason reaches canonical events, which leave raw values out: no value in it
        raise TranslateError(f"ID number is not a 15- or 18-character ID number ({len(text)} characters)")
    return text


def check_phone(value: Any) -> str | None:
    """An optional phone text as sent (several numbers may be separated by ，/；/、); TranslateError
    when a part is not 7-15 digits after spaces, dashes and brackets. Shared by every feed."""
    text = clean_str(value)
    if text is None:
        return None
    for part in _PHONE_SPLIT.split(text):
        digits = _PHONE_JUNK.sub("", part).removeprefix("+")
        if part.strip() and not (digits.isdigit() and 7 <= len(digits) <= 15):
            raise TranslateError("phone is not a phone number (7-15 digits)")
    return text


def translate_items(items: Sequence[Any], label: str, build: Callable[[Any], dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """`build` each item of a list body; a `TranslateError` rejects only that item, named
    ``<label>[i]`` when the body held more than one."""
    records: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        try:
            records.append(build(item))
        except TranslateError as exc:
            prefix = f"{label}[{index}]: " if len(items) > 1 else ""
            rejected.append(Rejected(prefix + exc.reason, exc.error_type))
    return records, rejected


def with_unmapped(res: TranslateResult, unmapped: Mapping[str, int]) -> TranslateResult:
    """`res` with the native fields that no mapping read (see `TranslateResult.unmapped`)."""
    return replace(res, unmapped={k: v for k, v in unmapped.items() if v})


def unmapped_names(present: Iterable[str], known: Iterable[str]) -> list[str]:
    """Names in `present` that are not in `known` (compared case- and space-insensitively)."""
    norm = {str(k).strip().lower() for k in known}
    return [p for p in present if str(p).strip().lower().lstrip("\ufeff") not in norm]


def quality_flag(field_name: str, reason: str, value: Any = None) -> dict[str, Any]:
    """A `pingan.QualityFlag`: an optional field kept with a problem (the record is still accepted)."""
    text = None if value is None else str(value)[:MAX_FLAG_VALUE]
    return {"field": field_name, "reason": reason, "value": text}


def optional(flags: list[dict[str, Any]], field_name: str, read: Callable[[], T], value: Any = None) -> T | None:
    """`read()` an optional field; a `TranslateError` becomes a quality flag (and None) instead of
    rejecting the record. Required fields are read directly, so their errors still reject."""
    try:
        return read()
    except TranslateError as exc:
        flags.append(quality_flag(field_name, exc.reason, value))
        return None


class TranslateError(ValueError):
    """Raised inside translate code for one bad input; converted into a `Rejected`."""

    def __init__(self, reason: str, error_type: str = "InvalidField") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type

    def rejected(self) -> Rejected:
        """This error as data."""
        return Rejected(self.reason, self.error_type)


P = ParamSpec("P")


def never_raises(topic: str, schema: str) -> Callable[[Callable[P, TranslateResult]], Callable[P, TranslateResult]]:
    """Decorator: a translate function that never lets an exception escape.

    `TranslateError` becomes a Rejected with its reason; any other exception (a bug) becomes a
    Rejected with error_type "InternalError" so the stream goes on and the dead letter shows it."""

    def deco(fn: Callable[P, TranslateResult]) -> Callable[P, TranslateResult]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> TranslateResult:
            try:
                return fn(*args, **kwargs)
            except TranslateError as exc:
                return result(topic, schema, rejected=[exc.rejected()])
            except Exception as exc:  # noqa: BLE001 - errors as data, by contract
                return result(topic, schema, rejected=[
                    Rejected(f"internal error in {fn.__module__}.{fn.__name__}: "
                             f"{type(exc).__name__}: {exc}", "InternalError")])
        return wrapper
    return deco


# --- text decoding ------------------------------------------------------------------------------

_XML_DECL = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._\-]+)["'][^>]*\?>""")
_XML_DECL_ANY = re.compile(r"""^\s*<\?xml[^>]*\?>""")

#: Declared encodings widened to a superset that decodes everything the device really sends.
_ENCODING_ALIASES: Final[Mapping[str, str]] = {
    "gb2312": "gb18030", "gbk": "gb18030", "cp936": "gb18030", "gb18030": "gb18030",
    "x-gbk": "gb18030", "euc-cn": "gb18030", "hz-gb-2312": "gb18030",
}


def _canonical_codec(name: str) -> str | None:
    try:
        canon = codecs.lookup(name).name
    except LookupError:
        return None
    return _ENCODING_ALIASES.get(name.lower(), _ENCODING_ALIASES.get(canon, canon))


def decode_xml_bytes(body: bytes) -> str:
    """Decode an XML document honouring its BOM or declared encoding (GB2312/GBK → GB18030).

    Without a declaration: UTF-8, falling back to GB18030 when the bytes are not valid UTF-8.
    The returned text has its XML declaration removed, so it can be parsed as str.
    Raises TranslateError ("BadEncoding") when the bytes do not decode."""
    if body.startswith(codecs.BOM_UTF8):
        try:
            text = body[len(codecs.BOM_UTF8):].decode("utf-8")
        except UnicodeDecodeError:
            raise TranslateError("XML body has a UTF-8 BOM but is not valid UTF-8", "BadEncoding") from None
    elif body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = body.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise TranslateError(f"XML body is not valid UTF-16: {exc.reason}", "BadEncoding") from None
    else:
        match = _XML_DECL.match(body[:512])
        declared = match.group(1).decode("ascii") if match else None
        if declared is not None:
            codec = _canonical_codec(declared)
            if codec is None:
                raise TranslateError(f"unknown XML encoding {declared!r}", "BadEncoding")
            try:
                text = body.decode(codec)
            except UnicodeDecodeError as exc:
                raise TranslateError(
                    f"XML body declared encoding {declared!r} but byte {exc.start} does not decode",
                    "BadEncoding") from None
        else:
            text = decode_text_auto(body)
    return _XML_DECL_ANY.sub("", text, count=1)


def decode_text_auto(data: bytes) -> str:
    """Decode text of unknown encoding: UTF-8 (BOM stripped) if valid, else GB18030 (GBK superset).

    Raises TranslateError ("BadEncoding") if neither decodes."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise TranslateError("text is neither UTF-8 nor GBK/GB18030", "BadEncoding") from None


# --- safe XML -----------------------------------------------------------------------------------

def parse_xml(body: bytes | str) -> Element:
    """Parse an XML document safely (defusedxml): no DTDs, no entity declarations, no external refs.

    Raises TranslateError with error_type "UnsafeXml" for DOCTYPE/entity/external-reference
    payloads and "MalformedXml" for anything expat cannot parse."""
    if isinstance(body, bytes):
        if len(body) > MAX_DOCUMENT_BYTES:
            raise TranslateError(f"XML body is {len(body)} bytes, limit {MAX_DOCUMENT_BYTES}", "TooLarge")
        text = decode_xml_bytes(body)
    else:
        text = _XML_DECL_ANY.sub("", body, count=1)
    if not text.strip():
        raise TranslateError("empty XML body", "MalformedXml")
    try:
        return _defused_fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except EntitiesForbidden:
        raise TranslateError("XML entity declarations are not allowed", "UnsafeXml") from None
    except ExternalReferenceForbidden:
        raise TranslateError("XML external references are not allowed", "UnsafeXml") from None
    except DTDForbidden:
        upper = text.upper()
        if "<!ENTITY" in upper:
            reason = "XML entity declarations are not allowed"
        elif re.search(r"<!DOCTYPE[^>\[]*\b(SYSTEM|PUBLIC)\b", upper):
            reason = "XML external references are not allowed (DOCTYPE SYSTEM/PUBLIC)"
        else:
            reason = "XML DOCTYPE/DTD declarations are not allowed"
        raise TranslateError(reason, "UnsafeXml") from None
    except DefusedXmlException as exc:
        raise TranslateError(f"unsafe XML: {type(exc).__name__}", "UnsafeXml") from None
    except _stdlib_et.ParseError as exc:
        raise TranslateError(_not_xml_reason(text, exc), "MalformedXml") from None
    except (ValueError, RecursionError) as exc:
        raise TranslateError(f"malformed XML: {exc}", "MalformedXml") from None


def _not_xml_reason(text: str, exc: Exception) -> str:
    """What a body that expat cannot parse looks like instead, and what to do about it."""
    head = text.lstrip()[:1]
    if head in ("{", "["):
        try:
            json.loads(text)
            what = "JSON body"
        except ValueError:
            what = "JSON-like body"
        return (f"{what} on an XML endpoint (malformed XML: {exc}): this route takes XML; point the sender at the "
                "feed's JSON route or switch its push format to XML")
    if head and head != "<":
        return (f"malformed XML: {exc}: the body does not start with '<' (first bytes {text.lstrip()[:20]!r}); "
                "check the sender's push format")
    return f"malformed XML: {exc}: the document is cut off or not well-formed; keep the payload as a fixture"


def local_name(tag: object) -> str:
    """Tag without its `{namespace}` prefix (any firmware's namespace variant)."""
    if not isinstance(tag, str):  # comments / processing instructions
        return ""
    return tag.rsplit("}", 1)[-1]


def child(elem: Element | None, name: str) -> Element | None:
    """First direct child whose local name equals `name` (case-insensitive), namespace ignored."""
    if elem is None:
        return None
    lname = name.lower()
    for sub in elem:
        if local_name(sub.tag).lower() == lname:
            return sub
    return None


def child_text(elem: Element | None, *path: str) -> str | None:
    """Stripped text at a child path (namespace-agnostic), None when absent or empty."""
    node = elem
    for name in path:
        node = child(node, name)
        if node is None:
            return None
    text = (node.text or "").strip() if node is not None else ""
    return text or None


def element_to_dict(elem: Element, max_depth: int = 8) -> dict[str, Any]:
    """Namespace-stripped dict view of an element: leaf children → text, others → nested dicts.

    Repeated children keep the first occurrence. Depth is bounded."""
    out: dict[str, Any] = {}
    for sub in elem:
        name = local_name(sub.tag)
        if not name or name in out:
            continue
        if len(sub) and max_depth > 0:
            out[name] = element_to_dict(sub, max_depth - 1)
        else:
            out[name] = (sub.text or "").strip()
    return out


# --- small value helpers ------------------------------------------------------------------------

def clean_str(value: Any) -> str | None:
    """Stripped string form of a scalar, None for None/empty. Floats that are whole numbers
    (spreadsheet cells like 13888881234.0) lose their '.0'."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None if value.is_nan() else str(value)
        if value == value.to_integral_value():
            return str(int(value))
        return str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple, set, bytes, bytearray)):
        raise TranslateError(f"expected a scalar value, got {type(value).__name__}", "InvalidField")
    text = str(value).strip()
    return text or None


def parse_int(value: Any, field_name: str, lo: int | None = None, hi: int | None = None) -> int | None:
    """Optional integer field; None when absent; TranslateError naming the field when invalid."""
    text = clean_str(value)
    if text is None:
        return None
    if not re.fullmatch(r"[+-]?\d{1,18}", text):
        raise TranslateError(f"{field_name} {text!r} is not an integer")
    number = int(text)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise TranslateError(f"{field_name} '{number}' not in {lo}-{hi}")
    return number


def parse_float(value: Any, field_name: str, lo: float | None = None, hi: float | None = None) -> float | None:
    """Optional finite float; None when absent; TranslateError naming the field when invalid."""
    if isinstance(value, bool):
        raise TranslateError(f"{field_name} {value!r} is not a number")
    if isinstance(value, (int, float, Decimal)):
        text = str(value)
    else:
        text = clean_str(value)
        if text is None:
            return None
        text = text.replace(",", "").replace("，", "")
    try:
        number = float(Decimal(text))
    except (InvalidOperation, ValueError, OverflowError):
        raise TranslateError(f"{field_name} {text!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise TranslateError(f"{field_name} {text!r} is not a finite number")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise TranslateError(f"{field_name} '{text}' out of range {lo}..{hi}")
    return number


def parse_coordinates(lon_value: Any, lat_value: Any, lon_name: str, lat_name: str) -> tuple[float | None, float | None]:
    """A lon/lat pair: both or neither; (0, 0) — the 'unknown' placeholder devices send — is None."""
    lon = parse_float(lon_value, lon_name, -180.0, 180.0)
    lat = parse_float(lat_value, lat_name, -90.0, 90.0)
    if lon is None or lat is None or (lon == 0.0 and lat == 0.0):
        return None, None
    return lon, lat


def require(value: str | None, field_name: str) -> str:
    """A mandatory text field; TranslateError("missing <field>") when absent."""
    if value is None:
        raise TranslateError(f"missing {field_name}", "MissingField")
    return value


_LOCAL_DT_FORMATS: Final = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S",
                            "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f", "%Y%m%d%H%M%S")


def check_local_datetime(text: str, field_name: str) -> str:
    """Validate a local date-time text (ISO 8601 with optional offset, 'YYYY-MM-DD HH:MM:SS',
    'YYYY/MM/DD HH:MM:SS' or 'YYYYMMDDHHMMSS'); returns the text unchanged."""
    parse_local_datetime(text, field_name)
    return text


def parse_local_datetime(text: str, field_name: str) -> datetime:
    """Parse a device/desk time text (see check_local_datetime) or raise TranslateError."""
    candidate = text.strip()
    if len(candidate) <= 40:
        iso = candidate[:-1] + "+00:00" if candidate.endswith(("Z", "z")) else candidate
        try:
            if re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", iso):
                return datetime.fromisoformat(iso)
        except ValueError:
            pass
        for fmt in _LOCAL_DT_FORMATS:
            try:
                return datetime.strptime(candidate, fmt)
            except ValueError:
                continue
    raise TranslateError(f"{field_name} {text[:60]!r} is not a valid date-time")


# --- multipart bodies ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart body: lower-cased header names, the `name`/`filename` of its
    Content-Disposition, and its raw bytes."""

    headers: Mapping[str, str]
    name: str | None
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def is_jpeg(self) -> bool:
        """A picture part (image/jpeg by type, or by the JPEG SOI marker)."""
        ctype = (self.content_type or "").lower()
        return ctype.startswith("image/") or self.data[:3] == b"\xff\xd8\xff"


def header_param(value: str | None, param: str) -> str | None:
    """A `; param=value` (quoted or not) from a header value such as Content-Type."""
    if not value:
        return None
    match = re.search(r';\s*' + re.escape(param) + r'\s*=\s*(?:"([^"]*)"|([^;\s]+))', value, re.IGNORECASE)
    if not match:
        return None
    return match.group(1) if match.group(1) is not None else match.group(2)


def media_type(content_type: str | None) -> str:
    """`type/subtype` of a Content-Type value, lower-case ('' when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def sniff_boundary(body: bytes) -> str | None:
    """Boundary of a multipart body that arrived without a usable Content-Type (first `--x` line)."""
    match = re.match(rb"\s*--([!-~]{1,200}?)\r?\n", body[:300])
    return match.group(1).decode("ascii") if match else None


def parse_multipart(body: bytes, boundary: str, max_parts: int = 64) -> list[Part]:
    """Split a multipart body on its boundary (RFC 2046), tolerant of LF-only line ends and a
    missing close delimiter. Raises TranslateError("MalformedMultipart") when no part is found."""
    if not boundary or len(boundary) > 200:
        raise TranslateError("multipart boundary missing or too long", "MalformedMultipart")
    delim = b"--" + boundary.encode("latin-1", "replace")
    chunks = body.split(delim)
    parts: list[Part] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # close delimiter
        if len(parts) >= max_parts:
            raise TranslateError(f"multipart body has more than {max_parts} parts", "MalformedMultipart")
        # strip the line break after the delimiter and the one before the next delimiter
        chunk = re.sub(rb"^[ \t]*\r?\n", b"", chunk, count=1)
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        elif chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        head_end = chunk.find(b"\r\n\r\n")
        sep_len = 4
        if head_end < 0:
            head_end, sep_len = chunk.find(b"\n\n"), 2
        if head_end < 0:
            head, data = chunk, b""
        else:
            head, data = chunk[:head_end], chunk[head_end + sep_len:]
        headers: dict[str, str] = {}
        for line in re.split(rb"\r?\n", head):
            if b":" in line:
                key, value = line.split(b":", 1)
                headers[key.decode("latin-1").strip().lower()] = value.decode("utf-8", "replace").strip()
        disposition = headers.get("content-disposition")
        parts.append(Part(headers, header_param(disposition, "name"), header_param(disposition, "filename"),
                          headers.get("content-type"), data))
    if not parts:
        raise TranslateError(f"no parts found for multipart boundary {boundary[:40]!r}", "MalformedMultipart")
    return parts


def parse_json(body: bytes | str) -> Any:
    """Decode JSON text (UTF-8 with optional BOM, GB18030 fallback) or raise TranslateError."""
    if isinstance(body, (bytes, bytearray)):
        if len(body) > MAX_DOCUMENT_BYTES:
            raise TranslateError(f"JSON body is {len(body)} bytes, limit {MAX_DOCUMENT_BYTES}", "TooLarge")
        text = decode_text_auto(bytes(body))
    else:
        text = body.lstrip("\ufeff")
    if not text.strip():
        raise TranslateError("empty JSON body", "MalformedJson")
    try:
        return json.loads(text)
    except RecursionError:
        raise TranslateError("malformed JSON: nested too deeply", "MalformedJson") from None
    except ValueError as exc:
        raise TranslateError(f"malformed JSON: {exc}", "MalformedJson") from None
