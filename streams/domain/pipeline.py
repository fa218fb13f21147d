"""One county partition's processing step: correlate an event, update incidents, escalate.

Pure composition of `correlate.CandidateIndex`, `incidents.IncidentState` and `tiers`, over
injectable mappings (`Stores`) so the Faust agent backs them with changelogged tables and the
tests and the quality benchmark back them with dicts. Same events in any order → same final
incidents (see tests/unit/test_incidents.py); duplicates of an event emit nothing.
"""
from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from streams.domain.correlate import CandidateIndex
from streams.domain.incidents import IncidentState, member_record, redirect, sorted_contains
from streams.domain.rules import CorrelationRules, load_rules
from streams.domain.lifecycle import quantize
from streams.domain.tiers import (
    TIER_NAMES_CN,
    PersonHistory,
    TierRules,
    escalation_id,
    load_tier_rules,
    recurrence_at,
    route,
)

Event = Mapping[str, Any]


@dataclass(frozen=True)
class Stores:
    """The state of one processor; every mapping is recoverable (a Faust table in the worker)."""

    candidates: MutableMapping[str, Any] = field(default_factory=dict)
    event_incident: MutableMapping[str, Any] = field(default_factory=dict)
    incidents: MutableMapping[str, Any] = field(default_factory=dict)
    pending: MutableMapping[str, Any] = field(default_factory=dict)
    history: MutableMapping[str, Any] = field(default_factory=dict)


@dataclass
class StepOutput:
    """What one step emits: links, incident records (updates and merge redirects), escalations,
    and the pingan.IncidentMember record of the step's event (`incidents.member_record`)."""

    links: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    members: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.links or self.incidents or self.escalations or self.members)

    def extend(self, other: "StepOutput") -> None:
        """Append `other`'s links, incident records, escalations and members (a batch collecting its steps)."""
        self.links.extend(other.links)
        self.incidents.extend(other.incidents)
        self.escalations.extend(other.escalations)
        self.members.extend(other.members)


_CLOCK = "~clock:"  # history-store key prefix of a county's clock: [epoch ms]


def escalation_records(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """pingan.Escalation records for the steps in `after`'s escalation history that `before`
    (the same incident's previous record, or its merged parts) did not have."""
    seen = {(s["to_tier"], s["reason_code"]) for s in (before or {}).get("escalation_history") or ()}
    out = []
    for step in after.get("escalation_history") or ():
        if (step["to_tier"], step["reason_code"]) in seen:
            continue
        out.append({
            "escalation_id": escalation_id(after["incident_id"], step["to_tier"], step["reason_code"]),
            "incident_id": after["incident_id"], "from_tier": step["from_tier"], "to_tier": step["to_tier"],
            "reason_code": step["reason_code"], "reason": step["reason"],
            "admin_code": after.get("admin_code") or "", "at": int(step["at"]),
        })
    return out


class CountyProcessor:
    """Correlate → link → incidents → lifecycle for the events of one county partition.

    Inputs: canonical events (`process`), center actions (`apply_disposition`, pingan.Disposition)
    and clock ticks (`tick`, pingan.ClockTick). Each county has a clock: the highest event time
    seen (an event counts no later than it was received), moved on by ticks when the county is
    quiet; incidents' deadlines are evaluated on it (streams/domain/lifecycle.py), so the same
    inputs give the same incidents whatever their order or speed.
    """

    def __init__(self, stores: Stores | None = None, rules: CorrelationRules | None = None,
                 tier_rules: TierRules | None = None, watch: Mapping[str, str] | None = None,
                 rules_version: str = "") -> None:
        self.stores = stores or Stores()
        self.rules_version = rules_version  # stamped on every link and incident record emitted
        self.rules = rules or load_rules()
        self.tier_rules = tier_rules or load_tier_rules()
        self.index = CandidateIndex(self.rules, self.stores.candidates)
        self.state = IncidentState(self.stores.event_incident, self.stores.incidents, self.stores.pending,
                                   self.tier_rules, clock=self.clock, watch=watch)
        self.history = PersonHistory(self.tier_rules, self.stores.history)

    # ------------------------------------------------------------------ the county clock

    def clock(self, county_code: str) -> int | None:
        """The county's clock, rounded down to the deadline check step (None before any input)."""
        value = self.stores.history.get(_CLOCK + county_code)
        return quantize(int(value[0]), self.tier_rules) if value else None

    def _advance(self, county_code: str, now_ms: int) -> StepOutput:
        """Move the county clock forward; re-derive incidents whose deadline passed."""
        before = self.clock(county_code)
        raw = self.stores.history.get(_CLOCK + county_code)
        if raw and int(raw[0]) >= now_ms:
            return StepOutput()
        self.stores.history[_CLOCK + county_code] = [int(now_ms)]
        after = self.clock(county_code)
        out = StepOutput()
        if after is None or after == before:
            return out
        for old, new in self.state.rederive(county_code, before, after):
            out.escalations.extend(escalation_records(old, new))
            out.incidents.append(new)
        return out

    def tick(self, tick: Mapping[str, Any]) -> StepOutput:
        """A pingan.ClockTick: the county clock moves to now_ms if that is later."""
        out = self._advance(str(tick["county_code"]), int(tick["now_ms"]))
        self.expire()
        return self._stamp(out)

    # ------------------------------------------------------------------ inputs

    def process(self, event: Event) -> StepOutput:
        """Apply one canonical event; return what to publish.

        An event seen before (a duplicate delivery, or a replay after a crash that persisted the
        state but not the outputs) re-emits its incident's current record: idempotent downstream,
        and it closes the window between a state write and its output. A known event that now
        says the matter is settled (Event.resolution) resolves its incident."""
        county = str((event.get("location") or {}).get("county_code") or "")
        clock_out = self._advance(county, min(int(event["occurred_at"]),
                                              int(event.get("received_at") or event["occurred_at"])))
        known = self.state.incident_of(event["event_id"])
        if known is not None:
            # Re-index and re-apply its links too: both are idempotent, and they restore candidate
            # entries and merges that a worker killed between two table writes left out.
            repaired = {rec["incident_id"]: rec
                        for rec in self.state.apply_links(self._stamped(self.index.add(event)), repair=True)}
            for rec in self.state.apply_settlement(event):
                repaired[rec["incident_id"]] = rec
            current = repaired.get(known) or self.stores.incidents.get(known)
            if current is None or current.get("status") == "merged":
                return self._stamp(self._emit(clock_out, {}, repaired))
            live_id = current["incident_id"]
            header = {**redirect(current, live_id, current["version"]), "rules_version": self.rules_version}
            redirects = [{**header, "incident_id": gone} for gone in current.get("merged_from") or ()]
            repaired.pop(live_id, None)
            out = self._stamp(self._emit(clock_out, {}, repaired))
            out.incidents = redirects + out.incidents + [{**current, "rules_version": self.rules_version}]
            out.members.append(member_record(event, live_id, self.rules_version))
            return out
        links = self._stamped(self.index.add(event))
        before: dict[str, dict[str, Any]] = {}
        # each endpoint once, in link order: a flood event's links all share the new event and
        # lead to a few incidents, so looking up both ends of every link repeats the same reads
        for eid in dict.fromkeys(e for link in links for e in (link["event_a"], link["event_b"])):
            iid = self.state.incident_of(eid)
            if iid is not None and iid not in before:
                before[iid] = dict(self.stores.incidents[iid])
        self.history.record(event)
        touched: dict[str, dict[str, Any]] = {}
        for rec in self.state.apply_event(event):
            touched[rec["incident_id"]] = rec
        for rec in self.state.apply_links(links):
            touched[rec["incident_id"]] = rec
        for iid in self._recurrence_candidates(event, touched):
            rec = self.stores.incidents.get(iid)
            if rec is None or not rec.get("actionable", True):
                continue
            at = recurrence_at(self._recurrence_view(rec), self.tier_rules, self.stores.history)
            if at is None:
                continue
            to = self.tier_rules.up(route(rec, self.tier_rules))
            step = {"from_tier": "", "to_tier": to, "reason_code": "recurrence",
                    "reason": f"同一当事人{self.tier_rules.recurrence_window_days}天内第"
                              f"{self.tier_rules.recurrence_count}次发生，升级至{TIER_NAMES_CN.get(to, to)}",
                    "at": at}
            if iid not in touched and iid not in before:
                before[iid] = dict(rec)
            for updated in self.state.apply_recurrence(iid, step):
                touched[iid] = updated
        out = self._emit(clock_out, before, touched)
        out.links = list(links)
        holder = self.state.incident_of(event["event_id"])
        if holder is not None:
            out.members.append(member_record(event, holder, self.rules_version))
        return self._stamp(out)

    def _stamped(self, links: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Links made under the rules in force carry their version."""
        return [{**link, "rules_version": self.rules_version} for link in links]

    def _stamp(self, out: StepOutput) -> StepOutput:
        """Every emitted incident record carries the version of the rules that produced it."""
        out.incidents = [{**rec, "rules_version": self.rules_version} for rec in out.incidents]
        return out

    def _recurrence_view(self, rec: Mapping[str, Any]) -> Mapping[str, Any]:
        """`rec` with only the person keys that have at least recurrence_count recorded events.

        The others cannot reach the count in any window, so `recurrence_at` gives the same answer
        without sorting their histories: a help-call flood holds one phone key per caller."""
        if rec.get("kind") not in self.tier_rules.recurrence_kinds:
            return rec
        need = self.tier_rules.recurrence_count
        keys = [k for k in rec.get("person_keys") or () if len(self.stores.history.get(k) or ()) >= need]
        return {**rec, "person_keys": keys}

    def _recurrence_candidates(self, event: Event, touched: Mapping[str, Any]) -> list[str]:
        """Live incidents to check for recurrence: those touched, and those holding the other
        recorded events of this event's persons (a late event can complete their count)."""
        ids = {iid for iid, rec in touched.items() if rec.get("status") != "merged"}
        if event.get("kind") in self.tier_rules.recurrence_kinds:
            for key in {k for p in event.get("persons") or () for k in p.get("keys") or ()}:
                for _ts, eid in self.stores.history.get(key) or ():
                    iid = self.state.incident_of(str(eid))
                    if iid is not None:
                        ids.add(iid)
        return sorted(ids)

    def apply_disposition(self, disposition: Mapping[str, Any]) -> StepOutput:
        """A center's action (pingan.Disposition), applied to the incident holding its anchor event."""
        anchor = disposition["anchor_event_id"]
        iid = self.state.incident_of(anchor)
        before = {iid: dict(self.stores.incidents[iid])} if iid is not None else {}
        touched = {rec["incident_id"]: rec for rec in self.state.apply_dispositions([disposition])}
        return self._stamp(self._emit(StepOutput(), before, touched))

    def _emit(self, out: StepOutput, before: Mapping[str, Mapping[str, Any]],
              touched: Mapping[str, Mapping[str, Any]]) -> StepOutput:
        """`out` plus the touched incident records and the escalation steps they newly carry
        (compared with their previous records; a merge with the union of its parts')."""
        for iid in sorted(touched):
            rec = touched[iid]
            out.incidents.append(dict(rec))
            if rec.get("status") == "merged":
                continue
            # the previous records among this one and the ids merged into it (`before` is small,
            # merged_from of a flood incident holds thousands of ids: look them up, not walk them)
            merged_from = rec.get("merged_from") or []
            parts = [p for x, p in before.items() if x == iid or sorted_contains(merged_from, x)]
            prior = {"escalation_history": [s for p in parts if p for s in p.get("escalation_history") or ()]}
            out.escalations.extend(escalation_records(prior, rec))
        return out

    def expire(self, now_ms: int | None = None) -> int:
        """Drop candidate entries older than the longest window plus lateness."""
        return self.index.expire(now_ms)


def run_batch(events: list[Event], processor: CountyProcessor | None = None) -> tuple[CountyProcessor, StepOutput]:
    """Process events in order with one processor (dict state); returns it and everything emitted."""
    proc = processor or CountyProcessor()
    total = StepOutput()
    for ev in events:
        total.extend(proc.process(ev))
    return proc, total
