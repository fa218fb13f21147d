"""Inspect a county's sample data before go-live: what a feed's translate and normalize make of it.

Contract: `inspect_path(path, …)` (a file, a folder of files, or a simulator folder with
``delivery.jsonl``) and `inspect_rows(rows, feed, …)` (a database table or view read with
`read_database`) run the feed's own translate and the normalize step exactly as the receivers and
the worker would — nothing is published, no Kafka, no Elasticsearch — and return an
`InspectReport`: per feed, each native field and what it maps to (or that nothing reads it),
unknown codes, values that failed to parse (the records' quality flags), coordinates outside the
county, times that look wrong, and how many records would be accepted, accepted with warnings or
dead-lettered. Pure apart from reading the input; rendering is the CLI's job
(``pingan connectors inspect``).
"""
from __future__ import annotations

import base64
import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Final
from xml.etree.ElementTree import Element

from sqlalchemy import MetaData, Table, create_engine, select
from sqlalchemy import inspect as sa_inspect

from connectors.ingest.files import iter_deliveries
from connectors.sources import registry as source_registry
from connectors.sources.common import (
    TranslateError,
    TranslateResult,
    clean_str,
    decode_text_auto,
    element_to_dict,
    local_name,
    media_type,
    parse_multipart,
    parse_xml,
    sniff_boundary,
)
from connectors.sources.devices import DeviceRegistry
from connectors.sources.gb28181.sip import SipParseError, parse_sip
from connectors.sources.spec import Payload, SourceContext, SourceSpec
from schemas.serde import default_store
from streams.domain import gazetteer
from streams.domain.normalize import Normalizer
from streams.settings import DEFAULT_TIMEZONE

XLSX_CONTENT_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Content type by file extension (a file carries none of its own).
CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".csv": "text/csv", ".xlsx": XLSX_CONTENT_TYPE, ".xml": "application/xml", ".json": "application/json",
}
#: Files of a folder that are not samples (simulator/fixture bookkeeping, pictures).
SKIP_NAMES: Final = frozenset({"manifest.json", "truth.json", "registry.csv", "devices.csv", "delivery.jsonl"})
SKIP_SUFFIXES: Final = frozenset({".md", ".txt", ".jpg", ".jpeg", ".png", ".toml", ".py", ".sql"})

#: Raw-record fields that hold a feed's native codes (what a kind is looked up from).
CODE_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "alarm110": ("bjxl", "bjlx", "bjlb"), "grid": ("category_code", "category_name"),
    "gb28181": ("alarm_method", "alarm_type"), "isapi": ("event_type",), "mediation": ("dispute_type",),
    "door": ("event_code",),
}
#: A quality flag whose reason says a code or name is not in a table is an unknown code, not a parse failure.
_UNKNOWN_CODE = re.compile(r"unknown|not in the [\w ]*table|no code|not a known|code nor|outside the table|"
                           r"未知|无此代码", re.IGNORECASE)
#: Raw record fields that never come from one native field (stamps, provenance, flags).
_META_FIELDS: Final = frozenset({"received_at", "raw_format", "quality", "coord_system", "source_system",
                                 "location_source"})
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")

FUTURE_SLACK_MS: Final = 10 * 60 * 1000          # device clocks drift a few minutes
FAR_BEFORE_MS: Final = 30 * 24 * 3600 * 1000      # a month before the sample's median
UTC_SHIFT_MS: Final = 8 * 3600 * 1000             # China Standard Time is UTC+8, no DST
UTC_SHIFT_SLACK_MS: Final = 20 * 60 * 1000
BOUNDS_MARGIN_DEG: Final = 0.25                   # ~25 km around the county's known places


# --------------------------------------------------------------------------- the report
@dataclass
class FieldMapping:
    """One native field: how many records had it, and what it maps to.

    `how`: ``alias`` (the profile's ``aliases`` list it), ``value`` (its values reappear in that
    record field: the built-in mapping), ``unmapped`` (translate reported that nothing reads it),
    ``unused`` (present, but its values appear in no record field and no alias names it),
    ``ignored`` (the profile's ``ignore`` list names it), ``empty`` (never has a value),
    ``fallback`` (an alias of a record field whose better-ranked alias `after` is also present)."""

    native: str
    records: int
    maps_to: str | None
    how: str
    after: str | None = None  # ``fallback``: the native field read first for the same record field


@dataclass
class Finding:
    """A counted problem: a field (native or record name), a reason, how often, one example."""

    field: str
    reason: str
    count: int
    example: str | None = None


@dataclass
class FeedReport:
    """What one feed's translate and normalize make of its part of the sample."""

    feed: str
    source: str
    detected: str                      # how the feed was chosen ("--feed", "content: …", "delivery log")
    inputs: list[str] = field(default_factory=list)
    deliveries: int = 0
    records: int = 0                   # accepted + dead-lettered (what a receiver would answer for)
    accepted: int = 0                  # clean events
    warned: int = 0                    # events with a quality note, an unknown code, odd coords or times
    dead_lettered: int = 0
    dropped: int = 0                   # heartbeats and keepalives (neither records nor dead letters)
    fields: list[FieldMapping] = field(default_factory=list)
    unknown_codes: list[Finding] = field(default_factory=list)
    parse_failures: list[Finding] = field(default_factory=list)
    out_of_bounds: list[Finding] = field(default_factory=list)
    times: list[Finding] = field(default_factory=list)
    dead_letters: list[Finding] = field(default_factory=list)
    profile_files: list[str] = field(default_factory=list)

    def share(self, n: int) -> float:
        """`n` as a share of the records (0 when there are none)."""
        return n / self.records if self.records else 0.0


@dataclass
class InspectReport:
    """Everything `inspect_*` found, per feed, with the county bounds it checked against."""

    target: str
    feeds: list[FeedReport]
    bounds: tuple[float, float, float, float]  # south, west, north, east (WGS-84)
    skipped: list[str] = field(default_factory=list)  # inputs not inspected, with why

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``--json``)."""
        return asdict(self)

    def feed(self, name: str) -> FeedReport:
        """The report of one feed (KeyError when the sample had none of it)."""
        for f in self.feeds:
            if f.feed == name:
                return f
        raise KeyError(name)


class InspectError(ValueError):
    """An input that cannot be inspected at all (unreadable, unknown feed, missing table)."""


# --------------------------------------------------------------------------- units of input
@dataclass
class _Unit:
    """One delivery as translate saw it, with the native items its fields are read from."""

    feed: str
    name: str
    result: TranslateResult
    natives: list[dict[str, Any]]
    detected: str
    input: str | None = None  # the file it came from (default: its name)
    raw: bytes = b""  # the bytes translate read (a whole export file, one request body)
    content_type: str | None = None


def _flatten(value: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Leaf values of a nested dict by dotted path (lists of objects as ``name[].leaf``)."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping) and depth < 4:
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value) and depth < 4:
        for item in value:
            for k, v in _flatten(item, f"{prefix}[]", depth + 1).items():
                out.setdefault(k, v)
    elif prefix and value not in ([], {}):  # an empty list or object says nothing about its fields
        out[prefix] = value
    return out


def _xml_items(root: Element) -> list[dict[str, Any]]:
    items = [element_to_dict(root)]
    # a list document (<AlarmList><Alarm>…</Alarm>…) has repeated element children
    names = [local_name(c.tag) for c in root]
    if len(names) > 1 and len(set(names)) == 1 and len(root[0]):
        items = [element_to_dict(c) for c in root]
    return items


def _json_items(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, list):
        return [d for d in doc if isinstance(d, Mapping)]
    if isinstance(doc, Mapping):
        # GA/T 1400-style wrappers: {"XxxListObject": {"XxxObject": [...]}}
        if len(doc) == 1:
            (inner,) = doc.values()
            if isinstance(inner, Mapping) and len(inner) == 1:
                (rows,) = inner.values()
                if isinstance(rows, list) and rows and all(isinstance(r, Mapping) for r in rows):
                    return list(rows)
        return [dict(doc)]
    return []


def native_items(body: bytes, content_type: str | None) -> list[dict[str, Any]]:
    """The native objects of one delivery (JSON objects, XML documents, a multipart's XML/JSON part,
    a SIP MESSAGE's body), for field reporting; [] when they cannot be read (translate says why)."""
    try:
        if body.lstrip()[:8].upper().startswith(b"MESSAGE "):
            body = parse_sip(body).body
        mtype = media_type(content_type)
        boundary = None
        if mtype.startswith("multipart/") or not mtype:
            boundary = sniff_boundary(body)
        if boundary is not None:
            for part in parse_multipart(body, boundary):
                data = part.data.lstrip()
                if data[:1] in (b"{", b"[") or data[:1] == b"<":
                    return native_items(data, part.content_type)
            return []
        text = decode_text_auto(body).lstrip("\ufeff").lstrip()
        if text[:1] in ("{", "["):
            return _json_items(json.loads(text))
        if text[:1] == "<":
            return _xml_items(parse_xml(body))
    except (TranslateError, SipParseError, ValueError):
        return []
    return []


# --------------------------------------------------------------------------- detecting the feed
_MARKERS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("gb28181", ("MANSCDP", "<CmdType>Alarm", "MESSAGE sip:", "<AlarmMethod>")),
    ("door", ("AccessControllerEvent", "PassTime", "DoorName", "CommunityName")),
    ("isapi", ("EventNotificationAlert", "eventType", "ipAddress")),
    ("grid", ("reportId", "gridCode", "网格编码", "事件编号")),
    ("alarm110", ("JJDBH", "BJSJ", "接警单编号", "报警时间")),
    ("mediation", ("caseNo", "案件编号", "调解", "纠纷类型")),
)


def _head_text(data: bytes) -> str:
    head = data[:65536]
    try:
        return decode_text_auto(head)
    except TranslateError:
        return head.decode("utf-8", "replace")


def detect_feed(data: bytes, name: str, ctx: SourceContext | None = None) -> tuple[str, str]:
    """The feed a sample file belongs to and how that was decided (markers in its content, else
    the feed whose translate accepts most of it). Raises InspectError when none fits."""
    suffix = Path(name).suffix.lower()
    head = data
    if suffix == ".jsonl":  # a capture of recorded requests: sniff the first body
        try:
            first = json.loads(data.split(b"\n", 1)[0])
            if isinstance(first, Mapping) and "body_b64" in first:
                head = base64.b64decode(first["body_b64"])
        except ValueError:
            pass
    text = _head_text(head) if suffix != ".xlsx" else ""
    if suffix == ".xlsx":
        ctx = ctx or source_registry.context()
        best = _trial(data, name, ctx, [s for s in source_registry.SOURCES if s.read_table is not None])
        if best is not None:
            return best, f"{suffix} export whose rows the {best} feed reads"
    for feed, markers in _MARKERS:
        hits = [m for m in markers if m in text]
        # door markers come before ISAPI ones: a door controller pushes ISAPI AccessControllerEvent documents
        if hits:
            return feed, f"content ({', '.join(hits[:2])})"
    best = _trial(data, name, ctx or source_registry.context(), list(source_registry.SOURCES))
    if best is not None:
        return best, "the feed whose translate accepted most records"
    raise InspectError(f"{name}: no feed recognises this file; pass --feed "
                       f"({', '.join(source_registry.feeds())})")


def _trial(data: bytes, name: str, ctx: SourceContext, specs: Sequence[SourceSpec]) -> str | None:
    scores: list[tuple[int, int, str]] = []
    for spec in specs:
        try:
            units = _file_units(spec, data, name, ctx, int(time.time() * 1000), "trial")
        except InspectError:
            continue
        ok = sum(len(u.result.records) for u in units)
        bad = sum(len(u.result.rejected) for u in units)
        if ok:
            scores.append((ok, -bad, spec.feed))
    return max(scores)[2] if scores else None


# --------------------------------------------------------------------------- reading inputs
def _file_units(spec: SourceSpec, data: bytes, name: str, ctx: SourceContext, at_ms: int,
                detected: str) -> list[_Unit]:
    suffix = Path(name).suffix.lower()
    if suffix in (".csv", ".xlsx") and spec.read_table is not None and spec.translate_rows is not None:
        try:
            rows = spec.read_table(data, name)
        except TranslateError as exc:
            raise InspectError(f"{name}: {exc.reason}") from None
        except Exception as exc:  # noqa: BLE001 - a broken export is reported, not raised through
            raise InspectError(f"{name}: cannot be read as a {spec.feed} export ({exc})") from None
        result = spec.translate_rows(rows, at_ms, f"{spec.feed}-{suffix[1:]}", ctx)
        return [_Unit(spec.feed, name, result, [dict(r) for r in rows], detected, raw=data,
                      content_type=CONTENT_TYPES.get(suffix))]
    if suffix == ".jsonl":
        units = []
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            body, ctype = line, spec.content_type
            try:
                req = json.loads(line)
                if isinstance(req, Mapping) and "body_b64" in req:
                    body, ctype = base64.b64decode(req["body_b64"]), req.get("content_type")
            except ValueError:
                pass
            units.append(_payload_unit(spec, body, ctype, f"{name}:{n}", ctx, at_ms, detected))
        return units
    ctype = CONTENT_TYPES.get(suffix, spec.content_type)
    if suffix == ".bin" or sniff_boundary(data) is not None:
        boundary = sniff_boundary(data)
        ctype = f"multipart/form-data; boundary={boundary}" if boundary else ctype
    if data.lstrip()[:8].upper().startswith(b"MESSAGE "):
        try:
            msg = parse_sip(data)
        except SipParseError as exc:
            raise InspectError(f"{name}: not a SIP message ({exc})") from None
        data, ctype = msg.body, msg.headers.get("Content-Type") or "Application/MANSCDP+xml"
    return [_payload_unit(spec, data, ctype, name, ctx, at_ms, detected)]


def _payload_unit(spec: SourceSpec, body: bytes, ctype: str | None, name: str, ctx: SourceContext,
                  at_ms: int, detected: str) -> _Unit:
    result = spec.translate(Payload(body, ctype, at_ms), ctx)
    return _Unit(spec.feed, name, result, native_items(body, ctype), detected, raw=body, content_type=ctype)


def translate_file(data: bytes, name: str, feed: str, ctx: SourceContext, at_ms: int) -> list[tuple[str, bytes, str | None,
                                                                                             TranslateResult]]:
    """A native file through its feed's translate, as the receivers would: ``(unit name, raw bytes,
    content type, result)`` per delivery in it (one per request of a ``.jsonl`` capture, one for a
    whole export or document). Raises InspectError when the file cannot be read as that feed."""
    return [(u.name, u.raw, u.content_type, u.result)
            for u in _file_units(source_registry.feed(feed), data, name, ctx, at_ms, "import")]


def sample_files(folder: Path) -> list[Path]:
    """The native files of a folder (its simulator metadata, pictures and notes left out)."""
    return _sample_files(folder)


def _sample_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in SKIP_NAMES
                  and p.suffix.lower() not in SKIP_SUFFIXES and not p.name.startswith("."))


def read_database(url: str, table: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Up to `limit` rows of a table or view (any SQLAlchemy URL), keyed by column name.
    Raises InspectError naming the tables and views found when `table` is not one of them."""
    engine = create_engine(url)
    try:
        insp = sa_inspect(engine)
        names = [*insp.get_table_names(), *insp.get_view_names()]
        found = {n.lower(): n for n in names}.get(table.lower())
        if found is None:
            raise InspectError(f"table or view {table!r} not found at {engine.url!r}; "
                               f"found: {', '.join(sorted(names)) or 'none'}")
        t = Table(found, MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(t).limit(limit))]
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- analysis
def county_bounds(devices: DeviceRegistry | None = None,
                  margin_deg: float = BOUNDS_MARGIN_DEG) -> tuple[float, float, float, float]:
    """(south, west, north, east) around the county's places in the gazetteer and the registry's
    devices, widened by `margin_deg`."""
    points = [(p.lat, p.lon) for p in (*gazetteer.TOWNS, *gazetteer.VILLAGES)]
    for dev in devices or ():
        if dev.lat is not None and dev.lon is not None:
            points.append((dev.lat, dev.lon))
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    return (min(lats) - margin_deg, min(lons) - margin_deg, max(lats) + margin_deg, max(lons) + margin_deg)


def _norm(value: Any) -> str | None:
    try:
        text = clean_str(value)
    except TranslateError:
        return None
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return text.lower()
    return repr(round(number, 6)) if number == number else text


class _Tally:
    """Counters of one feed while its units are read."""

    def __init__(self, feed: str) -> None:
        self.feed = feed
        self.present: Counter[str] = Counter()
        self.values: dict[str, set[str]] = {}
        self.record_values: dict[str, set[str]] = {}
        self.unmapped: Counter[str] = Counter()
        self.flags: Counter[tuple[str, str]] = Counter()
        self.flag_example: dict[tuple[str, str], str] = {}
        self.codes: Counter[tuple[str, str]] = Counter()
        self.bounds: Counter[str] = Counter()
        self.bounds_example: dict[str, str] = {}
        self.times: Counter[str] = Counter()
        self.dead: Counter[tuple[str, str]] = Counter()
        self.dead_example: dict[tuple[str, str], str] = {}

    def natives(self, items: Iterable[Mapping[str, Any]]) -> None:
        for item in items:
            for name, value in _flatten(item).items():
                norm = _norm(value)
                if norm is None:
                    self.present.setdefault(name, 0)
                    continue
                self.present[name] += 1
                vals = self.values.setdefault(name, set())
                if len(vals) < 200:
                    vals.add(norm)

    def record(self, record: Mapping[str, Any]) -> None:
        for name, value in _flatten({k: v for k, v in record.items() if k not in _META_FIELDS}).items():
            norm = _norm(value)
            if norm is not None:
                self.record_values.setdefault(name, set()).add(norm)


def _dead_reason(reason: str) -> str:
    return re.sub(r"^row \d+( \([^)]*\))?:\s*", "", reason)[:160]


def _time_text(record: Mapping[str, Any]) -> str | None:
    for k, v in record.items():
        if k.endswith("_local") and isinstance(v, str):
            return v
    return None


class _Inspector:
    def __init__(self, normalizer: Normalizer, bounds: tuple[float, float, float, float]) -> None:
        self.normalizer = normalizer
        self.bounds = bounds
        self.store = default_store()

    def feed_report(self, feed: str, units: list[_Unit], ctx: SourceContext) -> FeedReport:
        spec = source_registry.feed(feed)
        profile = ctx.profile(feed)
        rep = FeedReport(feed, spec.source, units[0].detected if units else "", profile_files=list(profile.sources))
        tally = _Tally(feed)
        events: list[tuple[dict[str, Any], dict[str, Any], bool]] = []  # event, record, warned already
        for unit in units:
            if (unit.input or unit.name) not in rep.inputs:
                rep.inputs.append(unit.input or unit.name)
            rep.deliveries += 1
            res = unit.result
            tally.natives(unit.natives)
            for name, n in res.unmapped.items():
                tally.unmapped[name] += n
            rep.dropped += res.dropped
            for rej in res.rejected:
                key = (rej.error_type, _dead_reason(rej.reason))
                tally.dead[key] += 1
                tally.dead_example.setdefault(key, unit.name)
            for record in res.records:
                tally.record(record)
                for flag in record.get("quality") or []:
                    key = (str(flag.get("field")), str(flag.get("reason")))
                    tally.flags[key] += 1
                    if flag.get("value") is not None:
                        tally.flag_example.setdefault(key, str(flag["value"])[:40])
                stage = "schema"  # the receiver encodes the record, the worker normalizes it
                try:
                    self.store.encode(res.schema, record)
                    stage = "normalize"
                    event = self.normalizer.normalize(spec.source, record)
                except Exception as exc:  # noqa: BLE001 - what the receiver/worker would dead-letter
                    key = (f"{stage}:{type(exc).__name__}", _dead_reason(str(exc)))
                    tally.dead[key] += 1
                    tally.dead_example.setdefault(key, unit.name)
                    continue
                events.append((event, record, bool(event.get("quality"))))
        rep.dead_lettered = sum(tally.dead.values())
        rep.records = rep.dead_lettered + len(events)
        warned = self._events(events, tally)
        rep.warned = warned
        rep.accepted = len(events) - warned
        rep.fields = self._fields(tally, profile.get("aliases") or {}, profile.get("ignore") or ())
        rep.unknown_codes, rep.parse_failures = self._flags(tally)
        rep.unknown_codes += [Finding(f, v, n) for (f, v), n in tally.codes.most_common()]
        rep.out_of_bounds = [Finding(k, "outside the county's bounds", n, tally.bounds_example.get(k))
                             for k, n in tally.bounds.most_common()]
        rep.times = [Finding("occurred_at", reason, n) for reason, n in tally.times.most_common()]
        rep.dead_letters = [Finding(etype, reason, n, tally.dead_example.get((etype, reason)))
                            for (etype, reason), n in tally.dead.most_common()]
        return rep

    def _events(self, events: list[tuple[dict[str, Any], dict[str, Any], bool]], tally: _Tally) -> int:
        south, west, north, east = self.bounds
        times = [int(e["occurred_at"]) for e, _, _ in events]
        median = statistics.median(times) if times else 0
        warned = 0
        for event, record, noted in events:
            warn = noted
            loc = event.get("location") or {}
            lat, lon = loc.get("lat"), loc.get("lon")
            if lat is not None and lon is not None and not (south <= lat <= north and west <= lon <= east):
                key = "latitude/longitude"
                tally.bounds[key] += 1
                tally.bounds_example.setdefault(key, f"{lat:.4f}, {lon:.4f}")
                warn = True
            occurred, received = int(event["occurred_at"]), int(event["received_at"])
            reasons = []
            if occurred > received + FUTURE_SLACK_MS:
                reasons.append("in the future (after it was received)")
            if occurred < median - FAR_BEFORE_MS:
                reasons.append("more than 30 days before the sample's median")
            text = _time_text(record)
            if text is not None and not _OFFSET.search(text.strip()) \
                    and abs(abs(received - occurred) - UTC_SHIFT_MS) <= UTC_SHIFT_SLACK_MS:
                reasons.append("no offset and 8 h off the received time (UTC written as local?)")
            for r in reasons:
                tally.times[r] += 1
            warn = warn or bool(reasons)
            if event.get("kind") == "other":
                codes = [f"{f}={record.get(f)}" for f in CODE_FIELDS.get(tally.feed, ()) if record.get(f) is not None]
                if codes:
                    tally.codes[(" ".join(codes), "kind fell back to other")] += 1
                    warn = True
            warned += warn
        return warned

    @staticmethod
    def _fields(tally: _Tally, aliases: Mapping[str, Any], ignore: Iterable[str]) -> list[FieldMapping]:
        by_alias: dict[str, list[tuple[str, int]]] = {}  # native name → [(record field, rank in its list)]
        for target, names in aliases.items():
            for rank, name in enumerate([names] if isinstance(names, str) else names or ()):
                by_alias.setdefault(str(name).strip().lower(), []).append((str(target), rank))
        # list-of-object fields (persons[], parties[]): their record fields are prefixed with the stem
        stems = {_stem(hits[0][0]) for name in tally.present if "[]" in name
                 for hits in [by_alias.get(name.split("[", 1)[0].strip().lower(), [])] if hits}
        stems |= {_stem(t) for t in aliases if _stem(t) != t and any(o.startswith(_stem(t) + "_") for o in aliases)}
        unmapped = {k.strip().lower(): n for k, n in tally.unmapped.items()}
        ignored = {str(k).strip().lower() for k in ([ignore] if isinstance(ignore, str) else ignore)}
        names = list(tally.present) + [k for k in tally.unmapped if k not in tally.present]
        out = []
        first: dict[str, tuple[int, str]] = {}  # record field → the best-ranked native present for it
        for name in names:
            n = tally.present.get(name, 0) or tally.unmapped.get(name, 0)
            low = name.strip().lower().lstrip("\ufeff")
            top = low.split(".", 1)[0].split("[", 1)[0]
            leaf = low.rsplit(".", 1)[-1]
            alias = _alias_of(low, top, leaf, by_alias, stems)
            if low in ignored or top in ignored:
                out.append(FieldMapping(name, n, None, "ignored"))
            elif alias is not None:
                out.append(FieldMapping(name, n, alias[0], "alias"))
                if n and low == top and (alias[0] not in first or alias[1] < first[alias[0]][0]):
                    first[alias[0]] = (alias[1], name)
            elif low in unmapped or top in unmapped:
                out.append(FieldMapping(name, unmapped.get(low, unmapped.get(top, n)), None, "unmapped"))
            elif not tally.values.get(name):
                out.append(FieldMapping(name, 0, None, "empty"))
            else:
                match = _value_match(name, tally.values[name], tally.record_values)
                out.append(FieldMapping(name, n, match, "value" if match else "unused"))
        for m in out:  # a second column for the same record field is read only where the first is empty
            if m.how == "alias" and m.maps_to in first and first[m.maps_to][1] != m.native \
                    and not any(c in m.native for c in ".["):
                m.how, m.after = "fallback", first[m.maps_to][1]
        order = {"unmapped": 0, "unused": 1, "alias": 2, "value": 2, "fallback": 3, "ignored": 4, "empty": 5}
        return sorted(out, key=lambda f: order[f.how])

    @staticmethod
    def _flags(tally: _Tally) -> tuple[list[Finding], list[Finding]]:
        unknown, failed = [], []
        for (fld, reason), n in tally.flags.most_common():
            example = tally.flag_example.get((fld, reason))
            if _UNKNOWN_CODE.search(reason):
                unknown.append(Finding(fld, reason, n, example))
            else:
                failed.append(Finding(fld, reason, n, None))  # the reason says what; values stay out
        return unknown, failed


def _stem(target: str) -> str:
    """persons → person, parties → party (the prefix of the record fields read inside each item)."""
    return target[:-3] + "y" if target.endswith("ies") else target[:-1] if target.endswith("s") else target


def _alias_of(low: str, top: str, leaf: str, by_alias: Mapping[str, list[tuple[str, int]]],
              stems: set[str]) -> tuple[str, int] | None:
    """The (record field, rank) a native name is an alias of. A nested name (``persons[].name``,
    ``location.lng``) is looked up by its leaf among the fields of its object: prefixed with the
    object's stem for list items, never another list's prefixed fields; else its top key's field."""
    if low in by_alias:
        return by_alias[low][0]
    if low == top:
        return None
    top_hits = by_alias.get(top, [])
    stem = _stem(top_hits[0][0]) if top_hits else None
    leaf_hits = by_alias.get(leaf, [])
    inside = [h for h in leaf_hits if stem is not None and stem in stems and h[0].startswith(stem + "_")]
    if not inside and not (stem in stems):
        inside = [h for h in leaf_hits if not any(h[0].startswith(s + "_") for s in stems)]
    if inside:
        return min(inside, key=lambda h: h[1])
    return top_hits[0] if top_hits else None


def _simplify(name: str) -> str:
    return re.sub(r"[^0-9a-z\u4e00-\u9fff]", "", name.lower())


def _value_match(native: str, values: set[str], record_values: Mapping[str, set[str]]) -> str | None:
    """The record field that holds most of a native field's values (at least half of them); ties
    go to the more similar name (AlarmPriority → alarm_priority, not alarm_method); native_id last."""
    leaf = _simplify(native.rsplit(".", 1)[-1])
    best: tuple[float, bool] | None = None
    target = None
    for name, vals in record_values.items():
        n = len(values & vals)
        if not n or n * 2 < len(values):
            continue
        score = (n / len(values) + SequenceMatcher(None, leaf, _simplify(name)).ratio(), name != "native_id")
        if best is None or score > best:
            best, target = score, name
    return target


# --------------------------------------------------------------------------- entry points
def _normalizer(secret: bytes, timezone: str, devices: DeviceRegistry | None) -> Normalizer:
    return source_registry.normalizer(secret, timezone, devices)


def _report(target: str, units_by_feed: Mapping[str, list[_Unit]], ctx: SourceContext, secret: bytes,
            timezone: str, skipped: list[str]) -> InspectReport:
    bounds = county_bounds(ctx.devices)
    inspector = _Inspector(_normalizer(secret, timezone, ctx.devices), bounds)
    feeds = [inspector.feed_report(feed, units, ctx) for feed, units in units_by_feed.items() if units]
    return InspectReport(target, feeds, bounds, skipped)


def inspect_path(path: Path, *, feed: str | None = None, devices: DeviceRegistry | None = None,
                 profile_dir: Path | None = None, secret: bytes = b"inspect", timezone: str = DEFAULT_TIMEZONE,
                 received_at_ms: int | None = None) -> InspectReport:
    """Inspect a sample file, a folder of them or a simulator folder (see module contract).

    `feed` forces the feed (else each file's is detected); `received_at_ms` stamps the deliveries
    (default: now; a simulator folder keeps its delivery log's stamps)."""
    path = Path(path)
    if not path.exists():
        raise InspectError(f"{path} does not exist")
    if feed is not None:
        source_registry.feed(feed)  # KeyError names the known feeds
    at = received_at_ms if received_at_ms is not None else int(time.time() * 1000)
    by_feed: dict[str, list[_Unit]] = {}
    skipped: list[str] = []
    if path.is_dir() and (path / "delivery.jsonl").is_file():
        registry = devices if devices is not None else (
            DeviceRegistry.from_csv(path / "registry.csv") if (path / "registry.csv").is_file() else None)
        ctx = source_registry.context(registry, profile_dir)
        for d in iter_deliveries(path, registry, profile_dir=profile_dir, timezone=timezone,
                                 received_at_ms=received_at_ms):
            if feed is not None and d.feed != feed:
                continue
            items = native_items(d.raw, d.content_type or "application/json")
            by_feed.setdefault(d.feed, []).append(
                _Unit(d.feed, f"delivery {d.seq}", d.result, items, "the simulator's delivery log",
                      "delivery.jsonl"))
        return _report(str(path), by_feed, ctx, secret, timezone, skipped)
    if devices is None and path.is_dir() and (path / "devices.csv").is_file():
        devices = DeviceRegistry.from_csv(path / "devices.csv")
    ctx = source_registry.context(devices, profile_dir)
    files = _sample_files(path) if path.is_dir() else [path]
    chosen_of: dict[Path, tuple[str, str]] = {}
    undetected: dict[Path, str] = {}
    for file in files:
        if feed is not None:
            chosen_of[file] = (feed, "--feed")
            continue
        try:
            chosen_of[file] = detect_feed(file.read_bytes(), file.name, ctx)
        except InspectError as exc:
            if not path.is_dir():
                raise
            undetected[file] = str(exc)
    folder_feeds = {f for f, _ in chosen_of.values()}
    for file, why in undetected.items():
        if len(folder_feeds) == 1:  # a file no marker recognises, in a folder of one feed: that feed
            (only,) = folder_feeds
            chosen_of[file] = (only, "the feed of the rest of the folder")
        else:
            skipped.append(why)
    for file in files:
        if file not in chosen_of:
            continue
        chosen, how = chosen_of[file]
        name = str(file.relative_to(path)) if path.is_dir() else file.name
        try:
            units = _file_units(source_registry.feed(chosen), file.read_bytes(), file.name, ctx, at, how)
        except InspectError as exc:
            if not path.is_dir():
                raise
            skipped.append(str(exc))
            continue
        for u in units:
            u.name, u.input = (name if len(units) == 1 else f"{name}:{u.name.rsplit(':', 1)[-1]}"), name
        by_feed.setdefault(chosen, []).extend(units)
    return _report(str(path), by_feed, ctx, secret, timezone, skipped)


def inspect_rows(rows: Sequence[Mapping[str, Any]], feed: str, *, target: str, devices: DeviceRegistry | None = None,
                 profile_dir: Path | None = None, secret: bytes = b"inspect", timezone: str = DEFAULT_TIMEZONE,
                 received_at_ms: int | None = None, raw_format: str | None = None,
                 detected: str = "--feed") -> InspectReport:
    """Inspect rows of a database table or view (`read_database`) as the feed's poller would;
    `detected` says how the feed was chosen."""
    spec = source_registry.feed(feed)
    if spec.translate_rows is None:
        raise InspectError(f"feed {feed!r} has no tabular form; it cannot be read from a table")
    ctx = source_registry.context(devices, profile_dir)
    at = received_at_ms if received_at_ms is not None else int(time.time() * 1000)
    result = spec.translate_rows(rows, at, raw_format or f"{feed}-db", ctx)
    unit = _Unit(feed, target, result, [dict(r) for r in rows], detected)
    return _report(target, {feed: [unit]}, ctx, secret, timezone, [])
