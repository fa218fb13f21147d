"""Incidents: connected components of links, kept over injectable mappings.

Contracts
- ``IncidentState(event_incident, incidents, pending, tier_rules)``: ``event_incident`` maps
  event_id → incident_id (an id it held; a merged-away incident of more than a few members leaves a
  merge pointer ``~into:<old id>`` → new id in the same table, followed and shortened on lookup,
  `_follow`), ``incidents`` maps incident_id → Incident dict (docs/contracts.md),
  ``pending`` maps a not-yet-seen event_id → links waiting for it (links.v1 and events.v1 are
  separate topics, so a link may arrive before its event); it also holds center actions waiting
  for their anchor event (``disp:<event_id>``) and the deadline index (``~due:<county>:<bucket>``
  → incident ids, so a clock step re-derives only what fell due). Dicts in tests, Faust tables in the
  agent; values are always re-assigned, never mutated in place.
- ``apply_event(event) -> list[Incident]``: a new event becomes a singleton incident (then any
  pending links for it are applied); a known event changes nothing ([]).
- ``apply_link(link, events) -> list[Incident]``: ``events`` is a Mapping or a callable
  event_id → Event | None used for endpoints not seen yet. Returns the records to emit: the
  updated incident, plus for a merge a redirect record for the merged-away id (`redirect`:
  the old header with status "merged", merged_into set, version + 1, and empty member lists).
  Re-applying a known link returns [].
- Order independence: the live incidents (``live()``) after any permutation of the same events
  and links are identical. incident_id = "inc-" + sha1(smallest event_id)[:16]; every field is
  a commutative aggregate (unions, min/max, priority), and the lifecycle fields are derived from
  those facts and the county clock (lifecycle.derive); version = 5 × (#events + #links +
  #actions + recurrence) + tier rank + #escalation steps (strictly increasing for a live id, see
  `_finish`); updated_at = last_seen.
- Cost per touch does not grow with the incident (issue 18, bench/flood.py): a merge keeps the
  biggest part's canonical lists (sorted event ids, keys and merged_from; the earliest 300
  summaries; the links in link_id order) and inserts the others' items (`_combine`); nothing that
  grows is re-sorted or rebuilt as a set; the kind, admin code and tier rises that depend on the
  summaries are recomputed only when the summaries list changes (`_summary_facts`). What remains
  proportional to the size is one list copy per re-assigned value (values are never mutated in
  place), and those lists are bounded: the state, like the published record, lists the smallest
  ``tier_rules.listed_event_ids`` member ids and merged ids (top-K, so order independent) with the
  true ``event_count``; membership past them is in ``event_incident`` (`members` walks it).
- Full incidents: an incident holds at most ``tier_rules.max_incident_events`` events
  (tier_rules.toml ``[incidents] max_events``). A link whose merge would pass it does not merge.
  The side that is not full joins the full incident's *continuation* (the incident holding the
  first event that went on past it, ``~cont:<id>`` in ``pending``, carried to the new id when the
  full incident's id changes) if the two fit, else it becomes that continuation; the link is kept
  on where it ends, with one more reason naming the full incident (`_past_cap`). The full side is
  the one whose continuation chain reaches the other, else the bigger. So a flood fills one
  incident to the cap, then the next: no stray singletons. When any merge of a batch would pass
  the cap its links are applied one by one in link_id order, those staying on one incident in one
  update (`_apply_stepwise`). Re-applying such a link changes nothing (listed on either side; in
  ``repair`` mode, unless one side has no link at all, it was applied with its event). Order
  independence holds while no merge reaches the cap; past it, which events land in which
  continuation depends on the order links are applied (links.v1 order), which a replay of the same
  log reproduces.
"""
from __future__ import annotations

import bisect
import heapq
import operator
from typing import Any, Callable, Iterable, Mapping, MutableMapping

from . import admin, lifecycle
from .ids import incident_id
from .tiers import TierRules, load_tier_rules

#: pending-store key prefix for center actions waiting for their anchor event
_DISP = "disp:"
#: pending-store key prefix of the deadline index: ``~due:<county>:<bucket>`` → incident ids whose
#: deadline_at falls in that clock step (bucket = deadline_at // clock_step_ms)
_DUE = "~due:"
#: pending-store key prefix of the continuation index: ``~cont:<incident_id>`` → [the first event of
#: the incident that goes on where that full incident stopped]
_CONT = "~cont:"
#: event_incident key prefix of a merge pointer: ``~into:<retired incident id>`` → the id it was merged
#: into (kept in the same table as the mappings it completes, so a partial write loses both or neither)
_INTO = "~into:"
#: a merged-away incident of at most this many members, all listed, has them re-mapped one by one;
#: a bigger one leaves a merge pointer that its members' lookups follow (and shorten)
_REMAP_MAX = 64

Event = Mapping[str, Any]
Incident = dict[str, Any]
EventLookup = Mapping[str, Event] | Callable[[str], Event | None] | None

_TEXT_MAX = 500
# An incident record must stay far below Kafka's message size even for a flood of thousands of
# events: it carries every event id, but only the earliest MAX_EVENT_SUMMARIES event summaries and
# the MAX_LINKS strongest links (by score, then link_id). Keeping the top K of a total order is
# commutative and associative, so the record stays independent of arrival order; event_count and
# link_count give the full sizes.
MAX_LINKS = 200
MAX_EVENT_SUMMARIES = 300


def _link_strength(link: Mapping[str, Any]) -> tuple[float, str]:
    return (-float(link.get("score") or 0.0), link["link_id"])


def _cap_links(links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The MAX_LINKS strongest links, in link_id order."""
    if len(links) <= MAX_LINKS:
        return links
    return sorted(sorted(links, key=_link_strength)[:MAX_LINKS], key=_link_key)


def _link_key(link: Mapping[str, Any]) -> str:
    return link["link_id"]


def _codes(event: Event) -> tuple[str | None, str | None, str | None, str | None]:
    """(admin_code, county, town, village) of an event, deriving missing levels from admin_code."""
    loc = event.get("location") or {}
    code = loc.get("admin_code") or loc.get("village_code") or loc.get("town_code") or loc.get("county_code")
    county = loc.get("county_code") or admin.prefix(code, admin.COUNTY)
    town = loc.get("town_code") or admin.prefix(code, admin.TOWN)
    village = loc.get("village_code") or admin.prefix(code, admin.VILLAGE)
    return code, county, town, village


def _person_display(person: Mapping[str, Any]) -> str:
    parts = [person.get(k) for k in ("display_name", "display_id", "display_phone")]
    text = " ".join(p for p in parts if p)
    return f"{person['role']}:{text}" if person.get("role") and text else text


def event_summary(event: Event) -> dict[str, Any]:
    """The EventSummary an incident carries for one event (with the event's own pseudonymous person
    and vehicle keys: the incident's keys are their union)."""
    loc = event.get("location") or {}
    code, _, _, _ = _codes(event)
    return {
        "event_id": event["event_id"], "source": event.get("source"), "kind": event.get("kind"),
        "occurred_at": int(event["occurred_at"]), "severity": int(event.get("severity") or 1),
        "text": (event.get("text") or "")[:_TEXT_MAX],
        "lat": loc.get("lat"), "lon": loc.get("lon"), "admin_code": code,
        "persons": [d for d in (_person_display(p) for p in event.get("persons") or ()) if d],
        "quality": [{"field": str(q.get("field")), "reason": str(q.get("reason")), "value": None}
                    for q in event.get("quality") or () if isinstance(q, Mapping)],
        "person_keys": sorted({k for p in event.get("persons") or () for k in p.get("keys") or ()}),
        "vehicle_keys": sorted({v["key"] for v in event.get("vehicles") or () if v.get("key")}),
    }


def lowest_common_admin(codes: list[str], county_code: str | None) -> str:
    """Deepest admin code (12 village, 9 town, 6 county digits) shared by all codes."""
    return admin.common(codes) or county_code or ""


def sorted_contains(sorted_ids: list[str], eid: str) -> bool:
    """Whether `eid` is in a sorted list (binary search)."""
    at = bisect.bisect_left(sorted_ids, eid)
    return at < len(sorted_ids) and sorted_ids[at] == eid


# ---------------------------------------------------------------------- incremental set algebra
# A touch of a big incident must not cost in proportion to its size: these helpers add the
# (usually few) items of the smaller side into the kept, already canonical lists of the bigger
# side. They return the base list itself when nothing changes (so the caller can tell by
# identity) and a new list otherwise (values are re-assigned, never mutated in place).

_BULK = 64  # above this many new items a full sorted union is cheaper than insertions


def _union_sorted(base: list[str], extra: Iterable[str]) -> list[str]:
    """Sorted unique union of a sorted unique `base` and any `extra`."""
    extra = list(extra)
    if not extra:
        return base
    if len(extra) > _BULK:
        out = sorted(set(base).union(extra))
        return base if out == base else out
    new: list[str] | None = None
    for x in extra:
        lst = base if new is None else new
        at = bisect.bisect_left(lst, x)
        if at < len(lst) and lst[at] == x:
            continue
        if new is None:
            new = list(base)
        new.insert(at, x)
    return base if new is None else new


def _summary_key(e: Mapping[str, Any]) -> tuple[int, str]:
    return (int(e["occurred_at"]), e["event_id"])


def _merge_summaries(base: list[dict[str, Any]], extra: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The earliest MAX_EVENT_SUMMARIES of the union (by occurred_at, event_id); `base` canonical."""
    new: list[dict[str, Any]] | None = None
    for e in extra:
        lst = base if new is None else new
        key = _summary_key(e)
        if len(lst) >= MAX_EVENT_SUMMARIES and key > _summary_key(lst[-1]):
            continue
        at = bisect.bisect_left(lst, key, key=_summary_key)
        if at < len(lst) and lst[at]["event_id"] == e["event_id"]:
            continue
        if new is None:
            new = list(base)
        new.insert(at, dict(e))
        if len(new) > MAX_EVENT_SUMMARIES:
            new.pop()
    return base if new is None else new


def _merge_links(base: list[dict[str, Any]], extra: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """(union by link_id in link_id order, uncapped; how many of `extra` were not in it)."""
    new: list[dict[str, Any]] | None = None
    added = 0
    for link in extra:
        lst = base if new is None else new
        at = bisect.bisect_left(lst, link["link_id"], key=_link_key)
        if at < len(lst) and lst[at]["link_id"] == link["link_id"]:
            continue
        if new is None:
            new = list(base)
        new.insert(at, dict(link))
        added += 1
    return (base if new is None else new), added


def _cap_links_sorted(links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`_cap_links` of a list already in link_id order, dropping only the weakest surplus."""
    surplus = len(links) - MAX_LINKS
    if surplus <= 0:
        return links
    weakest = {lk["link_id"] for lk in heapq.nlargest(surplus, links, key=_link_strength)}
    return [lk for lk in links if lk["link_id"] not in weakest]


#: list fields a "merged" redirect record leaves empty: it is a header (id, status, merged_into,
#: version, and the place/tier fields that route and delete it), not a copy of the old content
_REDIRECT_EMPTY = ("events", "links", "event_ids", "person_keys", "vehicle_keys", "dispositions", "merged_from")


def redirect(old: Mapping[str, Any], into: str, version: int, incident_id_: str | None = None) -> Incident:
    """The final record of a merged-away incident id: `old`'s header, status "merged",
    merged_into = `into`, with empty member lists (see _REDIRECT_EMPTY)."""
    rec = {k: v for k, v in old.items() if k not in _REDIRECT_EMPTY}
    rec.update({k: [] for k in _REDIRECT_EMPTY})
    rec.update({"status": "merged", "merged_into": into, "version": int(version)})
    if incident_id_ is not None:
        rec["incident_id"] = incident_id_
    return rec


def count_of(inc: Mapping[str, Any]) -> int:
    """An incident's true number of member events (``event_count``; ``event_ids`` may list fewer)."""
    return int(inc.get("event_count") or 0) or len(inc.get("event_ids") or ())


def lists_fewer(inc: Mapping[str, Any]) -> bool:
    """Whether a live incident record lists fewer member ids than it has (over ``listed_event_ids``)."""
    return inc.get("status") != "merged" and count_of(inc) > len(inc.get("event_ids") or ())


def may_hold(inc: Mapping[str, Any], eid: str) -> bool:
    """Whether `eid` is, or may be, a member of `inc`: listed, or past the listed (smallest) ids of
    an incident that lists fewer than it has."""
    ids = inc.get("event_ids") or []
    if sorted_contains(ids, eid):
        return True
    return bool(ids) and count_of(inc) > len(ids) and eid > ids[-1]


def published(inc: Mapping[str, Any], listed: int) -> Mapping[str, Any]:
    """The record to publish for an incident state: at most `listed` of its sorted member ids in
    ``event_ids`` (the smallest) and of its sorted ``merged_from``; every other field as is
    (``event_count`` is the true count). The state keeps the same bounded lists (with the limit
    of its own rules, so this cuts again only when the limit was lowered); the members beyond the
    listed ones are on incident-members.v1 (`member_record`), the merged ids in their redirect
    records. Returns `inc` itself when nothing is over `listed`."""
    ids, merged = inc.get("event_ids") or (), inc.get("merged_from") or ()
    if len(ids) <= listed and len(merged) <= listed:
        return inc
    return {**inc, "event_ids": list(ids[:listed]), "merged_from": list(merged[:listed])}


def member_record(event: Mapping[str, Any], incident_id_: str, rules_version: str = "") -> dict[str, Any]:
    """The pingan.IncidentMember record of an event: the live incident holding it right after the
    step that correlated it (a later merge moves it on; a subscriber follows ``merged_into``)."""
    return {"event_id": str(event["event_id"]), "incident_id": incident_id_,
            "county_code": str((event.get("location") or {}).get("county_code") or ""),
            "occurred_at": int(event["occurred_at"]), "rules_version": rules_version}


def resolve(incident_id_: str, merged_into: Mapping[str, str], limit: int = 100_000) -> str:
    """The live incident id of `incident_id_`: follows `merged_into` (retired id → the id it was
    merged into, from the redirect records of incidents.v1) to its end."""
    seen = 0
    while incident_id_ in merged_into and seen < limit:
        incident_id_ = merged_into[incident_id_]
        seen += 1
    return incident_id_


def complete_members(incidents: Mapping[str, Mapping[str, Any]], joined: Mapping[str, str]) -> dict[str, Incident]:
    """Published incident records (incident_id → latest record) with every member id back in
    ``event_ids``: for a live record listing fewer ids than its ``event_count``, its listed ids plus
    every event whose incident-members.v1 holder (`joined`: event_id → incident_id) resolves to it
    through the redirect records among `incidents`. Other records are returned as they are."""
    merged_into = {iid: str(r["merged_into"]) for iid, r in incidents.items()
                   if r.get("status") == "merged" and r.get("merged_into")}
    short = {iid for iid, r in incidents.items() if lists_fewer(r)}
    extra: dict[str, set[str]] = {iid: set() for iid in short}
    if short:
        for eid, holder in joined.items():
            live = resolve(holder, merged_into)
            if live in extra:
                extra[live].add(eid)
    return {iid: ({**r, "event_ids": sorted(set(r.get("event_ids") or ()) | extra[iid])} if iid in extra else dict(r))
            for iid, r in incidents.items()}


class IncidentState:
    """Incident bookkeeping over injectable mappings (see module docstring)."""

    def __init__(
        self,
        event_incident: MutableMapping[str, str] | None = None,
        incidents: MutableMapping[str, Incident] | None = None,
        pending: MutableMapping[str, list] | None = None,
        tier_rules: TierRules | None = None,
        clock: Callable[[str], int | None] | None = None,
        watch: Mapping[str, str] | None = None,
    ) -> None:
        self.event_incident: MutableMapping[str, str] = {} if event_incident is None else event_incident
        self.incidents: MutableMapping[str, Incident] = {} if incidents is None else incidents
        self.pending: MutableMapping[str, list] = {} if pending is None else pending
        self.rules = tier_rules or load_tier_rules()
        #: county code -> the county clock (epoch ms) the lifecycle fields are derived at
        self.clock: Callable[[str], int | None] = clock or (lambda _county: None)
        #: person / plate key -> watch list name (a hit makes an event open an incident)
        self.watch: Mapping[str, str] = watch or {}
        #: incident id -> (its summaries list, their _summary_facts, the event_rises fold, whether any
        #: summary has an admin code); a cache, never state
        self._facts_memo: dict[str, tuple[list[dict[str, Any]], tuple[str, str | None, Any],
                                          lifecycle.RisesFold, bool]] = {}

    # ------------------------------------------------------------------ public API

    def registered(self, eid: str) -> bool:
        """Whether `eid` belongs to a live incident that holds it (`may_hold`).

        In ``at_least_once`` mode the five state tables are written separately, so a worker killed
        mid-write can leave an event mapped to an incident record that never reached the
        changelog (or an older one). Such a mapping is dropped here, and the event is registered
        again when it is replayed. (Past the listed ids of a flood incident this cannot be told;
        ``exactly_once`` checkpoints write the tables together, so the case does not arise.)"""
        iid = self._follow(eid)
        if iid is not None and may_hold(self.incidents[iid], eid):
            return True
        own = self.incidents.get(incident_id(eid))  # the incident it started (or kept) as the first event
        if own is not None and sorted_contains(own["event_ids"], eid):
            self.event_incident[eid] = own["incident_id"]
            return True
        if self.event_incident.get(eid) is not None:
            del self.event_incident[eid]
        return False

    def members(self) -> dict[str, list[str]]:
        """Every live incident's member ids, sorted (walks every mapping: for tests and offline
        tools; the incident records list only the smallest ``listed_event_ids``)."""
        out: dict[str, list[str]] = {}
        for eid in sorted(k for k in list(self.event_incident) if not k.startswith(_INTO)):
            iid = self.incident_of(eid)
            if iid is not None:
                out.setdefault(iid, []).append(eid)
        return out

    def apply_event(self, event: Event) -> list[Incident]:
        """Register an event; returns the incident records to emit (singleton, or merged)."""
        eid = event["event_id"]
        if self.registered(eid):
            return []
        existing = self.incidents.get(incident_id(eid))
        if existing is not None and sorted_contains(existing["event_ids"], eid):
            # its incident survived a partial write but the mapping did not: restore the mapping
            self.event_incident[eid] = existing["incident_id"]
            return [existing]
        _, county, town, village = _codes(event)
        persons = {k for p in event.get("persons") or () for k in p.get("keys") or ()}
        vehicles = {v["key"] for v in event.get("vehicles") or () if v.get("key")}
        hits = sorted({f"watch:{self.watch[k]}" for k in persons | vehicles if k in self.watch})
        opening = lifecycle.opens(event, self.rules, hits)
        settle = lifecycle.settling(event)
        inc: Incident = {
            "status": "open", "merged_into": None, "severity": int(event.get("severity") or 1),
            "county_code": county or "", "town_codes": [town] if town else [],
            "village_codes": [village] if village else [],
            "first_seen": int(event["occurred_at"]), "last_seen": int(event["occurred_at"]),
            "events": [event_summary(event)], "links": [],
            "person_keys": sorted(persons), "vehicle_keys": sorted(vehicles), "tier": None,
            "actionable": opening, "watch_hits": hits,
            "opening_at": int(event["occurred_at"]) if opening else None,
            "dispositions": [settle] if settle else [], "recurrence": None,
        }
        inc = self._finish(inc)
        self._put(inc)
        self.event_incident[eid] = inc["incident_id"]
        out: dict[str, Incident] = {inc["incident_id"]: inc}
        parked = self.pending.get(_DISP + eid)
        if parked:  # center actions that arrived before their anchor event (a replay's order)
            del self.pending[_DISP + eid]
            for rec in self.apply_dispositions(parked):
                out[rec["incident_id"]] = rec
        waiting = self.pending.get(eid)
        if waiting:
            del self.pending[eid]
            for link in sorted(waiting, key=lambda lk: lk["link_id"]):
                for rec in self.apply_link(link):
                    out[rec["incident_id"]] = rec
        return [out[k] for k in sorted(out)]

    def apply_link(self, link: Mapping[str, Any], events: EventLookup = None) -> list[Incident]:
        """Apply a link; returns the updated incident and redirect records to emit."""
        out: dict[str, Incident] = {}
        for eid in (link["event_a"], link["event_b"]):
            if not self.registered(eid):
                ev = self._lookup(events, eid)
                if ev is None:
                    self._park(eid, link)
                    return [out[k] for k in sorted(out)]
                for rec in self.apply_event(ev):
                    out[rec["incident_id"]] = rec
        ia, ib = self._held(link["event_a"]), self._held(link["event_b"])
        if ia == ib or self._too_big([self.incidents[ia], self.incidents[ib]]):
            out.update(self._apply_stepwise([link]))  # a link inside one incident, or past the cap
            return [out[k] for k in sorted(out)]
        for rec in self._merge(self.incidents[ia], self.incidents[ib], link):
            out[rec["incident_id"]] = rec
        return [out[k] for k in sorted(out)]

    def apply_recurrence(self, iid: str, step: Mapping[str, Any]) -> list[Incident]:
        """Record a recurrence escalation step on a live incident (sticky); [] if no change."""
        inc = self.incidents.get(iid)
        if inc is None:
            return []
        current = inc.get("recurrence")
        if current and (self.rules.rank(current["to_tier"]), -int(current["at"])) >= (
                self.rules.rank(step["to_tier"]), -int(step["at"])):
            return []  # keep the higher target, then the earlier time
        new = self._finish({**inc, "recurrence": dict(step)}, presorted=True)
        self._put(new)
        return [new]

    def apply_dispositions(self, dispositions: list[Mapping[str, Any]]) -> list[Incident]:
        """Apply actions (pingan.Disposition) to the incidents holding their anchor events.

        An action whose anchor event is not registered yet is kept in ``pending`` and applied when
        the event arrives; an action already applied (same disposition_id) changes nothing."""
        out: dict[str, Incident] = {}
        for d in dispositions:
            anchor = d["anchor_event_id"]
            if not self.registered(anchor):
                waiting = list(self.pending.get(_DISP + anchor) or ())
                if all(w["disposition_id"] != d["disposition_id"] for w in waiting):
                    self.pending[_DISP + anchor] = waiting + [dict(d)]
                continue
            iid = self._held(anchor)
            inc = self.incidents[iid]
            if any(x["disposition_id"] == d["disposition_id"] for x in inc.get("dispositions") or ()):
                continue
            new = self._finish({**inc, "dispositions": lifecycle.merge_dispositions(
                inc.get("dispositions") or (), [lifecycle.summary_of(d)])}, presorted=True)
            self._put(new)
            out[iid] = new
        return [out[k] for k in sorted(out)]

    def apply_settlement(self, event: Event) -> list[Incident]:
        """A known event delivered again saying the matter is settled (Event.resolution)."""
        settle = lifecycle.settling(event)
        iid = self.incident_of(event["event_id"])
        if settle is None or iid is None:
            return []
        return self.apply_dispositions([{**settle, "anchor_event_id": event["event_id"]}])

    def rederive(self, county_code: str, before_ms: int | None, clock_ms: int) -> list[tuple[Incident, Incident]]:
        """(old, new) for the incidents of a county whose handling deadline passed when its clock
        moved from `before_ms` to `clock_ms` (both rounded to the clock step), found through the
        deadline index: the work is proportional to what is due, not to the county's incidents."""
        if before_ms is None:
            return []  # no incident of the county exists before its clock first moves
        step = max(1, self.rules.clock_step_ms)
        due: set[str] = set()
        for bucket in range(int(before_ms) // step, int(clock_ms) // step):
            due.update(self.pending.get(f"{_DUE}{county_code}:{bucket}") or ())
        out: list[tuple[Incident, Incident]] = []
        for iid in sorted(due):
            inc = self.incidents.get(iid)
            if inc is None or inc.get("deadline_at") is None or int(inc["deadline_at"]) >= clock_ms:
                continue
            new = self._finish(inc, presorted=True)
            if new != inc:
                self._put(new)
                out.append((inc, new))
        return out

    def live(self) -> dict[str, Incident]:
        """All live incidents by id (merged-away ids are not kept)."""
        return {k: self.incidents[k] for k in sorted(self.incidents)}

    def incident_of(self, event_id: str) -> str | None:
        """The live incident id an event belongs to (None if unknown, see `registered`)."""
        return self._held(event_id) if self.registered(event_id) else None

    # ------------------------------------------------------------------ internals

    def _follow(self, eid: str) -> str | None:
        """The live incident id `eid` is mapped to, following merge pointers (``~into:``); None if
        unmapped or the pointers end at no live incident. A mapping or pointer passed on the way is
        set to the end (path compression: later lookups take one step)."""
        iid = self.event_incident.get(eid)
        if iid is None:
            return None
        passed: list[str] = []
        while self.incidents.get(iid) is None:
            nxt = self.event_incident.get(_INTO + iid)
            if nxt is None or len(passed) > 100_000:
                return None
            passed.append(iid)
            iid = nxt
        if passed:
            self.event_incident[eid] = iid
            for old in passed[:-1]:
                self.event_incident[_INTO + old] = iid
        return iid

    def _held(self, eid: str) -> str:
        """The live incident id of a registered event (KeyError if it has none)."""
        iid = self._follow(eid)
        if iid is None:
            raise KeyError(eid)
        return iid

    @staticmethod
    def _lookup(events: EventLookup, eid: str) -> Event | None:
        if events is None:
            return None
        if callable(events):
            return events(eid)
        return events.get(eid)

    def _due_key(self, inc: Mapping[str, Any] | None) -> str | None:
        if not inc or inc.get("deadline_at") is None:
            return None
        step = max(1, self.rules.clock_step_ms)
        return f"{_DUE}{inc.get('county_code') or ''}:{int(inc['deadline_at']) // step}"

    def _reindex_due(self, iid: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
        """Move `iid` between deadline buckets when its deadline changes (values re-assigned)."""
        was, now = self._due_key(old), self._due_key(new)
        if was == now:
            return
        if was is not None:
            kept = [x for x in self.pending.get(was) or () if x != iid]
            if kept:
                self.pending[was] = kept
            elif was in self.pending:
                del self.pending[was]
        if now is not None:
            ids = list(self.pending.get(now) or ())
            if iid not in ids:
                self.pending[now] = sorted(ids + [iid])

    def _put(self, inc: Incident) -> None:
        """Store a live incident record, keeping the deadline index in step."""
        iid = inc["incident_id"]
        self._reindex_due(iid, self.incidents.get(iid), inc)
        self.incidents[iid] = inc

    def _drop(self, iid: str) -> None:
        """Remove a merged-away incident (and its deadline index entry)."""
        self._reindex_due(iid, self.incidents.get(iid), None)
        del self.incidents[iid]

    def _capped_away(self, link: Mapping[str, Any]) -> bool:
        """Whether a link inside one incident is absent from a full kept-links list and weaker
        than all of it (so it was applied before and capped away)."""
        ia, ib = self._follow(link["event_a"]), self._follow(link["event_b"])
        if ia is None or ia != ib:
            return False
        links = self.incidents[ia]["links"]
        if len(links) < MAX_LINKS:
            return False
        return _link_strength(link) > max(_link_strength(lk) for lk in links)

    def _too_big(self, incs: list[Incident]) -> bool:
        """Whether merging these incidents would pass the cap on events per incident."""
        return sum(count_of(i) for i in incs) > self.rules.max_incident_events

    def _continuation(self, iid: str) -> Incident | None:
        """The live incident that goes on where the full incident `iid` stopped, if there is one."""
        root = (self.pending.get(_CONT + iid) or [None])[0]
        if root is None or not self.registered(root):
            return None
        return self.incidents[self._held(root)]

    def _chain(self, iid: str, limit: int = 64) -> list[str]:
        """Ids of the incidents that go on after `iid`: its continuation, that one's, and so on."""
        out: list[str] = []
        seen, at = {iid}, iid
        while len(out) < limit:
            cont = self._continuation(at)
            if cont is None or cont["incident_id"] in seen:
                break
            at = cont["incident_id"]
            seen.add(at)
            out.append(at)
        return out

    @staticmethod
    def _holds(inc: Incident, link_id: str) -> bool:
        links = inc["links"]
        at = bisect.bisect_left(links, link_id, key=_link_key)
        return at < len(links) and links[at]["link_id"] == link_id

    def _past_cap(self, a: Incident, b: Incident, link: Mapping[str, Any], *,
                  repair: bool = False) -> tuple[str, str | None, dict[str, Any]] | None:
        """Where a link between two incidents too big to merge goes: (the incident that keeps it,
        the continuation that incident joins or None, the link with a reason naming the full
        incident); None when it was applied before: either incident lists it, or (``repair``: the
        links of an event seen before) neither incident is without links.

        The full side is the one whose continuation chain reaches the other, else the bigger. The
        other joins the full one's continuation if the two fit together, else it becomes that
        continuation (recorded under ``~cont:<full id>``); a continuation that is full too passes
        on to its own continuation."""
        if self._holds(a, link["link_id"]) or self._holds(b, link["link_id"]):
            return None
        if repair and a["links"] and b["links"]:
            # the links of an event seen before were applied with it (a checkpoint holds an event's
            # whole step), and one listed on neither side was capped away since (a merge can bring
            # weaker links back into a list, so strength cannot tell); only an incident with no
            # link at all (a partial write in at_least_once mode) still needs it
            return None
        if b["incident_id"] in self._chain(a["incident_id"]):
            small, full = b, a
        elif a["incident_id"] in self._chain(b["incident_id"]):
            small, full = a, b
        else:
            small, full = sorted((a, b), key=lambda i: (count_of(i), i["incident_id"]))
        kept = {**link, "reasons": [*link["reasons"], f"未合并：关联事件{full['incident_id']}已达上限"
                                                       f"{self.rules.max_incident_events}条，本事件续接"]}
        seen = {full["incident_id"]}
        at = full
        while True:
            cont = self._continuation(at["incident_id"])
            if cont is None:
                self.pending[_CONT + at["incident_id"]] = [small["event_ids"][0]]
                return small["incident_id"], None, kept
            if cont["incident_id"] == small["incident_id"] or cont["incident_id"] in seen:
                return small["incident_id"], None, kept
            if not self._too_big([small, cont]):
                return small["incident_id"], cont["incident_id"], kept
            seen.add(cont["incident_id"])
            at = cont  # the continuation is full too: go on to its own

    def _apply_stepwise(self, links: list[Mapping[str, Any]], *, repair: bool = False) -> dict[str, Incident]:
        """Links (endpoints registered) when a merge would pass the cap: what `apply_link` does for
        each in link_id order, with the links that stay on one incident added in one update (a
        flood event brings up to 200 links to the full incident). ``repair`` as in `apply_links`."""
        out: dict[str, Incident] = {}
        adds: dict[str, list[Mapping[str, Any]]] = {}

        def flush() -> None:
            for iid in sorted(adds):
                for rec in self._add_links(self.incidents[iid], adds[iid]):
                    out[iid] = rec
            adds.clear()

        for link in sorted(links, key=_link_key):
            ia, ib = self._held(link["event_a"]), self._held(link["event_b"])
            if ia == ib:
                adds.setdefault(ia, []).append(link)
                continue
            if self._too_big([self.incidents[ia], self.incidents[ib]]):
                where = self._past_cap(self.incidents[ia], self.incidents[ib], link, repair=repair)
                if where is None:
                    continue
                small, cont, kept = where
                if cont is None:
                    adds.setdefault(small, []).append(kept)
                    continue
                pair, new_links = [small, cont], [kept]
            else:
                pair, new_links = [ia, ib], [link]
            flush()  # (a link waiting in `adds` twice is still added once: _merge_links dedupes)
            for rec in self._combine([self.incidents[i] for i in pair], new_links):
                out[rec["incident_id"]] = rec
        flush()
        return out

    def _add_links(self, inc: Incident, links: Iterable[Mapping[str, Any]]) -> list[Incident]:
        """Add links to an incident's kept links (in link_id order, capped); [] if all are there."""
        merged, added = _merge_links(inc["links"], sorted(links, key=_link_key))
        if not added:
            return []
        new = self._finish({**inc, "links": _cap_links_sorted(merged),
                            "link_count": int(inc.get("link_count") or len(inc["links"])) + added}, presorted=True)
        self._put(new)
        return [new]

    def _park(self, eid: str, link: Mapping[str, Any]) -> None:
        waiting = list(self.pending.get(eid) or ())
        if all(lk["link_id"] != link["link_id"] for lk in waiting):
            self.pending[eid] = waiting + [dict(link)]

    def _merge(self, a: Incident, b: Incident, link: Mapping[str, Any]) -> list[Incident]:
        return self._combine([a, b], [link])

    def _combine(self, incs: list[Incident], new_links: list[Mapping[str, Any]]) -> list[Incident]:
        """Merge incidents (one or more) and add new links; returns the survivor and redirects.

        Incremental: the kept lists of the biggest part are the base and the others' items are
        added into them (a flood incident of thousands of events absorbing a new singleton costs
        about what the singleton brings, not what the flood holds). Same result as a full union:
        every field is a union, a min/max or a top-K of a total order."""
        big = max(incs, key=lambda i: (count_of(i), i["incident_id"]))
        rest = sorted((i for i in incs if i is not big), key=lambda i: i["incident_id"])
        event_ids, events, links = big["event_ids"], big["events"], big["links"]
        persons, vehicles = big["person_keys"], big["vehicle_keys"]
        for other in rest:
            event_ids = _union_sorted(event_ids, other["event_ids"])
            events = _merge_summaries(events, other["events"])
            links, _ = _merge_links(links, other["links"])
            persons = _union_sorted(persons, other["person_keys"])
            vehicles = _union_sorted(vehicles, other["vehicle_keys"])
        links, added = _merge_links(links, sorted(new_links, key=_link_key))
        links = _cap_links_sorted(links)
        new_id = incident_id(event_ids[0])
        merged_from = big.get("merged_from") or []  # _union_sorted copies only on change
        for other in rest:
            merged_from = _union_sorted(merged_from, other.get("merged_from") or ())
        merged_from = _union_sorted(merged_from, [i["incident_id"] for i in incs if i["incident_id"] != new_id])
        dispositions = [i["dispositions"] for i in incs if i.get("dispositions")]
        recurrences = [i["recurrence"] for i in incs if i.get("recurrence")]
        openings = [int(i["opening_at"]) for i in incs if i.get("opening_at") is not None]
        merged = self._finish({
            "status": "open", "merged_into": None, "severity": max(i["severity"] for i in incs),
            "county_code": next((i["county_code"] for i in sorted(incs, key=lambda i: i["incident_id"])
                                 if i["county_code"]), ""),
            "town_codes": sorted({c for i in incs for c in i["town_codes"]}),
            "village_codes": sorted({c for i in incs for c in i["village_codes"]}),
            "first_seen": min(i["first_seen"] for i in incs),
            "last_seen": max(i["last_seen"] for i in incs),
            "events": events, "links": links, "event_ids": event_ids, "merged_from": merged_from,
            "event_count": sum(count_of(i) for i in incs),
            "link_count": sum(int(i.get("link_count") or len(i["links"])) for i in incs) + added,
            "person_keys": persons, "vehicle_keys": vehicles,
            "tier": None,
            "actionable": any(i.get("actionable", True) for i in incs),
            "watch_hits": sorted({h for i in incs for h in i.get("watch_hits") or ()}),
            "opening_at": max(openings) if openings else None,
            "dispositions": dispositions[0] if len(dispositions) == 1 else lifecycle.merge_dispositions(*dispositions),
            "recurrence": max(recurrences, key=lambda r: (self.rules.rank(r["to_tier"]), -int(r["at"]),
                                                          r["reason"])) if recurrences else None,
        }, presorted=True)
        out = [merged]
        for old in incs:  # a continuation pointer follows its incident to the new id (the first one kept)
            ptr = self.pending.get(_CONT + old["incident_id"]) if old["incident_id"] != new_id else None
            if ptr is not None:
                del self.pending[_CONT + old["incident_id"]]
                if self.pending.get(_CONT + new_id) is None:
                    self.pending[_CONT + new_id] = ptr
        for old in incs:
            if old["incident_id"] == new_id:
                continue
            if count_of(old) <= _REMAP_MAX and count_of(old) == len(old["event_ids"]):
                for eid in old["event_ids"]:
                    self.event_incident[eid] = new_id
            else:  # its members (not all listed, or many) find the new id through the pointer
                self.event_incident[_INTO + old["incident_id"]] = new_id
            self._drop(old["incident_id"])
            out.append(redirect(old, new_id, old["version"] + 1))
        self._put(merged)
        return sorted(out, key=lambda r: r["incident_id"])

    def apply_links(self, links: list[Mapping[str, Any]], events: EventLookup = None, *,
                    repair: bool = False) -> list[Incident]:
        """Apply several links at once (same result as one by one, with one update per incident).

        The links of one new event in a dense burst (a flood) touch the same few incidents many
        times; combining them first makes the step linear in the number of links.
        ``repair``: the links of an event seen before (a duplicate delivery or a replay after a
        crash): a link inside one incident that is missing from its kept links is applied only if
        it would be kept (a weaker one was applied before and capped away, so it is not counted
        again; link_count stays exact for duplicates).
        """
        out: dict[str, Incident] = {}
        ready: list[Mapping[str, Any]] = []
        known: set[str] = set()  # registered ids (nothing in this loop unregisters one)
        for link in links:
            parked = False
            for eid in (link["event_a"], link["event_b"]):
                if eid in known:
                    continue
                if self.registered(eid):
                    known.add(eid)
                else:
                    ev = self._lookup(events, eid)
                    if ev is None:
                        self._park(eid, link)
                        parked = True
                        break
                    for rec in self.apply_event(ev):
                        out[rec["incident_id"]] = rec
                    known.add(eid)
            if not parked:
                if repair and self._capped_away(link):
                    continue
                ready.append(link)
        parent: dict[str, str] = {}
        holder: dict[str, str] = {}  # event id -> its incident (nothing changes below until _combine)

        def held(eid: str) -> str:
            iid = holder.get(eid)
            if iid is None:
                iid = holder[eid] = self._held(eid)
            return iid

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for link in ready:
            ra = find(held(link["event_a"]))
            rb = find(held(link["event_b"]))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        groups: dict[str, tuple[set[str], list[Mapping[str, Any]]]] = {}
        for link in ready:
            ia, ib = held(link["event_a"]), held(link["event_b"])
            members, group_links = groups.setdefault(find(ia), (set(), []))
            members.update((ia, ib))
            group_links.append(link)
        if any(len(members) > 1 and self._too_big([self.incidents[i] for i in members])
               for members, _ in groups.values()):
            # the cap decides link by link, in link_id order; a continuation one group joins may
            # belong to another group, so the whole batch goes this way
            out.update(self._apply_stepwise(ready, repair=repair))
            return [out[k] for k in sorted(out)]
        for root in sorted(groups):
            members, group_links = groups[root]
            incs = [self.incidents[i] for i in sorted(members)]
            if len(incs) == 1:
                known = {lk["link_id"] for lk in incs[0]["links"]}
                if all(lk["link_id"] in known for lk in group_links):
                    continue
            for rec in self._combine(incs, sorted(group_links, key=_link_key)):
                out[rec["incident_id"]] = rec
        return [out[k] for k in sorted(out)]

    def _summary_facts(self, iid: str, events: list[dict[str, Any]]) -> tuple[str, str | None, Any]:
        """(kind, common admin code of the summaries, lifecycle.event_rises) of a summaries list.

        Kept per incident id for its current summaries list object (a reference is held, so the
        identity is sound, and at most one list per id): a touch that leaves an incident's
        summaries unchanged (a flood's later events are not among its earliest 300) reuses them
        instead of walking the summaries again, and a list that only gained later summaries at its
        end (a growing flood's next event) carries the three on from the kept list: the most
        serious kind and the common code are a min and a meet, `lifecycle.RisesFold` resumes in
        event time. A cache, never state: a miss recomputes."""
        hit = self._facts_memo.get(iid)
        if hit is not None and hit[0] is events:
            return hit[1]
        rank = self.rules.kind_rank
        kept = len(hit[0]) if hit is not None else 0
        if hit is not None and 0 < kept < len(events) and all(map(operator.is_, hit[0], events)):
            _, (old_kind, old_common, _), fold, coded = hit
            added, fold, kinds = events[kept:], fold.copy(), [old_kind]
        else:
            added, fold, kinds, old_common, coded = events, lifecycle.RisesFold(), [], None, False
        kind = min([*kinds, *(e.get("kind") or "other" for e in added)], key=lambda k: (rank(k), k))
        codes = [e.get("admin_code") or "" for e in added]
        if old_common is not None:  # the meet of the kept summaries' common code and the added codes
            common = admin.common([old_common, *codes])
        elif coded:  # kept summaries with codes but no common one: none, whatever is added
            common = None
        else:
            common = admin.common(codes)
        fold.feed(added, self.rules)
        coded = coded or any(codes)
        facts = (kind, common, fold.result())
        if len(self._facts_memo) >= 4096:
            self._facts_memo.clear()
        self._facts_memo[iid] = (events, facts, fold, coded)
        return facts

    def _finish(self, inc: Incident, presorted: bool = False) -> Incident:
        """Recompute the derived fields (id, kind, admin code, tier, version, orderings).

        ``presorted``: every list is already canonical (events and links in their order and caps,
        event_ids, person/vehicle keys and merged_from sorted and unique; what a stored record
        or `_combine` holds), so nothing that grows with the incident is rebuilt."""
        if presorted:
            events = inc["events"]
            if len(events) > MAX_EVENT_SUMMARIES:
                events = events[:MAX_EVENT_SUMMARIES]
            links = inc["links"]
            event_ids = inc["event_ids"]
            persons, vehicles = inc["person_keys"], inc["vehicle_keys"]
            merged_from = inc.get("merged_from") or []
        else:
            events = sorted(inc["events"], key=lambda e: (e["occurred_at"], e["event_id"]))[:MAX_EVENT_SUMMARIES]
            links = _cap_links(sorted(inc["links"], key=_link_key))
            event_ids = sorted(set(inc.get("event_ids") or ()) | {e["event_id"] for e in events})
            persons, vehicles = sorted(set(inc["person_keys"])), sorted(set(inc["vehicle_keys"]))
            merged_from = sorted(set(inc.get("merged_from") or ()))
        count = int(inc.get("event_count") or 0) or len(event_ids)
        # the smallest listed_event_ids (a top-K: `_combine`'s unions and a state written before the
        # lists were bounded are cut here)
        listed = self.rules.listed_event_ids
        if len(event_ids) > listed:
            event_ids = event_ids[:listed]
        if len(merged_from) > listed:
            merged_from = merged_from[:listed]
        iid = incident_id(event_ids[0])
        kind, common, routing = self._summary_facts(iid, events)
        out: Incident = {
            "incident_id": iid,
            "status": inc["status"], "merged_into": inc.get("merged_into"),
            "merged_from": merged_from,
            "kind": kind, "severity": inc["severity"],
            "admin_code": common or inc["county_code"] or "",
            "county_code": inc["county_code"],
            "town_codes": sorted(set(inc["town_codes"])), "village_codes": sorted(set(inc["village_codes"])),
            "first_seen": inc["first_seen"], "last_seen": inc["last_seen"],
            "event_ids": event_ids, "events": events, "links": links,
            "event_count": count, "link_count": int(inc.get("link_count") or len(links)),
            "person_keys": persons, "vehicle_keys": vehicles,
            "updated_at": inc["last_seen"],
            "actionable": bool(inc.get("actionable", True)),
            "watch_hits": sorted(set(inc.get("watch_hits") or ())),
            "opening_at": inc.get("opening_at"),
            "dispositions": list(inc.get("dispositions") or ()),
            "recurrence": inc.get("recurrence"),
            "rules_version": "",  # the processor stamps the version of the rules in force on output
        }
        out.update(lifecycle.derive(out, self.rules, self.clock(out["county_code"]), routing=routing))
        if inc.get("status") == "merged":
            out["status"] = "merged"
        # Strictly increasing per live id for every change (Elasticsearch external versions): facts
        # only grow, and one new fact (weight 5) outweighs the largest drop of the derived part
        # (an earlier resolution can undo at most two tier steps: rank + history fall by <= 4);
        # with no new fact, only the clock moves, and it only raises the tier.
        facts = count + out["link_count"] + len(out["dispositions"]) + bool(out["recurrence"])
        out["version"] = 5 * facts + self.rules.rank(out["tier"]) + len(out["escalation_history"])
        return out
