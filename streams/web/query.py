"""Request parameters → Elasticsearch query bodies (pure, no I/O).

Contract: every body produced here has the shape
``{"query": {"bool": {"filter": [jurisdiction_filter(code), <request clauses…>], "must": [<text>]}}, …}``
— the credential's jurisdiction filter is the first, unconditional filter, and whatever the
request says only adds further clauses ANDed with it (so it can narrow, never widen; there is no
``should`` at the top). Free text ``q`` is searched as plain text with ``match`` (no query-string
syntax, so ``admin_code:… OR *`` is just words), after full-width folding and
traditional→simplified conversion (OpenCC t2s), so ``糾紛`` finds ``纠纷``.

Free text matches and scores the texts of the events the credential may see, and nothing else
(`jurisdiction.visible_events_query`): each visible event whose text holds every bigram of ``q``
scores 2, every unigram 1 (constant scores: no BM25 term statistics, which would count the text of
hidden events and of other areas' incidents), an incident the sum over its visible events; ties
by (visible) last seen, then id. So a town or village gets the same ids, order and totals whether
or not events outside its area exist. Dates and times without an offset are local times of ``local_tz`` (``settings.timezone``;
Asia/Shanghai unless configured). Invalid parameters raise `QueryError` (the API answers 400).

A town or village credential filters, sorts, counts and looks up by the events it may see only
(issue 14, `streams.web.jurisdiction`): time, kind, tier and status on its own view of the
incident (``views``), places on its visible events, text on its visible events' text, person and
vehicle keys on its view's keys, an ``admin_code`` parameter on the view of that area — never on
the incident-wide fields computed over hidden events too. A county (or wider) credential filters
on the incident's own fields.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from streams.domain import admin
from streams.domain.text import clean_text
from streams.settings import DEFAULT_TIMEZONE
from streams.web.jurisdiction import (
    ADMIN_PATH_FIELD, is_area_credential, jurisdiction_filter, view_filter, visible_events_filter,
    visible_events_query,
)

MAX_SIZE = 100
DEFAULT_SIZE = 20
MAX_WINDOW = 10_000
MAX_RADIUS_M = 200_000.0
DEFAULT_RADIUS_M = 1_000.0
MAX_Q_LEN = 200
TIERS = frozenset({"village", "town", "county"})
STATUSES = frozenset({"open", "escalated", "closed", "merged", "accepted", "assigned", "resolved"})
SORTS = frozenset({"relevance", "last_seen", "first_seen", "severity"})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_KIND_RE = re.compile(r"^[a-z][a-z_]{0,39}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_KEY_RE = re.compile(r"^(id|phone|plate|name_village):[0-9a-f]{32}$")

# Fields returned in result lists (detail returns all except the private ones below).
LIST_SOURCE: tuple[str, ...] = (
    "incident_id", "status", "merged_into", "kind", "severity", "tier", "admin_code", "county_code",
    "town_codes", "village_codes", "first_seen", "last_seen", "updated_at", "event_count", "sources",
    "location", "events.event_id", "events.admin_code", "events.text", "events.occurred_at",
    "events.kind", "events.source", "events.severity", "links.event_a", "links.event_b",
    "actionable", "escalated", "deadline_at", "assignee", "opened_at", "events.lat", "events.lon",
)
PRIVATE_FIELDS: tuple[str, ...] = (
    "person_keys", "vehicle_keys", "search_text", "admin_path", "event_locations", "views",
    "events.person_keys", "events.vehicle_keys",
)


class QueryError(ValueError):
    """A request parameter is invalid (answered with HTTP 400)."""


@dataclass(frozen=True, slots=True)
class SearchParams:
    """Validated search parameters (all optional)."""

    q: str | None = None
    time_from: int | None = None  # epoch ms, inclusive: incident last_seen >= time_from
    time_to: int | None = None    # epoch ms, inclusive: incident first_seen <= time_to
    kinds: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    admin_code: str | None = None
    near: tuple[float, float] | None = None
    radius_m: float = DEFAULT_RADIUS_M
    bbox: tuple[float, float, float, float] | None = None  # minLat, minLon, maxLat, maxLon
    page: int = 1
    size: int = DEFAULT_SIZE
    sort: str = "relevance"

    def as_audit(self) -> dict[str, Any]:
        """The parameters as recorded in the audit log (digit runs of 7+ in q masked)."""
        out: dict[str, Any] = {}
        for name in ("q", "time_from", "time_to", "admin_code", "near", "bbox", "sort"):
            value = getattr(self, name)
            if value is not None:
                out[name] = mask_digits(value) if name == "q" else value
        for name in ("kinds", "tiers", "statuses"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        if self.near is not None:
            out["radius_m"] = self.radius_m
        out["page"], out["size"] = self.page, self.size
        return out


_DIGITS = re.compile(r"\d{7,}[\dXx]?")


def mask_digits(text: str) -> str:
    """Mask runs of 7+ digits (ID numbers, phones) keeping the first 3 and last 2 characters."""
    return _DIGITS.sub(lambda m: m.group()[:3] + "*" * (len(m.group()) - 5) + m.group()[-2:], text)


def normalize_q(q: str) -> str:
    """Query text as indexed text is: half-width, whitespace-collapsed, simplified Chinese."""
    return clean_text(q)


@lru_cache(maxsize=8)
def _zone(name: str) -> tzinfo:
    return ZoneInfo(name)


def _parse_time(value: str, *, end: bool, tz: tzinfo) -> int:
    """Epoch ms from epoch-ms digits, an ISO 8601 datetime (no offset = local time in `tz`) or a date."""
    v = value.strip()
    if re.fullmatch(r"\d{10,13}", v):
        n = int(v)
        return n * 1000 if len(v) <= 10 else n
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
            d = date.fromisoformat(v)
            dt = datetime.combine(d, time.max if end else time.min, tz)
            return _ms(dt)
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError as exc:
        raise QueryError(f"invalid time {value!r}: use epoch milliseconds, YYYY-MM-DD or ISO 8601") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return _ms(dt)


def _ms(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime (floor, exact integer arithmetic)."""
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def _floats(value: str, n: int, name: str) -> tuple[float, ...]:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != n:
        raise QueryError(f"{name} needs {n} comma-separated numbers")
    try:
        out = tuple(float(p) for p in parts)
    except ValueError as exc:
        raise QueryError(f"{name} needs numbers") from exc
    if any(x != x or x in (float("inf"), float("-inf")) for x in out):
        raise QueryError(f"{name} needs finite numbers")
    return out


def _check_lat_lon(lat: float, lon: float, name: str) -> None:
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise QueryError(f"{name}: latitude must be within ±90 and longitude within ±180")


def _list(value: str | None, allowed: frozenset[str] | None, name: str) -> tuple[str, ...]:
    if not value:
        return ()
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    for item in items:
        if (allowed is not None and item not in allowed) or (allowed is None and not _KIND_RE.match(item)):
            raise QueryError(f"invalid {name}: {item!r}")
    if len(items) > 20:
        raise QueryError(f"too many {name} values")
    return items


def _int(value: str | None, default: int, name: str, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError as exc:
        raise QueryError(f"{name} must be an integer") from exc
    if not lo <= n <= hi:
        raise QueryError(f"{name} must be between {lo} and {hi}")
    return n


def parse_search_params(raw: Mapping[str, str], local_tz: str = DEFAULT_TIMEZONE) -> SearchParams:
    """Validate request query parameters (names as in openapi.yaml) into `SearchParams`.

    `local_tz` (``settings.timezone``) is the zone of dates and of times without an offset.
    """
    q = (raw.get("q") or "").strip() or None
    if q is not None and len(q) > MAX_Q_LEN:
        raise QueryError(f"q longer than {MAX_Q_LEN} characters")
    tz = _zone(local_tz)
    time_from = _parse_time(raw["from"], end=False, tz=tz) if raw.get("from") else None
    time_to = _parse_time(raw["to"], end=True, tz=tz) if raw.get("to") else None
    if time_from is not None and time_to is not None and time_from > time_to:
        raise QueryError("from is after to")
    admin_code = (raw.get("admin_code") or "").strip() or None
    if admin_code is not None and not admin.is_code(admin_code):
        raise QueryError("admin_code must be a 2, 4, 6, 9 or 12 digit admin division code")
    near = None
    radius_m = DEFAULT_RADIUS_M
    if raw.get("near"):
        lat, lon = _floats(raw["near"], 2, "near")
        _check_lat_lon(lat, lon, "near")
        near = (lat, lon)
    if raw.get("radius_m"):
        try:
            radius_m = float(raw["radius_m"])
        except ValueError as exc:
            raise QueryError("radius_m must be a number") from exc
        if not 0 < radius_m <= MAX_RADIUS_M:
            raise QueryError(f"radius_m must be in (0, {MAX_RADIUS_M:.0f}]")
    bbox = None
    if raw.get("bbox"):
        min_lat, min_lon, max_lat, max_lon = _floats(raw["bbox"], 4, "bbox")
        _check_lat_lon(min_lat, min_lon, "bbox")
        _check_lat_lon(max_lat, max_lon, "bbox")
        if min_lat > max_lat or min_lon > max_lon:
            raise QueryError("bbox is minLat,minLon,maxLat,maxLon with min ≤ max")
        bbox = (min_lat, min_lon, max_lat, max_lon)
    size = _int(raw.get("size"), DEFAULT_SIZE, "size", 1, MAX_SIZE)
    page = _int(raw.get("page"), 1, "page", 1, MAX_WINDOW)
    if page * size > MAX_WINDOW:
        raise QueryError(f"page × size must not exceed {MAX_WINDOW}")
    sort = (raw.get("sort") or "relevance").strip()
    if sort not in SORTS:
        raise QueryError(f"sort must be one of {sorted(SORTS)}")
    return SearchParams(
        q=q, time_from=time_from, time_to=time_to,
        kinds=_list(raw.get("kind"), None, "kind"),
        tiers=_list(raw.get("tier"), TIERS, "tier"),
        statuses=_list(raw.get("status"), STATUSES, "status"),
        admin_code=admin_code, near=near, radius_m=radius_m, bbox=bbox,
        page=page, size=size, sort=sort,
    )


#: Constant score of an event whose text holds every bigram of ``q`` / every unigram (``.uni``).
BIGRAM_SCORE, UNIGRAM_SCORE = 2.0, 1.0


def event_text_query(text: str) -> dict[str, Any]:
    """One event's text matches `text` (all its bigrams, or all its unigrams), scored by constants
    only (`BIGRAM_SCORE` + `UNIGRAM_SCORE`): the score never depends on other documents."""
    return {"bool": {"should": [
        {"constant_score": {"filter": {"match": {"events.text": {"query": text, "operator": "and"}}},
                            "boost": BIGRAM_SCORE}},
        {"constant_score": {"filter": {"match": {"events.text.uni": {"query": text, "operator": "and"}}},
                            "boost": UNIGRAM_SCORE}},
    ], "minimum_should_match": 1}}


def _text_clause(text: str, admin_code: str) -> dict[str, Any]:
    """Full-text match and score over the texts the credential may see only (the events visible to
    it, `visible_events_query`), so neither a hidden event's words nor the term statistics of
    text outside the jurisdiction change which incidents match or their order."""
    return visible_events_query(admin_code, event_text_query(text))


def _geo_clauses(p: SearchParams, field: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if p.near is not None:
        out.append({"geo_distance": {"distance": f"{p.radius_m}m", field: {"lat": p.near[0], "lon": p.near[1]}}})
    if p.bbox is not None:
        min_lat, min_lon, max_lat, max_lon = p.bbox
        out.append({"geo_bounding_box": {field: {
            "top_left": {"lat": max_lat, "lon": min_lon},
            "bottom_right": {"lat": min_lat, "lon": max_lon},
        }}})
    return out


_NOTHING: dict[str, Any] = {"bool": {"must_not": [{"match_all": {}}]}}


def _incident_field_clauses(p: SearchParams, prefix: str) -> list[dict[str, Any]]:
    """Time (overlap with first/last seen), kind and tier clauses on the incident's own fields
    (``prefix`` "") or on a credential's view of it (``prefix`` "views.")."""
    out: list[dict[str, Any]] = []
    if p.time_from is not None:
        out.append({"range": {f"{prefix}last_seen": {"gte": p.time_from}}})
    if p.time_to is not None:
        out.append({"range": {f"{prefix}first_seen": {"lte": p.time_to}}})
    if p.kinds:
        out.append({"terms": {f"{prefix}kind": list(p.kinds)}})
    if p.tiers:
        out.append({"terms": {f"{prefix}tier": list(p.tiers)}})
    return out


def _area_clauses(p: SearchParams, admin_code: str) -> list[dict[str, Any]]:
    """A town/village credential's request filters, on what it may see only."""
    view_clauses = _incident_field_clauses(p, "views.")
    if p.statuses:
        view_clauses.append({"terms": {"views.status": list(p.statuses)}})
    filters = [view_filter(admin_code, view_clauses)]  # always: the incident has an event visible here
    if p.admin_code and not admin.within(admin_code, p.admin_code):
        # below the credential: incidents with an event in that area; elsewhere: nothing
        filters.append(view_filter(p.admin_code) if admin.within(p.admin_code, admin_code) else _NOTHING)
    for clause in _geo_clauses(p, "events.location"):
        filters.append(visible_events_filter(admin_code, [clause]))
    return filters


def _request_clauses(p: SearchParams, admin_code: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(filter clauses, scoring clauses) that the request asks for, for this credential's area."""
    must: list[dict[str, Any]] = []
    if p.q:
        text = normalize_q(p.q)
        if text:
            must.append(_text_clause(text, admin_code))
    if is_area_credential(admin_code):
        return _area_clauses(p, admin_code), must
    filters = _incident_field_clauses(p, "")
    if p.statuses:
        filters.append({"terms": {"status": list(p.statuses)}})
    if p.admin_code:
        # Narrowing only: ANDed with the jurisdiction filter, so a code outside it matches nothing.
        filters.append({"term": {ADMIN_PATH_FIELD: p.admin_code}})
    filters.extend(_geo_clauses(p, "event_locations"))
    return filters, must


def scoped_query(admin_code: str, filters: list[dict[str, Any]], must: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``bool`` query whose first filter is the jurisdiction filter, the request's filters nested
    below it; scoring clauses (`must`, ANDed) sit beside it in query context, so they score."""
    out: dict[str, Any] = {"bool": {"filter": [jurisdiction_filter(admin_code), {"bool": {"filter": filters}}]}}
    if must:
        out["bool"]["must"] = must
    return out


def _by(field: str, admin_code: str) -> dict[str, Any]:
    """Descending sort on an incident field — a town/village credential's own view of it."""
    if not is_area_credential(admin_code):
        return {field: "desc"}
    return {f"views.{field}": {"order": "desc", "nested": {
        "path": "views", "filter": {"term": {"views.area": admin_code}}}}}


def _sort(p: SearchParams, admin_code: str) -> list[Any]:
    if p.sort == "relevance" and p.q:
        return ["_score", _by("last_seen", admin_code), {"incident_id": "asc"}]
    if p.sort == "severity":
        return [_by("severity", admin_code), _by("last_seen", admin_code), {"incident_id": "asc"}]
    if p.sort == "first_seen":
        return [_by("first_seen", admin_code), {"incident_id": "asc"}]
    return [_by("last_seen", admin_code), {"incident_id": "asc"}]


def build_search(params: SearchParams, admin_code: str) -> dict[str, Any]:
    """Search body for `params`, scoped to the credential's `admin_code`."""
    filters, must = _request_clauses(params, admin_code)
    return {
        "query": scoped_query(admin_code, filters, must),
        "from": (params.page - 1) * params.size,
        "size": params.size,
        "sort": _sort(params, admin_code),
        "track_total_hits": True,
        "_source": {"includes": list(LIST_SOURCE)},
    }


def build_detail(incident_id: str, admin_code: str) -> dict[str, Any]:
    """Body fetching one incident by id — inside the jurisdiction only (else zero hits → 404)."""
    if not _ID_RE.match(incident_id or ""):
        raise QueryError("invalid incident id")
    clauses: list[dict[str, Any]] = [{"ids": {"values": [incident_id]}}]
    if is_area_credential(admin_code):
        clauses.append(view_filter(admin_code))
    return {
        "query": scoped_query(admin_code, clauses),
        "size": 1,
        "_source": {"excludes": list(PRIVATE_FIELDS)},
    }


def build_lookup(keys: list[str], admin_code: str, *, page: int = 1, size: int = DEFAULT_SIZE) -> dict[str, Any]:
    """Incidents carrying any of the pseudonymous `keys` (``id:…``, ``phone:…``, ``plate:…``) — for
    a town or village credential, carried by an event it may see (its view's keys), never by a
    hidden one; a county (or wider) credential sees every event: the incident's keys."""
    if not keys or not all(_KEY_RE.match(k) for k in keys):
        raise QueryError("lookup keys must be kind:32-hex pseudonymous keys")
    if not (1 <= size <= MAX_SIZE and page >= 1 and page * size <= MAX_WINDOW):
        raise QueryError("invalid page/size")
    def carried(prefix: str) -> dict[str, Any]:
        return {"bool": {"should": [
            {"terms": {f"{prefix}person_keys": list(keys)}},
            {"terms": {f"{prefix}vehicle_keys": list(keys)}},
        ], "minimum_should_match": 1}}

    clauses = [view_filter(admin_code, [carried("views.")])] if is_area_credential(admin_code) else [carried("")]
    return {
        "query": scoped_query(admin_code, clauses),
        "from": (page - 1) * size,
        "size": size,
        "sort": [_by("last_seen", admin_code), {"incident_id": "asc"}],
        "track_total_hits": True,
        "_source": {"includes": list(LIST_SOURCE)},
    }


def build_stats(params: SearchParams, admin_code: str) -> dict[str, Any]:
    """Aggregation body: counts per area (county/town/village, each × kind), kind, tier, status.

    Area buckets are restricted (``include`` regex) to codes inside the jurisdiction, so an
    incident that also touches a neighbouring area does not reveal that area's counts. A town or
    village credential counts kinds and tiers on its own view of each incident (one view per
    incident and area, so view counts are incident counts) — statuses too: a nested ``visible`` filter whose
    ``values`` terms hold the buckets.
    """
    filters, must = _request_clauses(params, admin_code)
    inside = re.escape(jurisdiction_filter(admin_code)["term"][ADMIN_PATH_FIELD]) + ".*"

    def terms(field_name: str, size: int) -> dict[str, Any]:
        if not is_area_credential(admin_code):
            return {"terms": {"field": field_name, "size": size}}
        return {"nested": {"path": "views"}, "aggs": {"visible": {
            "filter": {"term": {"views.area": admin_code}},
            "aggs": {"values": {"terms": {"field": f"views.{field_name}", "size": size}}}}}}

    by_kind = {"by_kind": terms("kind", 50)}

    def area(field_name: str, size: int) -> dict[str, Any]:
        return {"terms": {"field": field_name, "size": size, "include": inside}, "aggs": by_kind}

    return {
        "query": scoped_query(admin_code, filters, must),
        "size": 0,
        "track_total_hits": True,
        "aggs": {
            "by_county": area("county_code", 100),
            "by_town": area("town_codes", 200),
            "by_village": area("village_codes", 1000),
            "by_kind": terms("kind", 50),
            "by_tier": terms("tier", 10),
            "by_status": terms("status", 10),
        },
    }


QUEUE_STATUSES = frozenset({"open", "accepted", "assigned", "escalated"})
MAX_QUEUE = 200


def build_queue(admin_code: str, *, tiers: tuple[str, ...] = (), statuses: tuple[str, ...] = (),
                size: int = 100) -> dict[str, Any]:
    """The work queue: actionable incidents not resolved or merged in the jurisdiction, handling
    deadline soonest first (none last), then severity (the credential's view) high first.

    ``tiers`` filter on the incident's handling tier (who must act), ``statuses`` on its status
    (a subset of `QUEUE_STATUSES`)."""
    if not 1 <= size <= MAX_QUEUE:
        raise QueryError(f"size must be between 1 and {MAX_QUEUE}")
    if any(t not in TIERS for t in tiers):
        raise QueryError(f"tier must be among {sorted(TIERS)}")
    if any(s not in QUEUE_STATUSES for s in statuses):
        raise QueryError(f"status must be among {sorted(QUEUE_STATUSES)}")
    clauses: list[dict[str, Any]] = [
        {"bool": {"must_not": [{"term": {"actionable": False}}]}},
        {"terms": {"status": list(statuses or QUEUE_STATUSES)}},
    ]
    if tiers:
        clauses.append({"terms": {"tier": list(tiers)}})
    if is_area_credential(admin_code):
        clauses.append(view_filter(admin_code))
    return {
        "query": scoped_query(admin_code, clauses),
        "size": size,
        "sort": [{"deadline_at": {"order": "asc", "missing": "_last"}}, _by("severity", admin_code),
                 {"incident_id": "asc"}],
        "track_total_hits": True,
        "_source": {"includes": list(LIST_SOURCE)},
    }
