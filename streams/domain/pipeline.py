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
from streams.domain.incidents import IncidentState
from streams.domain.rules import CorrelationRules, load_rules
from streams.domain.tiers import PersonHistory, TierRules, check_deadline, escalations, load_tier_rules

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
    """What one step emits: links, incident records (updates and merge redirects), escalations."""

    links: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.links or self.incidents or self.escalations)


class CountyProcessor:
    """Correlate → link → incidents → tiers for the events of one county partition."""

    def __init__(self, stores: Stores | None = None, rules: CorrelationRules | None = None,
                 tier_rules: TierRules | None = None) -> None:
        self.stores = stores or Stores()
        self.rules = rules or load_rules()
        self.tier_rules = tier_rules or load_tier_rules()
        self.index = CandidateIndex(self.rules, self.stores.candidates)
        self.state = IncidentState(self.stores.event_incident, self.stores.incidents, self.stores.pending,
                                   self.tier_rules)
        self.history = PersonHistory(self.tier_rules, self.stores.history)

    def process(self, event: Event) -> StepOutput:
        """Apply one canonical event; return what to publish.

        An event seen before (a duplicate delivery, or a replay after a crash that persisted the
        state but not the outputs) re-emits its incident's current record: idempotent downstream,
        and it closes the window between a state write and its output."""
        known = self.state.incident_of(event["event_id"])
        if known is not None:
            # Re-index and re-apply its links too: both are idempotent, and they restore candidate
            # entries and merges that a worker killed between two table writes left out.
            repaired = {rec["incident_id"]: rec for rec in self.state.apply_links(self.index.add(event))}
            current = repaired.get(known) or self.stores.incidents.get(known)
            if current is None or current.get("status") == "merged":
                return StepOutput(incidents=[repaired[k] for k in sorted(repaired)])
            live_id = current["incident_id"]
            redirects = [{**current, "incident_id": gone, "status": "merged", "merged_into": live_id,
                          "merged_from": []} for gone in current.get("merged_from") or ()]
            repaired.pop(live_id, None)
            return StepOutput(incidents=redirects + [repaired[k] for k in sorted(repaired)] + [current])
        links = self.index.add(event)
        before: dict[str, dict[str, Any]] = {}
        for link in links:
            for eid in (link["event_a"], link["event_b"]):
                iid = self.state.incident_of(eid)
                if iid is not None and iid not in before:
                    before[iid] = dict(self.stores.incidents[iid])
        self.history.record(event)
        touched: dict[str, dict[str, Any]] = {}
        for rec in self.state.apply_event(event):
            touched[rec["incident_id"]] = rec
        for rec in self.state.apply_links(links):
            touched[rec["incident_id"]] = rec
        out = StepOutput(links=list(links))
        for iid in sorted(touched):
            rec = touched[iid]
            if rec.get("status") == "merged":
                out.incidents.append(rec)
                continue
            for esc in escalations(before.get(iid), rec, self.tier_rules, self.stores.history):
                out.escalations.append(esc)
                for updated in self.state.apply_escalation(esc):
                    rec = updated
            out.incidents.append(rec)
        return out

    def check_deadlines(self, now_ms: int, county_code: str | None = None) -> StepOutput:
        """Escalate live incidents (of one county, if given) whose handling deadline has passed."""
        out = StepOutput()
        for iid in sorted(self.stores.incidents.keys()):
            inc = self.stores.incidents[iid]
            if county_code and inc.get("county_code") != county_code:
                continue
            if inc.get("status") in ("closed", "merged"):
                continue
            esc = check_deadline(inc, now_ms, self.tier_rules)
            if esc is None:
                continue
            updated = self.state.apply_escalation(esc)
            if updated:
                out.escalations.append(esc)
                out.incidents.extend(updated)
        return out

    def expire(self, now_ms: int | None = None) -> int:
        """Drop candidate entries older than the longest window plus lateness."""
        return self.index.expire(now_ms)


def run_batch(events: list[Event], processor: CountyProcessor | None = None) -> tuple[CountyProcessor, StepOutput]:
    """Process events in order with one processor (dict state); returns it and everything emitted."""
    proc = processor or CountyProcessor()
    total = StepOutput()
    for ev in events:
        step = proc.process(ev)
        total.links.extend(step.links)
        total.incidents.extend(step.incidents)
        total.escalations.extend(step.escalations)
    return proc, total
