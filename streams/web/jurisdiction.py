"""Jurisdiction scoping (pure, no I/O).

Contract: a credential is bound to one admin code (2-digit province … 12-digit village). It
sees an incident iff that code is in the incident's ``admin_path`` — i.e. the incident touches
an area at or below the credential's area: a village credential sees its village's incidents,
a town its villages', the county all of the county's, prefecture ``5132`` all its counties'.
`jurisdiction_filter(code)` is the Elasticsearch filter that enforces exactly that;
`can_see(code, incident)` is the same rule in Python. `redact_incident` removes from a visible
(cross-area) incident the events located outside the jurisdiction and the links touching them.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    jurisdiction. ``hidden_events`` counts what was removed.
    """
    _checked(admin_code)
    owner_inside = within(admin_code, incident.get("admin_code"))
    kept, hidden = [], set()
    for ev in incident.get("events") or []:
        code = ev.get("admin_code")
        if within(admin_code, code) or (not code and owner_inside):
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
    out["hidden_events"] = len(hidden)
    return out
