"""Incident record → Elasticsearch document and bulk action (pure, no I/O).

Contract:
- `incident_document(incident)` returns ``(incident_id, document)`` for an incident record shaped
  like ``pingan.Incident`` (docs/contracts.md). The document holds only what the record holds
  (masked displays and pseudonymous keys, never clear identifiers), plus derived fields:
  ``admin_path`` (`incident_admin_path`: every prefix 2/4/6/9/12 digits of every admin code the
  incident touches, by `streams.domain.admin.levels_of`; used for jurisdiction filtering),
  ``search_text`` (event texts, time-ordered), ``location`` (mean of the event points),
  ``event_locations`` (all event points), ``event_count`` (the record's true count: ``events``
  lists at most 300, ``event_ids`` at most ``listed_event_ids``), ``sources``, ``event_kinds``; an event
  with data-quality notes keeps them as ``events[].quality`` (`quality_notes`: field and reason,
  quoted values masked; absent when there are none); ``events[].severity`` when the summary
  carries one (absent otherwise).
- Area views (jurisdiction by visible events only): ``views`` holds, for every town and village
  the incident touches, the incident as a credential of that area sees it — computed from the
  events visible there (`event_visible`) only, by `area_view`: kind, severity, tier, status,
  first/last seen, owning admin code, event count, and the person and vehicle keys of those events
  (``events[].person_keys``/``vehicle_keys``, from the event summaries; a record whose summaries
  carry no keys gives a partial view no keys, never the incident's). A town or village credential
  filters, sorts, counts and looks keys up on its own view, never on the incident-wide fields
  (which are computed over every event). Template 2 maps ``views`` and ``events.severity``,
  template 3 the keys and ``views.status``; documents indexed before them lack those fields, so a
  town/village credential finds them only after ``pingan replay index`` built the new index
  version (the county's queries do not use views).
  Raises `DocumentError` for a record that cannot be indexed (no id, merged).
- Lifecycle (template 3, `lifecycle_fields`): ``actionable`` (absent in the record: true),
  ``watch_hits``, ``escalated``, ``escalation_history`` (steps with their Chinese reasons),
  ``opened_at``, ``deadline_at``, ``accepted_by``, ``assignee``, ``resolved_at``, ``outcome`` and
  ``dispositions`` (notes already masked by the API) — what the operator queue filters and sorts on
  and what the incident detail shows.
- Merged incidents: the retired id is **deleted** from the index (`incident_action` returns a
  delete action). The surviving incident's own record carries every event, so a search never
  shows the same events twice; a stale link to the retired id answers 404.
- `incident_action(incident, index)` is the bulk action for either case. Index actions carry
  ``version=<incident.version>`` with ``version_type=external_gte`` so a redelivered or replayed
  older update never overwrites a newer one (the sink treats the 409 as "already newer").
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from streams.domain import admin
from streams.domain.kinds import DEFAULT_SEVERITY
from streams.domain.lifecycle import opens, routing_steps
from streams.domain.tiers import TierRules, load_tier_rules, route


class DocumentError(ValueError):
    """The incident record cannot become an index document (a dead letter, not retriable)."""


def incident_admin_path(incident: Mapping[str, Any]) -> list[str]:
    """Every ancestor-or-self admin code of every area the incident touches (its ``admin_path``)."""
    return admin.levels_of(
        [incident.get("admin_code"), incident.get("county_code"), *(incident.get("town_codes") or []),
         *(incident.get("village_codes") or [])] + [e.get("admin_code") for e in incident.get("events") or []]
    )


# the name the e2e tests (and older callers) use for `admin.levels_of`
admin_paths = admin.levels_of


def _point(lat: Any, lon: Any) -> dict[str, float] | None:
    """A geo_point dict for a valid WGS-84 pair, else None."""
    if lat is None or lon is None:
        return None
    try:
        la, lo = float(lat), float(lon)
    except (TypeError, ValueError):
        return None
    if not (-90.0 <= la <= 90.0 and -180.0 <= lo <= 180.0) or la != la or lo != lo:
        return None
    return {"lat": la, "lon": lo}


#: A quoted value inside a quality reason ('…', "…", “…”, 「…」): masked, the page never shows values.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|“[^”]*”|「[^」]*」")
MASK = "'…'"


def quality_notes(ev: Mapping[str, Any]) -> list[dict[str, str]]:
    """The event summary's data-quality notes as the page shows them: field and reason only, any
    value quoted in the reason masked (the raw value stays in the raw topic, never in the index)."""
    out: list[dict[str, str]] = []
    for note in ev.get("quality") or ():
        if isinstance(note, Mapping) and note.get("field"):
            out.append({"field": str(note["field"])[:80],
                        "reason": _QUOTED.sub(MASK, str(note.get("reason") or ""))[:200]})
    return out


def _event_doc(ev: Mapping[str, Any]) -> dict[str, Any]:
    point = _point(ev.get("lat"), ev.get("lon"))
    doc: dict[str, Any] = {
        "event_id": ev.get("event_id"),
        "source": ev.get("source"),
        "kind": ev.get("kind"),
        "occurred_at": ev.get("occurred_at"),
        "text": ev.get("text") or "",
        "admin_code": ev.get("admin_code"),
        "persons": list(ev.get("persons") or []),
        "person_keys": sorted(set(ev.get("person_keys") or [])),
        "vehicle_keys": sorted(set(ev.get("vehicle_keys") or [])),
    }
    if point:
        doc["location"] = point
        doc["lat"], doc["lon"] = point["lat"], point["lon"]
    severity = ev.get("severity")
    if isinstance(severity, int) and not isinstance(severity, bool):
        doc["severity"] = severity
    notes = quality_notes(ev)
    if notes:  # documents of events without notes stay as they were
        doc["quality"] = notes
    return doc


def _link_doc(link: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "link_id": link.get("link_id"),
        "event_a": link.get("event_a"),
        "event_b": link.get("event_b"),
        "score": link.get("score"),
        "reasons": list(link.get("reasons") or []),
        "rule": link.get("rule"),
        "county_code": link.get("county_code"),
        "created_at": link.get("created_at"),
    }


def incident_document(incident: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(_id, document)`` for a live (not merged) incident record."""
    inc_id = incident.get("incident_id")
    if not isinstance(inc_id, str) or not inc_id:
        raise DocumentError("incident without incident_id")
    if incident.get("status") == "merged":
        raise DocumentError(f"{inc_id} is merged into {incident.get('merged_into')}; it is deleted, not indexed")
    events = sorted(
        (_event_doc(e) for e in incident.get("events") or []),
        key=lambda e: (e.get("occurred_at") or 0, e.get("event_id") or ""),
    )
    points = [e["location"] for e in events if "location" in e]
    location = (
        {"lat": sum(p["lat"] for p in points) / len(points), "lon": sum(p["lon"] for p in points) / len(points)}
        if points
        else None
    )
    town_codes = sorted(set(incident.get("town_codes") or []))
    village_codes = sorted(set(incident.get("village_codes") or []))
    path = incident_admin_path(incident)
    doc: dict[str, Any] = {
        "incident_id": inc_id,
        "status": incident.get("status"),
        "merged_into": incident.get("merged_into"),
        "kind": incident.get("kind"),
        "severity": incident.get("severity"),
        "tier": incident.get("tier"),
        "admin_code": incident.get("admin_code"),
        "admin_path": path,
        "county_code": incident.get("county_code"),
        "town_codes": town_codes,
        "village_codes": village_codes,
        "first_seen": incident.get("first_seen"),
        "last_seen": incident.get("last_seen"),
        "updated_at": incident.get("updated_at"),
        "version": incident.get("version"),
        "event_count": max(int(incident.get("event_count") or 0), len(events)),
        "event_ids": sorted(set(incident.get("event_ids") or [e["event_id"] for e in events if e.get("event_id")])),
        "sources": sorted({e["source"] for e in events if e.get("source")}),
        "event_kinds": sorted({e["kind"] for e in events if e.get("kind")}),
        "location": location,
        "event_locations": points,
        "person_keys": sorted(set(incident.get("person_keys") or [])),
        "vehicle_keys": sorted(set(incident.get("vehicle_keys") or [])),
        "search_text": "\n".join(e["text"] for e in events if e.get("text")),
        "events": events,
        "links": [_link_doc(link) for link in incident.get("links") or []],
    }
    doc["views"] = area_views(doc)
    doc.update(lifecycle_fields(incident))
    return inc_id, doc


#: Lifecycle fields copied from the record (pingan.Incident v2) into the document, with defaults.
LIFECYCLE_DEFAULTS: dict[str, Any] = {
    "actionable": True, "watch_hits": [], "escalated": False, "escalation_history": [], "opened_at": None,
    "deadline_at": None, "accepted_by": None, "assignee": None, "resolved_at": None, "outcome": None,
    "dispositions": [],
}
_STEP_FIELDS = ("from_tier", "to_tier", "reason_code", "reason", "at")
_DISPOSITION_FIELDS = ("disposition_id", "action", "actor", "actor_admin_code", "at", "assignee", "outcome",
                       "note", "to_tier", "origin")


def lifecycle_fields(incident: Mapping[str, Any]) -> dict[str, Any]:
    """The incident's lifecycle fields as indexed (defaults for records before Incident v2)."""
    out: dict[str, Any] = {}
    for name, default in LIFECYCLE_DEFAULTS.items():
        value = incident.get(name, default)
        out[name] = default if value is None and default is not None else value
    out["actionable"] = bool(out["actionable"])
    out["escalated"] = bool(out["escalated"]) or bool(out["escalation_history"])
    out["watch_hits"] = sorted({str(w) for w in out["watch_hits"]})
    out["escalation_history"] = [{k: s.get(k) for k in _STEP_FIELDS} for s in out["escalation_history"]
                                 if isinstance(s, Mapping)]
    out["dispositions"] = [{k: d.get(k) for k in _DISPOSITION_FIELDS} for d in out["dispositions"]
                           if isinstance(d, Mapping)]
    return out


# ----------------------------------------------------------------------------- area views

#: Credentials at or above this code length (county, prefecture, province) see every event of
#: their incidents (incidents never span counties); towns and villages see their own events only.
AREA_VIEW_MIN_LEN = 9

_RULES: TierRules | None = None


def _rules() -> TierRules:
    global _RULES
    if _RULES is None:
        _RULES = load_tier_rules()
    return _RULES


def event_visible(area: str, event_code: str | None, owner_code: str | None) -> bool:
    """Whether an event (by its admin code) is visible to a credential of `area`: an event inside
    the area; an event without an admin code only when the incident's owning area is inside."""
    return admin.within(event_code, area) if event_code else admin.within(owner_code, area)


def area_view(doc: Mapping[str, Any], area: str) -> dict[str, Any] | None:
    """The incident document as a credential of `area` sees it, from its visible events only
    (None when no event is visible there). When every event is visible the incident's own fields
    are the view (they are computed over exactly those events, escalations included); otherwise
    kind, severity, tier, owner, first/last seen, version, status and keys are recomputed the way
    the pipeline computes them (`streams.domain.incidents`), as if the hidden events did not exist:
    no escalation (an "escalated" incident is "open" in a partial view, like its routed tier), the
    keys of the visible events only. An event without a severity counts its kind's default
    severity."""
    events = list(doc.get("events") or [])
    owner = doc.get("admin_code")
    visible = [e for e in events if event_visible(area, e.get("admin_code"), owner)]
    if not visible:
        return None
    if len(visible) == len(events):
        return {"area": area, "kind": doc.get("kind"), "severity": doc.get("severity"), "tier": doc.get("tier"),
                "status": doc.get("status"),
                "admin_code": owner, "first_seen": doc.get("first_seen"), "last_seen": doc.get("last_seen"),
                "updated_at": doc.get("updated_at"), "version": doc.get("version"), "event_count": len(visible),
                "person_keys": sorted(set(doc.get("person_keys") or [])),
                "vehicle_keys": sorted(set(doc.get("vehicle_keys") or []))}
    rules = _rules()
    kind = min((e.get("kind") or "other" for e in visible), key=lambda k: (rules.kind_rank(k), k))
    severity = max(e["severity"] if isinstance(e.get("severity"), int) else DEFAULT_SEVERITY.get(e.get("kind") or "", 1)
                   for e in visible)
    codes = [str(e.get("admin_code") or "") for e in visible]
    villages = sorted({c[:12] for c in codes if len(c) >= 12})
    towns = sorted({c[:9] for c in codes if len(c) >= 9})
    tier = route({"kind": kind, "severity": severity, "town_codes": towns, "village_codes": villages}, rules)
    times = [int(e["occurred_at"]) for e in visible if e.get("occurred_at") is not None]
    ids = {e.get("event_id") for e in visible}
    links = [link for link in doc.get("links") or [] if link.get("event_a") in ids and link.get("event_b") in ids]
    status = doc.get("status")
    # the version the visible events alone would have as an incident (incidents._finish): 5 per fact
    # + tier rank + the tier rises of its content (an incident of evidence only has none)
    sub = {"events": visible, "kind": kind, "severity": severity, "town_codes": towns, "village_codes": villages,
           "last_seen": max(times) if times else 0}
    rises = routing_steps(sub, rules)[1] if any(opens(e, rules) for e in visible) else []
    return {"area": area, "kind": kind, "severity": severity, "tier": tier,
            "status": "open" if status == "escalated" else status,
            "admin_code": admin.common(codes) or doc.get("county_code"),
            "first_seen": min(times) if times else None, "last_seen": max(times) if times else None,
            "updated_at": max(times) if times else None,
            "version": 5 * (len(visible) + len(links)) + rules.rank(tier) + len(rises), "event_count": len(visible),
            "person_keys": sorted({k for e in visible for k in e.get("person_keys") or ()}),
            "vehicle_keys": sorted({k for e in visible for k in e.get("vehicle_keys") or ()})}


def area_views(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One `area_view` per town and village of the document's ``admin_path`` that sees an event."""
    out = []
    for area in doc.get("admin_path") or []:
        if len(area) >= AREA_VIEW_MIN_LEN:
            view = area_view(doc, area)
            if view is not None:
                out.append(view)
    return out


def incident_action(incident: Mapping[str, Any], index: str, *, external_version: bool = True) -> dict[str, Any]:
    """Bulk action for `incident`: delete for a merged (retired) id, else index its document."""
    inc_id = incident.get("incident_id")
    if incident.get("status") == "merged":
        if not isinstance(inc_id, str) or not inc_id:
            raise DocumentError("merged incident without incident_id")
        return {"_op_type": "delete", "_index": index, "_id": inc_id}
    doc_id, doc = incident_document(incident)
    action: dict[str, Any] = {"_op_type": "index", "_index": index, "_id": doc_id, "_source": doc}
    version = incident.get("version")
    if external_version and isinstance(version, int) and not isinstance(version, bool) and version >= 0:
        action["version"] = version
        action["version_type"] = "external_gte"
    return action
