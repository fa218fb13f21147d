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
- Responses hold only masked displays: pseudonymous keys, ``admin_path`` and search text are
  stripped; events outside the jurisdiction are removed from cross-area incidents (and not
  counted), and for a town or village credential kind, severity, tier, status, owner, first/last
  seen and version are those of its visible events (`jurisdiction.incident_view`), as are its
  filters, sorts, free-text matches and scores, key lookups and stats.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from elasticsearch import AsyncElasticsearch, NotFoundError, TransportError

from connectors.elasticsearch.admin import IndexNames
from streams.domain import admin, gazetteer
from streams.domain.identity import PersonKeyer
from streams.settings import Settings
from streams.web.audit import AuditLog, DeniedRecorder
from streams.web.auth import Credentials, FailureLimiter, Principal, bearer_token
from streams.web.jurisdiction import incident_view, redact_incident
from streams.web.query import (
    PRIVATE_FIELDS, QueryError, build_detail, build_lookup, build_search, build_stats,
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
PRINCIPAL = web.RequestKey("principal", Principal)
AUDITED = web.RequestKey("audited", bool)

_UPPER_NAMES = {gazetteer.PROVINCE_CODE: "四川省", gazetteer.PREFECTURE_CODE: "阿坝藏族羌族自治州"}
_PUBLIC_PATHS = frozenset({"/healthz", "/api/openapi.yaml"})
_DENIED_STATUSES = frozenset({400, 401, 403, 413, 429})

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


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    if request.path.startswith("/api/"):
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _action_of(request: web.Request) -> str:
    path = request.path
    if path == "/api/incidents":
        return "search"
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
        raise
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
        "last_seen": view["last_seen"], "event_count": len(events),
        "sources": sorted({e.get("source") for e in events if e.get("source")}),
        "snippet": snippet[:SNIPPET_CHARS],
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
        "event_count": len(events), "events": events,
        "links": [
            {"link_id": link.get("link_id"), "event_a": link.get("event_a"), "event_b": link.get("event_b"),
             "score": link.get("score"), "reasons": list(link.get("reasons") or []), "rule": link.get("rule")}
            for link in doc.get("links") or []
        ],
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
    try:
        payload = await request.json()
    except ValueError:
        return _json_error(400, "body must be JSON")
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
    """GET /api/whoami — the credential's user and jurisdiction (not audited: no data)."""
    p = _principal(request)
    return web.json_response({"user": p.user, "admin_code": p.admin_code, "admin_name": area_name(p.admin_code)})


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
             audit: AuditLog) -> web.Application:
    """Build the application; the caller owns (and closes) `es_client`."""
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
    return app
