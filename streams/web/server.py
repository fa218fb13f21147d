"""aiohttp app: jurisdiction-scoped incident search API + the static page.

Contract (`make_app(settings, es_client, credentials, audit)`):
- ``GET /`` and ``/static/*``: the page (no external resources). ``GET /healthz``: 200 when
  Elasticsearch answers, else 503 (no auth). ``GET /api/openapi.yaml``: the API description.
- Every other ``/api/*`` route needs ``Authorization: Bearer <token>`` (401 otherwise) and runs
  with the credential's admin code as a server-side filter whatever the request says:
  ``GET /api/incidents``, ``GET /api/incidents/{id}`` (404 outside the jurisdiction, exactly as
  for an unknown id), ``POST /api/lookup`` (``{id_number|phone|plate}`` hashed here with the
  person-key secret; the clear value is never logged, stored or echoed), ``GET /api/stats``,
  ``GET /api/whoami``. Searches, lookups, detail views and stats each append one audit record.
- Denied ``/api/*`` requests (400, 401, 403, 413, 429) are audited too, by the middleware when the
  handler did not (`DeniedRecorder`: at most one full record per client address per
  ``Settings.audit_denied_detail_s``, then counters). Failed-token attempts are limited per client
  address (``auth_fail_limit`` per ``auth_fail_window_s``, `FailureLimiter`): past the limit every
  ``/api/*`` request of that client gets 429 with ``Retry-After`` until the window frees up.
- The work of a center (issue 15): ``POST /api/incidents/{id}/actions`` (accept, assign, note,
  resolve, reopen, escalate — 400 malformed body, 404 outside the jurisdiction exactly as for
  reading it, 403 when the credential's tier is below the incident's, 409 when the lifecycle
  refuses the transition; 202 ``{disposition_id, status: "queued"}`` only after Kafka acknowledged
  the pingan.Disposition on ``dispositions.v1``; 503 + ``Retry-After`` when Kafka is away; every
  attempt audited), ``GET /api/queue`` (actionable, unresolved incidents, deadline soonest first,
  then severity), ``GET /api/stream`` (server-sent events: incidents and dispositions as they
  change, filtered per credential: `streams.web.operations`, `streams.web.live`) and
  ``GET /api/areas`` (the jurisdiction's towns and villages with reference points, for the map).
  The decisions are pure functions in `streams.web.operations`.
- ``GET /schemas/{fingerprint}``, ``/schemas/{name}/versions``, ``/schemas``: the read-only schema
  store (no credential), `streams.web.schema_routes`.
- Responses hold only masked displays: pseudonymous keys, ``admin_path`` and search text are
  stripped; events outside the jurisdiction are removed from cross-area incidents (and not
  counted), and for a town or village credential kind, severity, tier, status, owner, first/last
  seen and version are those of its visible events (`jurisdiction.incident_view`), as are its
  filters, sorts, free-text matches and scores, key lookups and stats.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from elasticsearch import AsyncElasticsearch, NotFoundError, TransportError

from connectors.elasticsearch.admin import IndexNames
from connectors.ingest.producer import DeliveryError, ProducerConfig, RecordProducer
from streams.domain import admin, gazetteer, lifecycle
from streams.domain.identity import PersonKeyer
from streams.domain.ruleset import load_ruleset
from streams.domain.tiers import TIER_NAMES_CN, TierRules
from streams.settings import Settings
from streams.web import operations
from streams.web.audit import AuditLog, DeniedRecorder
from streams.web.auth import Credentials, FailureLimiter, Principal, bearer_token
from streams.web.jurisdiction import incident_view, redact_incident
from streams.web.live import DISPOSITIONS_TOPIC, LiveHub
from streams.web.schema_routes import SchemaSource, add_schema_routes
from streams.web.query import (
    PRIVATE_FIELDS, QueryError, build_detail, build_lookup, build_queue, build_search, build_stats,
    mask_digits, parse_search_params,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
OPENAPI_PATH = HERE / "openapi.yaml"
MAX_BODY = 16 * 1024
SNIPPET_CHARS = 120

SETTINGS_KEY = web.AppKey("settings", Settings)
ES_KEY = web.AppKey("es", AsyncElasticsearch)
CREDENTIALS_KEY = web.AppKey("credentials", Credentials)
AUDIT_KEY = web.AppKey("audit", AuditLog)
DENIED_KEY = web.AppKey("denied", DeniedRecorder)
LIMITER_KEY = web.AppKey("auth_limiter", FailureLimiter)
KEYER_KEY = web.AppKey("keyer", PersonKeyer)
INDEX_KEY = web.AppKey("index", str)
PRODUCER_KEY = web.AppKey("producer", RecordProducer)
HUB_KEY = web.AppKey("live_hub", LiveHub)
RULES_KEY = web.AppKey("tier_rules", TierRules)
SHUTDOWN_KEY = web.AppKey("shutdown", asyncio.Event)
PRINCIPAL = web.RequestKey("principal", Principal)
AUDITED = web.RequestKey("audited", bool)

_UPPER_NAMES = {gazetteer.PROVINCE_CODE: "四川省", gazetteer.PREFECTURE_CODE: "阿坝藏族羌族自治州"}
_PUBLIC_PATHS = frozenset({"/healthz", "/api/openapi.yaml"})
_DENIED_STATUSES = frozenset({400, 401, 403, 413, 429})
DISPOSITION_SCHEMA = "pingan.Disposition"
SEND_TIMEOUT_S = 10.0
RETRY_AFTER_S = 5
HEARTBEAT_S = 15.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def area_name(code: str | None) -> str | None:
    """Chinese name of an admin code (province … village) when known."""
    if not code:
        return None
    return _UPPER_NAMES.get(code) or gazetteer.name_of(code)


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings (free text may contain identifiers) or auth headers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %s %.3fs', request.remote, request.method, request.path,
                         response.status, time)


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def tile_origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of the configured tile URL template (allowed as an image source)."""
    if not url or "://" not in url:
        return None
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if scheme not in ("http", "https") or not host or any(c in host for c in "{}' ;"):
        return None
    return f"{scheme}://{host}"


def security_headers(tile_url: str | None) -> dict[str, str]:
    """The headers every response carries (the county's tile server is the only outside image source)."""
    img = " ".join(x for x in ("'self' data:", tile_origin(tile_url)) if x)
    return {
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {img}; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    }


def _apply_security_headers(request: web.Request, resp: web.StreamResponse) -> None:
    for name, value in security_headers(request.app[SETTINGS_KEY].map_tile_url).items():
        resp.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        resp.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    if not resp.prepared:  # a stream (SSE) set its headers before sending them
        _apply_security_headers(request, resp)
    return resp


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _action_of(request: web.Request) -> str:
    path = request.path
    if path == "/api/incidents":
        return "search"
    if path.startswith("/api/incidents/") and path.endswith("/actions"):
        return "action"
    if path.startswith("/api/incidents/"):
        return "detail"
    return path.removeprefix("/api/").split("/", 1)[0] or "api"


def _audit_denied(request: web.Request, status: int, reason: str) -> None:
    """Audit a denied request (rate-limited detail per client address)."""
    p = request.get(PRINCIPAL)
    detail = {"method": request.method, "path": mask_digits(request.path[:200]), "reason": mask_digits(reason[:200])}
    request.app[DENIED_KEY].record(_client(request), user=p.user if p else "", admin_code=p.admin_code if p else "",
                                   action=_action_of(request), status=status, detail=detail)


def _error_text(resp: web.StreamResponse) -> str:
    body = getattr(resp, "text", None) if isinstance(resp, web.Response) else None
    return body if isinstance(body, str) else (resp.reason or "")


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/") or request.path in _PUBLIC_PATHS:
        return await handler(request)
    limiter = request.app[LIMITER_KEY]
    wait = limiter.retry_after(_client(request))
    if wait is not None:
        _audit_denied(request, 429, "too many failed token attempts")
        return _json_error(429, "too many failed attempts", **{"Retry-After": str(wait)})
    token = bearer_token(request.headers.get("Authorization"))
    principal = request.app[CREDENTIALS_KEY].authenticate(token)
    if principal is None:
        if token is not None:
            limiter.failed(_client(request))
        _audit_denied(request, 401, "unknown token" if token is not None else "no bearer token")
        return _json_error(401, "unauthorized", **{"WWW-Authenticate": 'Bearer realm="pingan"'})
    request[PRINCIPAL] = principal
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        if exc.status in _DENIED_STATUSES and not request.get(AUDITED):
            _audit_denied(request, exc.status, exc.reason or "")
        if exc.status < 400:
            raise
        # aiohttp's own refusals (unknown path 404, method 405, body over the limit 413) in the
        # API's error shape, keeping their headers (Allow)
        keep = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return _json_error(exc.status, exc.reason or "error", **keep)
    if resp.status in _DENIED_STATUSES and not request.get(AUDITED):
        _audit_denied(request, resp.status, _error_text(resp))
    return resp


def _principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _audit(request: web.Request, action: str, filter: Mapping[str, Any], count: int, status: int = 200) -> None:
    p = _principal(request)
    request.app[AUDIT_KEY].record(user=p.user, admin_code=p.admin_code, action=action, filter=filter,
                                  result_count=count, status=status)
    request[AUDITED] = True


async def _search(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    # Body fields as keyword arguments (the 7.17 client deprecates ``body=`` for search).
    kwargs = {("from_" if k == "from" else k): v for k, v in body.items()}
    return await request.app[ES_KEY].search(index=request.app[INDEX_KEY], **kwargs)


def _backend_error(exc: Exception) -> web.Response:
    log.warning("search backend error: %s", type(exc).__name__)
    return _json_error(503, "search backend unavailable")


def _total(resp: Mapping[str, Any]) -> int:
    total = resp.get("hits", {}).get("total", 0)
    return int(total.get("value", 0) if isinstance(total, Mapping) else total)


def _present_event(ev: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "event_id": ev.get("event_id"), "source": ev.get("source"), "kind": ev.get("kind"),
        "occurred_at": ev.get("occurred_at"), "text": ev.get("text"), "lat": ev.get("lat"),
        "lon": ev.get("lon"), "admin_code": ev.get("admin_code"), "admin_name": area_name(ev.get("admin_code")),
        "persons": list(ev.get("persons") or []),
        "quality": [{"field": q.get("field"), "reason": q.get("reason")} for q in ev.get("quality") or []],
    }


def present_summary(source: Mapping[str, Any], admin_code: str) -> dict[str, Any]:
    """A result-list entry (visible events only; no keys, no location or count of hidden events;
    kind, severity, tier, status, owner and first/last seen from the visible events: `incident_view`)."""
    doc = redact_incident(admin_code, source)
    view = incident_view(admin_code, source)
    events = sorted(doc.get("events") or [], key=lambda e: e.get("occurred_at") or 0)
    snippet = next((e.get("text") for e in events if e.get("text")), "") or ""
    return {
        "incident_id": doc.get("incident_id"), "status": view["status"], "kind": view["kind"],
        "severity": view["severity"], "tier": view["tier"], "admin_code": view["admin_code"],
        "admin_name": area_name(view["admin_code"]), "first_seen": view["first_seen"],
        "last_seen": view["last_seen"], "event_count": _event_count(source, admin_code, len(events)),
        "sources": sorted({e.get("source") for e in events if e.get("source")}),
        "snippet": snippet[:SNIPPET_CHARS],
        "lat": _visible_point(events, "lat"), "lon": _visible_point(events, "lon"),
        **_lifecycle_summary(_lifecycle_source(source, doc, view)),
    }


def _lifecycle_source(source: Mapping[str, Any], doc: Mapping[str, Any], view: Mapping[str, Any]) -> Mapping[str, Any]:
    """The lifecycle a credential may see: the incident's own when it sees every event; for a
    credential that sees only part of it, only its view's status and tier — the deadline,
    escalation reasons ("事件涉及2个村") and actions describe the hidden part too."""
    if len(doc.get("events") or ()) >= len(source.get("events") or ()):
        return source
    return {"actionable": source.get("actionable", True), "status": view["status"], "tier": view["tier"]}


def _event_count(source: Mapping[str, Any], admin_code: str, visible: int) -> int:
    """How many events the credential is told the incident has: the true count (``event_count``;
    the document lists at most the earliest 300 summaries) for a credential whose area holds the
    incident's county, else the number of listed events it can see."""
    if admin.within(source.get("county_code"), admin_code):
        return max(int(source.get("event_count") or 0), visible)
    return visible


def _visible_point(events: list[Mapping[str, Any]], axis: str) -> float | None:
    values = [float(e[axis]) for e in events if e.get(axis) is not None]
    return sum(values) / len(values) if values else None


def _lifecycle_summary(source: Mapping[str, Any]) -> dict[str, Any]:
    """Queue fields: who must act (``handling_tier``, the incident's own tier — in result lists, for a
    town/village credential that cannot see every event, the tier of its view), deadline, assignee."""
    return {"actionable": source.get("actionable", True) is not False,
            "status_name": lifecycle.STATUS_NAMES_CN.get(operations.lifecycle_status(source.get("status")),
                                                         source.get("status")),
            "handling_tier": source.get("tier"), "escalated": bool(source.get("escalated")),
            "deadline_at": source.get("deadline_at"), "assignee": source.get("assignee"),
            "opened_at": source.get("opened_at")}


def present_lifecycle(source: Mapping[str, Any]) -> dict[str, Any]:
    """The incident's lifecycle as the detail view shows it (escalation reasons, dispositions)."""
    return {
        **_lifecycle_summary(source),
        "accepted_by": source.get("accepted_by"), "resolved_at": source.get("resolved_at"),
        "outcome": source.get("outcome"), "watch_hits": list(source.get("watch_hits") or []),
        "escalation_history": [
            {"from_tier": s.get("from_tier"), "to_tier": s.get("to_tier"), "reason_code": s.get("reason_code"),
             "reason": s.get("reason"), "at": s.get("at")} for s in source.get("escalation_history") or []],
        "dispositions": [
            {k: d.get(k) for k in ("disposition_id", "action", "actor", "actor_admin_code", "at", "assignee",
                                   "outcome", "note", "to_tier", "origin")}
            | {"action_name": lifecycle.ACTION_NAMES_CN.get(str(d.get("action")), d.get("action"))}
            for d in source.get("dispositions") or []],
    }


def present_detail(source: Mapping[str, Any], admin_code: str) -> dict[str, Any]:
    """Full incident view: visible timeline, links with reasons, tier, status (as `present_summary`:
    nothing computed over hidden events, not even how many there are)."""
    doc = redact_incident(admin_code, {k: v for k, v in source.items() if k not in PRIVATE_FIELDS})
    view = incident_view(admin_code, source)
    events = sorted((_present_event(e) for e in doc.get("events") or []), key=lambda e: e["occurred_at"] or 0)
    return {
        "incident_id": doc.get("incident_id"), "status": view["status"], "merged_into": doc.get("merged_into"),
        "kind": view["kind"], "severity": view["severity"], "tier": view["tier"],
        "admin_code": view["admin_code"], "admin_name": area_name(view["admin_code"]),
        "county_code": doc.get("county_code"),
        "town_codes": [c for c in doc.get("town_codes") or [] if admin.within(c, admin_code)],
        "village_codes": [c for c in doc.get("village_codes") or [] if admin.within(c, admin_code)],
        "first_seen": view["first_seen"], "last_seen": view["last_seen"],
        "updated_at": view["updated_at"], "version": view["version"],
        "event_count": _event_count(source, admin_code, len(events)), "events": events,
        "links": [
            {"link_id": link.get("link_id"), "event_a": link.get("event_a"), "event_b": link.get("event_b"),
             "score": link.get("score"), "reasons": list(link.get("reasons") or []), "rule": link.get("rule")}
            for link in doc.get("links") or []
        ],
        **present_lifecycle(_lifecycle_source(source, doc, view)),
    }


async def list_incidents(request: web.Request) -> web.Response:
    """GET /api/incidents."""
    principal = _principal(request)
    try:
        params = parse_search_params(request.query, request.app[SETTINGS_KEY].timezone)
        body = build_search(params, principal.admin_code)
    except QueryError as exc:
        _audit(request, "search", {"q": mask_digits(request.query.get("q", ""))[:200], "error": str(exc)}, 0, 400)
        return _json_error(400, str(exc))
    try:
        resp = await _search(request, body)
    except (TransportError, NotFoundError) as exc:
        _audit(request, "search", params.as_audit(), 0, 503)
        return _backend_error(exc)
    total = _total(resp)
    items = [present_summary(h["_source"], principal.admin_code) for h in resp["hits"]["hits"]]
    _audit(request, "search", params.as_audit(), total)
    return web.json_response({"total": total, "page": params.page, "size": params.size, "items": items})


async def get_incident(request: web.Request) -> web.Response:
    """GET /api/incidents/{id} — 404 for unknown ids and for ids outside the jurisdiction alike."""
    principal = _principal(request)
    incident_id = request.match_info["incident_id"]
    try:
        body = build_detail(incident_id, principal.admin_code)
    except QueryError:
        _audit(request, "detail", {"incident_id": mask_digits(incident_id[:128])}, 0, 404)
        return _json_error(404, "not found")
    try:
        resp = await _search(request, body)
    except (TransportError, NotFoundError) as exc:
        _audit(request, "detail", {"incident_id": incident_id}, 0, 503)
        return _backend_error(exc)
    hits = resp["hits"]["hits"]
    if not hits:
        _audit(request, "detail", {"incident_id": incident_id}, 0, 404)
        return _json_error(404, "not found")
    _audit(request, "detail", {"incident_id": incident_id}, 1)
    return web.json_response(present_detail(hits[0]["_source"], principal.admin_code))


_LOOKUP_FIELDS = ("id_number", "phone", "plate")


async def lookup(request: web.Request) -> web.Response:
    """POST /api/lookup — identifiers are hashed server-side and never logged or echoed."""
    principal = _principal(request)
    payload, error = await _read_json(request)
    if error is not None:
        return _json_error(400, error)
    if not isinstance(payload, Mapping):
        return _json_error(400, "body must be a JSON object")
    keyer = request.app[KEYER_KEY]
    makers = {"id_number": keyer.id_key, "phone": keyer.phone_key, "plate": keyer.plate_key}
    keys: list[str] = []
    invalid: list[str] = []
    for name in _LOOKUP_FIELDS:
        value = payload.get(name)
        if value in (None, ""):
            continue
        key = makers[name](str(value)) if isinstance(value, (str, int)) else None
        if key:
            keys.append(key)
        else:
            invalid.append(name)
    del payload  # the clear values go no further
    try:
        page = int(request.query.get("page", "1"))
        size = int(request.query.get("size", "20"))
    except ValueError:
        return _json_error(400, "page and size must be integers")
    if invalid or not keys:
        _audit(request, "lookup", {"invalid_fields": invalid, "keys": keys}, 0, 400)
        msg = f"无法识别的{'、'.join(invalid)}" if invalid else "需要 id_number、phone 或 plate 之一"
        return _json_error(400, msg)
    try:
        body = build_lookup(keys, principal.admin_code, page=page, size=size)
    except QueryError as exc:
        return _json_error(400, str(exc))
    try:
        resp = await _search(request, body)
    except (TransportError, NotFoundError) as exc:
        _audit(request, "lookup", {"keys": keys}, 0, 503)
        return _backend_error(exc)
    total = _total(resp)
    items = [present_summary(h["_source"], principal.admin_code) for h in resp["hits"]["hits"]]
    _audit(request, "lookup", {"keys": keys, "page": page, "size": size}, total)
    return web.json_response({"total": total, "page": page, "size": size, "items": items})


def _terms(agg: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Buckets of a terms aggregation, or of a town/village credential's view terms
    (``nested → visible → values``, see `build_stats`)."""
    if "visible" in agg:
        agg = agg["visible"].get("values", {})
    return list(agg.get("buckets", []))


def _buckets(agg: Mapping[str, Any], with_names: bool = True) -> list[dict[str, Any]]:
    out = []
    for b in agg.get("buckets", []):
        entry: dict[str, Any] = {"code": b["key"], "count": b["doc_count"]}
        if with_names:
            entry["name"] = area_name(b["key"])
        if "by_kind" in b:
            entry["by_kind"] = {k["key"]: k["doc_count"] for k in _terms(b["by_kind"])}
        out.append(entry)
    return out


async def stats(request: web.Request) -> web.Response:
    """GET /api/stats — counts per area (× kind), kind, tier and status within the jurisdiction."""
    principal = _principal(request)
    try:
        params = parse_search_params(request.query, request.app[SETTINGS_KEY].timezone)
        body = build_stats(params, principal.admin_code)
    except QueryError as exc:
        return _json_error(400, str(exc))
    try:
        resp = await _search(request, body)
    except (TransportError, NotFoundError) as exc:
        _audit(request, "stats", params.as_audit(), 0, 503)
        return _backend_error(exc)
    aggs = resp.get("aggregations", {})
    total = _total(resp)
    _audit(request, "stats", params.as_audit(), total)
    return web.json_response({
        "total": total,
        "by_county": _buckets(aggs.get("by_county", {})),
        "by_town": _buckets(aggs.get("by_town", {})),
        "by_village": _buckets(aggs.get("by_village", {})),
        "by_kind": {b["key"]: b["doc_count"] for b in _terms(aggs.get("by_kind", {}))},
        "by_tier": {b["key"]: b["doc_count"] for b in _terms(aggs.get("by_tier", {}))},
        "by_status": {b["key"]: b["doc_count"] for b in _terms(aggs.get("by_status", {}))},
    })


async def whoami(request: web.Request) -> web.Response:
    """GET /api/whoami — the credential's user, jurisdiction, tier and map settings (not audited: no data)."""
    p = _principal(request)
    settings = request.app[SETTINGS_KEY]
    tier = operations.credential_tier(p.admin_code)
    return web.json_response({
        "user": p.user, "admin_code": p.admin_code, "admin_name": area_name(p.admin_code),
        "tier": tier, "tier_name": TIER_NAMES_CN[tier],
        "map": {"tile_url": tile_origin(settings.map_tile_url) and settings.map_tile_url,
                "attribution": settings.map_tile_attribution},
        "due_soon_h": settings.queue_due_soon_h,
        "labels": {"status": {**lifecycle.STATUS_NAMES_CN, "escalated": "已上报", "closed": "已办结"},
                   "action": lifecycle.ACTION_NAMES_CN, "tier": TIER_NAMES_CN},
        "allowed": {a: sorted(s) for a, s in lifecycle.ALLOWED.items()},
    })


def areas_within(admin_code: str) -> list[dict[str, Any]]:
    """Towns and villages of the gazetteer inside a jurisdiction, with their reference points."""
    out = []
    for place in gazetteer.TOWNS + gazetteer.VILLAGES:
        if admin.within(place.code, admin_code) or admin.within(admin_code, place.code):
            level = "town" if len(place.code) == 9 else "village"
            out.append({"code": place.code, "name": place.name, "parent": place.parent, "level": level,
                        "lat": place.lat, "lon": place.lon})
    return out


async def areas(request: web.Request) -> web.Response:
    """GET /api/areas — the jurisdiction's towns and villages (offline map; gazetteer data only)."""
    return web.json_response({"items": areas_within(_principal(request).admin_code)})


def _now_ms() -> int:
    return int(time.time() * 1000)


async def queue(request: web.Request) -> web.Response:
    """GET /api/queue — actionable, unresolved incidents of the jurisdiction, due soonest first."""
    principal = _principal(request)
    settings = request.app[SETTINGS_KEY]
    raw_tiers = tuple(t for t in (request.query.get("tier") or "").split(",") if t)
    raw_statuses = tuple(t for t in (request.query.get("status") or "").split(",") if t)
    audit_filter: dict[str, Any] = {"tiers": list(raw_tiers), "statuses": list(raw_statuses)}
    try:
        size = int(request.query.get("size", "100"))
        body = build_queue(principal.admin_code, tiers=raw_tiers, statuses=raw_statuses, size=size)
    except (QueryError, ValueError) as exc:
        _audit(request, "queue", {**audit_filter, "error": mask_digits(str(exc))[:200]}, 0, 400)
        return _json_error(400, str(exc))
    try:
        resp = await _search(request, body)
    except (TransportError, NotFoundError) as exc:
        _audit(request, "queue", audit_filter, 0, 503)
        return _backend_error(exc)
    now = _now_ms()
    window = int(settings.queue_due_soon_h * 3_600_000)
    items = []
    for hit in resp["hits"]["hits"]:
        item = present_summary(hit["_source"], principal.admin_code)
        item["due"] = operations.due_state(item.get("deadline_at"), now, window)
        items.append(item)
    items.sort(key=operations.queue_key)
    total = _total(resp)
    _audit(request, "queue", audit_filter, total)
    return web.json_response({"total": total, "now": now, "items": items})


async def _read_json(request: web.Request) -> tuple[Any, str | None]:
    """(the JSON body, None) or (None, why it is not JSON). The body is read as UTF-8 whatever
    charset the Content-Type names (an unknown one must not become a 500), and nesting too deep
    for the parser is refused like any other invalid JSON; over the size limit aiohttp raises 413."""
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8")), None
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None, "请求体必须是 UTF-8 JSON (body must be JSON)"


async def act(request: web.Request) -> web.Response:
    """POST /api/incidents/{id}/actions — a center's action, published as a pingan.Disposition."""
    principal = _principal(request)
    incident_id = request.match_info["incident_id"]
    audit_base: dict[str, Any] = {"incident_id": mask_digits(incident_id[:128])}
    payload, error = await _read_json(request)
    parsed = operations.parse_action(payload) if error is None else operations.Refusal(400, error)
    if isinstance(parsed, operations.Refusal):
        _audit(request, "action", {**audit_base, "reason": parsed.reason}, 0, parsed.status)
        return _json_error(parsed.status, parsed.reason)
    audit_base.update(parsed.as_audit())
    try:
        body = build_detail(incident_id, principal.admin_code)
    except QueryError:
        _audit(request, "action", {**audit_base, "reason": "not found"}, 0, 404)
        return _json_error(404, "not found")
    try:
        resp = await _search(request, body)
    except (TransportError, NotFoundError) as exc:
        _audit(request, "action", audit_base, 0, 503)
        return _backend_error(exc)
    hits = resp["hits"]["hits"]
    if not hits:
        _audit(request, "action", {**audit_base, "reason": "not found"}, 0, 404)
        return _json_error(404, "not found")
    incident = hits[0]["_source"]
    refusal = operations.decide_action(parsed, incident, principal.admin_code, request.app[RULES_KEY])
    if refusal is not None:
        _audit(request, "action", {**audit_base, "reason": refusal.reason}, 0, refusal.status)
        return _json_error(refusal.status, refusal.reason)
    record = operations.build_disposition(parsed, incident, principal.user, principal.admin_code, _now_ms())
    audit_base["disposition_id"] = record["disposition_id"]
    producer = request.app[PRODUCER_KEY]
    try:
        value = producer.encode(DISPOSITION_SCHEMA, record)
        await producer.send(request.app[SETTINGS_KEY].topic(DISPOSITIONS_TOPIC), record["incident_id"], value,
                            timeout=SEND_TIMEOUT_S)
    except DeliveryError as exc:
        log.warning("disposition not delivered (%s): %s", "retriable" if exc.retriable else "final", exc)
        _audit(request, "action", {**audit_base, "reason": "kafka unavailable"}, 0, 503)
        return _json_error(503, "消息总线暂不可用，请稍后重试 (Kafka unavailable)",
                           **{"Retry-After": str(RETRY_AFTER_S)})
    _audit(request, "action", audit_base, 1, 202)
    return web.json_response({"disposition_id": record["disposition_id"], "status": "queued",
                              "incident_id": record["incident_id"], "action": record["action"]}, status=202)


def stream_payload(admin_code: str, kind: str, record: Mapping[str, Any], known_paths: Mapping[str, list[str]],
                   known_owners: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]] | None:
    """(SSE event name, data) of a live record for a credential, or None when it may not see it.

    An action on an incident the credential sees only in part (its events outside the credential's
    area are hidden) is announced without who did what (actor, assignee, outcome, note, to_tier):
    the detail view withholds those for the same reason (`_lifecycle_source`)."""
    if kind == "incident":
        if record.get("status") == "merged":
            if operations.visible_merge(admin_code, record, known_paths):
                return "incident", {"incident_id": record.get("incident_id"), "status": "merged",
                                    "merged_into": record.get("merged_into")}
            return None
        doc = operations.visible_incident(admin_code, record)
        if doc is None:
            return None
        return "incident", present_summary(doc, admin_code)
    if kind == "disposition" and operations.visible_disposition(admin_code, record, known_paths):
        iid = str(record.get("incident_id"))
        partial = iid in known_paths and not operations.sees_whole(admin_code, (known_owners or {}).get(iid))
        fields = ("disposition_id", "incident_id", "action", "at") if partial else (
            "disposition_id", "incident_id", "action", "actor", "at", "assignee", "outcome", "note", "to_tier", "origin")
        data = {k: record.get(k) for k in fields}
        data["action_name"] = lifecycle.ACTION_NAMES_CN.get(str(record.get("action")), record.get("action"))
        return "disposition", data
    return None


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def stream(request: web.Request) -> web.StreamResponse:
    """GET /api/stream — server-sent events (incident, disposition; ready once live; comments as heartbeats)."""
    principal = _principal(request)
    hub = request.app[HUB_KEY]
    shutdown = request.app[SHUTDOWN_KEY]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no"})
    _apply_security_headers(request, resp)
    await resp.prepare(request)
    _audit(request, "stream", {}, 0)
    q = hub.subscribe()
    announced = False
    try:
        while not shutdown.is_set():
            if not announced and hub.ready.is_set():
                await resp.write(_sse("ready", {"admin_code": principal.admin_code}))
                announced = True
            getter = asyncio.ensure_future(q.get())
            stopper = asyncio.ensure_future(shutdown.wait())
            timeout = HEARTBEAT_S if announced else 0.5
            done, _ = await asyncio.wait({getter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter not in done:
                getter.cancel()
                if announced or shutdown.is_set():
                    await resp.write(b": ping\n\n")
                continue
            kind, record = getter.result()
            out = stream_payload(principal.admin_code, kind, record, hub.known_paths, hub.known_owners)
            if out is not None:
                await resp.write(_sse(*out))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(q)
    return resp


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz — 200 when Elasticsearch answers a ping, else 503."""
    try:
        ok = bool(await request.app[ES_KEY].ping())
    except Exception:  # noqa: BLE001 - health must answer, whatever the client raises
        ok = False
    return web.json_response({"status": "ok" if ok else "degraded", "elasticsearch": ok}, status=200 if ok else 503)


async def openapi(request: web.Request) -> web.FileResponse:
    """GET /api/openapi.yaml."""
    return web.FileResponse(OPENAPI_PATH, headers={"Content-Type": "application/yaml; charset=utf-8"})


async def index_page(request: web.Request) -> web.FileResponse:
    """GET / — the search page."""
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})


def make_app(settings: Settings, es_client: AsyncElasticsearch, credentials: Credentials,
             audit: AuditLog, *, producer: RecordProducer | None = None,
             rules: TierRules | None = None) -> web.Application:
    """Build the application; the caller owns (and closes) `es_client`. The disposition producer
    (connected on first use) and the live hub are the app's: stopped at cleanup."""
    app = web.Application(middlewares=[_security_headers, _authenticate], client_max_size=MAX_BODY)
    app[SETTINGS_KEY] = settings
    app[ES_KEY] = es_client
    app[CREDENTIALS_KEY] = credentials
    app[AUDIT_KEY] = audit
    app[DENIED_KEY] = DeniedRecorder(audit, settings.audit_denied_detail_s)
    app[LIMITER_KEY] = FailureLimiter.from_settings(settings)

    async def flush_denied(_: web.Application) -> None:
        app[DENIED_KEY].close()

    app.on_cleanup.append(flush_denied)
    app[KEYER_KEY] = PersonKeyer(settings.person_key())
    app[PRODUCER_KEY] = producer or RecordProducer.from_settings(
        settings, config=ProducerConfig(client_id="pingan-web", start_timeout_s=5.0, request_timeout_ms=10_000))
    app[RULES_KEY] = rules or load_ruleset(settings.rules_dir).tiers
    app[SHUTDOWN_KEY] = asyncio.Event()

    async def start_hub(_: web.Application) -> None:
        app[HUB_KEY] = LiveHub(settings)

    async def end_streams(_: web.Application) -> None:
        app[SHUTDOWN_KEY].set()

    async def stop_live(_: web.Application) -> None:
        if HUB_KEY in app:
            await app[HUB_KEY].stop()
        await app[PRODUCER_KEY].stop()

    app.on_startup.append(start_hub)
    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(stop_live)
    app[INDEX_KEY] = IndexNames(settings.es_index_prefix).alias
    app.router.add_get("/", index_page)
    app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/openapi.yaml", openapi)
    app.router.add_get("/api/whoami", whoami)
    app.router.add_get("/api/incidents", list_incidents)
    app.router.add_get("/api/incidents/{incident_id}", get_incident)
    app.router.add_post("/api/lookup", lookup)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/queue", queue)
    app.router.add_get("/api/areas", areas)
    app.router.add_get("/api/stream", stream)
    app.router.add_post("/api/incidents/{incident_id}/actions", act)
    add_schema_routes(app, SchemaSource.from_settings(settings))  # public, read-only: streams.web.schema_routes
    return app
