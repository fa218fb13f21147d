"""Jurisdiction scoping (pure, no I/O).

Contract: a credential is bound to one admin code (2-digit province … 12-digit village). It
sees an incident iff that code is in the incident's ``admin_path`` — i.e. the incident touches
an area at or below the credential's area: a village credential sees its village's incidents,
a town its villages', the county all of the county's, prefecture ``5132`` all its counties'.
`jurisdiction_filter(code)` is the Elasticsearch filter that enforces exactly that;
`can_see(code, incident)` is the same rule in Python. `redact_incident` removes from a visible
(cross-area) incident the events located outside the jurisdiction and the links touching them.

Jurisdiction by visible events only: a town or village credential (`is_area_credential`) sees
an incident only through its own *view* (``views`` in the document, built by
`connectors.elasticsearch.documents.area_view` from the events visible in its area):
`view_filter` requires that view (and puts the request's view-level clauses inside it),
`visible_events_filter` matches event-level clauses (places) against visible events only,
`visible_events_query` scores a query on event fields (free text) over visible events only, and
`incident_view` is what the API shows of an incident (kind, severity, tier, status, owner,
first/last seen, version). A county (or wider) credential sees every event of its incidents
(incidents never span counties): its filters and fields are the incident's own, as before.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.elasticsearch.documents import AREA_VIEW_MIN_LEN, area_view, event_visible
from connectors.elasticsearch.documents import incident_admin_path as _derived_admin_path
from streams.domain import admin

ADMIN_PATH_FIELD = "admin_path"


class JurisdictionError(ValueError):
    """The credential's admin code is not a valid admin code."""


def _checked(admin_code: str) -> str:
    if not admin.is_code(admin_code):
        raise JurisdictionError(f"invalid jurisdiction admin code: {admin_code!r}")
    return admin_code


def jurisdiction_filter(admin_code: str) -> dict[str, Any]:
    """ES filter clause: ``{"term": {"admin_path": <admin_code>}}``."""
    return {"term": {ADMIN_PATH_FIELD: _checked(admin_code)}}


def is_area_credential(admin_code: str) -> bool:
    """A town or village credential: it sees an incident through its visible events only."""
    return len(_checked(admin_code)) >= AREA_VIEW_MIN_LEN


def view_filter(admin_code: str, clauses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Nested filter: the incident has a view for `admin_code` (an event visible there) and that
    view matches `clauses` (queries on ``views.*`` fields)."""
    return {"nested": {"path": "views", "query": {"bool": {
        "filter": [{"term": {"views.area": _checked(admin_code)}}, *(clauses or [])]}}}}


def visible_events_filter(admin_code: str, clauses: list[dict[str, Any]]) -> dict[str, Any]:
    """Some event visible to `admin_code` matches `clauses` (queries on ``events.*`` fields): an
    event inside the area, or an event without an admin code of an incident owned inside it
    (the rule of `redact_incident`)."""
    code = _checked(admin_code)
    inside = {"nested": {"path": "events", "query": {"bool": {
        "filter": [{"prefix": {"events.admin_code": code}}, *clauses]}}}}
    uncoded = {"nested": {"path": "events", "query": {"bool": {
        "filter": clauses, "must_not": [{"exists": {"field": "events.admin_code"}}]}}}}
    owned = {"bool": {"filter": [{"prefix": {"admin_code": code}}, uncoded]}}
    return {"bool": {"should": [inside, owned], "minimum_should_match": 1}}


def visible_events_query(admin_code: str, query: dict[str, Any]) -> dict[str, Any]:
    """Scoring counterpart of `visible_events_filter`: `query` (on ``events.*`` fields) over the
    events visible to `admin_code` only, the incident's score the sum of their scores (a county
    or wider credential: over every event). The score depends on those events alone as long as
    `query` scores by constants (no term statistics, see `streams.web.query`)."""
    code = _checked(admin_code)
    if not is_area_credential(code):
        return {"nested": {"path": "events", "score_mode": "sum", "query": query}}
    inside = {"nested": {"path": "events", "score_mode": "sum", "query": {"bool": {
        "must": [query], "filter": [{"prefix": {"events.admin_code": code}}]}}}}
    uncoded = {"nested": {"path": "events", "score_mode": "sum", "query": {"bool": {
        "must": [query], "must_not": [{"exists": {"field": "events.admin_code"}}]}}}}
    owned = {"bool": {"must": [uncoded], "filter": [{"prefix": {"admin_code": code}}]}}
    return {"bool": {"should": [inside, owned], "minimum_should_match": 1}}


def incident_view(admin_code: str, incident: Mapping[str, Any]) -> dict[str, Any]:
    """The incident-level fields a credential may see: for a town or village credential the ones
    computed from its visible events (`area_view`), else the incident's own."""
    view = area_view(incident, _checked(admin_code)) if is_area_credential(admin_code) else None
    if view is None:
        view = {k: incident.get(k) for k in ("kind", "severity", "tier", "status", "admin_code", "first_seen",
                                              "last_seen", "updated_at", "version")}
    return view


def within(admin_code: str, code: str | None) -> bool:
    """True when `code` lies at or below the credential's `admin_code`."""
    return bool(code) and admin.within(code, _checked(admin_code))


def incident_admin_path(incident: Mapping[str, Any]) -> list[str]:
    """The incident's ``admin_path`` (as indexed, or derived from its codes for a raw record)."""
    path = incident.get(ADMIN_PATH_FIELD)
    if isinstance(path, list):
        return [str(c) for c in path]
    return _derived_admin_path(incident)


def can_see(admin_code: str, incident: Mapping[str, Any]) -> bool:
    """Whether a credential bound to `admin_code` may see `incident` (same rule as the ES filter)."""
    return _checked(admin_code) in incident_admin_path(incident)


def redact_incident(admin_code: str, incident: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a visible incident without the events (and their links) outside the jurisdiction.

    Events without an admin code are kept only if the incident's own owning area is inside the
    jurisdiction. Nothing says how many were removed (a village must not learn that either).
    """
    _checked(admin_code)
    owner = incident.get("admin_code")
    kept, hidden = [], set()
    for ev in incident.get("events") or []:
        if event_visible(admin_code, ev.get("admin_code"), owner):
            kept.append(ev)
        else:
            hidden.add(ev.get("event_id"))
    out = dict(incident)
    out["events"] = kept
    out["links"] = [
        link for link in incident.get("links") or []
        if link.get("event_a") not in hidden and link.get("event_b") not in hidden
    ]
    if "event_ids" in out:
        out["event_ids"] = [e for e in out["event_ids"] or [] if e not in hidden]
    return out
