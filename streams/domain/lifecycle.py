"""The incident lifecycle: what a center must act on, the disposition loop, escalation on a clock.

Every field this module derives is a function of the incident's *facts* and the county clock,
never of the order in which the facts arrived, so a replay (or a second worker) reproduces the
same incident exactly:

- facts: the events (their summaries, kinds, times, admin codes), ``opening_at`` (the latest
  occurred_at of an incident-opening event), ``actionable`` (any opening event or watch hit),
  ``watch_hits``, ``recurrence`` (a recurrence escalation step, sticky), and ``dispositions``
  (centers' actions and source events that settle the matter, ordered by (at, disposition_id));
- the clock: the county's event-time clock rounded down to ``rules.clock_step_ms``.

Contracts
- ``opens(event, rules, watch_hits) -> bool``: whether an event opens an incident on its own
  (tier_rules.toml ``[actionable]``), else it is evidence.
- ``settling(event) -> DispositionSummary | None``: the "resolve" action a source event carries
  (Event.resolution: mediation 调解成功, grid 已化解/已办结), with a deterministic id.
- ``derive(incident, rules, clock_ms) -> dict``: status, accepted_by, assignee, resolved_at,
  outcome, opened_at, tier, escalated, escalation_history, deadline_at. Resolved incidents keep
  the tier they had when resolved and have no deadline; evidence-only incidents never escalate.
- ``check(action, status)``: whether a center's action is allowed in a status (the API answers
  409 otherwise); the fold itself skips actions that do not apply (they stay in the list).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .ids import sha1_hex
from .tiers import TIER_NAMES_CN, TierRules, route

ACTIONS: tuple[str, ...] = ("accept", "assign", "note", "resolve", "reopen", "escalate")
ACTION_NAMES_CN = {"accept": "受理", "assign": "分派", "note": "备注", "resolve": "办结",
                   "reopen": "重新打开", "escalate": "上报"}
STATUSES: tuple[str, ...] = ("open", "accepted", "assigned", "resolved")
STATUS_NAMES_CN = {"open": "待受理", "accepted": "已受理", "assigned": "已分派", "resolved": "已办结",
                   "merged": "已合并"}
#: statuses in which each center action makes sense (the API refuses others with 409)
ALLOWED: Mapping[str, frozenset[str]] = {
    "accept": frozenset({"open"}),
    "assign": frozenset({"open", "accepted", "assigned"}),
    "note": frozenset(STATUSES),
    "resolve": frozenset({"open", "accepted", "assigned"}),
    "reopen": frozenset({"resolved"}),
    "escalate": frozenset({"open", "accepted", "assigned"}),
}
MAX_DISPOSITIONS = 1000  # beyond it the oldest are dropped (the version stops counting them)
_HOUR_MS = 3_600_000


class ActionRefused(ValueError):
    """A center action that does not apply to the incident in its current state (HTTP 409)."""


def check(action: str, status: str, *, tier: str | None = None, to_tier: str | None = None,
          rules: TierRules | None = None) -> None:
    """Raise ActionRefused unless `action` may be taken on an incident in `status`."""
    if action not in ALLOWED:
        raise ActionRefused(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    if status not in ALLOWED[action]:
        raise ActionRefused(f"{ACTION_NAMES_CN[action]}({action}) is not possible while the incident is "
                            f"{STATUS_NAMES_CN.get(status, status)} ({status})")
    if action == "escalate" and rules is not None:
        if not to_tier or to_tier not in rules.tiers:
            raise ActionRefused(f"escalate needs to_tier, one of {', '.join(rules.tiers)}")
        if tier and rules.rank(to_tier) <= rules.rank(tier):
            raise ActionRefused(f"incident is already at {TIER_NAMES_CN.get(tier, tier)} ({tier})")


def disposition_id(incident_anchor: str, action: str, actor: str, request_id: str) -> str:
    """Deterministic id of a center's action (a retried request gives the same id)."""
    return sha1_hex("disposition", incident_anchor, action, actor, request_id)


def opens(event: Mapping[str, Any], rules: TierRules, watch_hits: Sequence[str] = ()) -> bool:
    """Whether the event opens an incident on its own (else it is evidence only)."""
    if watch_hits:
        return True
    source = str(event.get("source") or "")
    if source in rules.always_sources:
        return True
    if source in rules.evidence_sources:
        return False
    at = rules.opening_kinds.get(str(event.get("kind") or ""))
    return at is not None and int(event.get("severity") or 1) >= at


def settling(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The resolve action a settling source event carries (None if it settles nothing).

    ``at`` is the record's received_at (when the source said so), never before occurred_at."""
    resolution = event.get("resolution")
    if not resolution:
        return None
    at = max(int(event.get("received_at") or 0), int(event["occurred_at"]))
    native = (event.get("refs") or {}).get("native_id") or event["event_id"]
    return {
        "disposition_id": sha1_hex("settle", event["event_id"], str(resolution)),
        "action": "resolve", "actor": f"source:{event.get('source')}",
        "actor_admin_code": str((event.get("location") or {}).get("admin_code") or ""),
        "at": at, "assignee": None, "outcome": f"{resolution}（{event.get('source')} {native}）",
        "note": None, "to_tier": None, "origin": "source",
    }


def summary_of(disposition: Mapping[str, Any]) -> dict[str, Any]:
    """A pingan.Disposition as carried in the incident (DispositionSummary)."""
    return {
        "disposition_id": disposition["disposition_id"], "action": disposition["action"],
        "actor": disposition["actor"], "actor_admin_code": disposition.get("actor_admin_code") or "",
        "at": int(disposition["at"]), "assignee": disposition.get("assignee"),
        "outcome": disposition.get("outcome"), "note": disposition.get("note"),
        "to_tier": disposition.get("to_tier"), "origin": disposition.get("origin") or "center",
    }


def merge_dispositions(*lists: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Union by disposition_id, ordered by (at, id), keeping the newest MAX_DISPOSITIONS."""
    by_id = {d["disposition_id"]: dict(d) for lst in lists for d in lst or ()}
    ordered = sorted(by_id.values(), key=lambda d: (int(d["at"]), d["disposition_id"]))
    return ordered[-MAX_DISPOSITIONS:]


def quantize(clock_ms: int | None, rules: TierRules) -> int | None:
    """The clock as deadlines see it: rounded down to the check step."""
    if clock_ms is None:
        return None
    step = max(1, rules.clock_step_ms)
    return (int(clock_ms) // step) * step


def _step(frm: str, to: str, code: str, reason: str, at: int) -> dict[str, Any]:
    return {"from_tier": frm, "to_tier": to, "reason_code": code, "reason": reason, "at": int(at)}


def _cn(tier: str) -> str:
    return TIER_NAMES_CN.get(tier, tier)


Rises = tuple[str | None, str | None, tuple[dict[str, Any], ...]]


@dataclass
class RisesFold:
    """`event_rises` as a fold over summaries in event time, resumable: feeding more summaries that
    all come after the ones fed so far gives what `event_rises` of the whole list gives (an
    incident that gains a later event continues from where its summaries stopped instead of
    walking all of them again). `copy` before feeding a fold whose result is still in use."""

    tier: str | None = None
    start: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    kind: tuple[int, str] | None = None  # (rank, kind) of the most serious kind so far
    severity: int = 1
    villages: set[str] = field(default_factory=set)
    towns: set[str] = field(default_factory=set)

    def copy(self) -> "RisesFold":
        return RisesFold(self.tier, self.start, list(self.steps), self.kind, self.severity, set(self.villages),
                         set(self.towns))

    def feed(self, events: Iterable[Mapping[str, Any]], rules: TierRules) -> "RisesFold":
        """Walk `events` (in event time, each after every one fed before); returns self."""
        top = rules.tiers[-1]
        for e in events:
            if self.tier == top:
                break  # nothing can rise any more
            k = e.get("kind") or "other"
            seen = (self.kind, self.severity, len(self.villages), len(self.towns))
            self.kind = min(self.kind, (rules.kind_rank(k), k)) if self.kind else (rules.kind_rank(k), k)
            self.severity = max(self.severity, int(e.get("severity") or 1))
            code = str(e.get("admin_code") or "")
            if len(code) >= 12:
                self.villages.add(code[:12])
            if len(code) >= 9:
                self.towns.add(code[:9])
            if self.tier is not None and seen == (self.kind, self.severity, len(self.villages), len(self.towns)):
                continue  # nothing that routing depends on changed
            now = route({"kind": self.kind[1], "severity": self.severity, "village_codes": self.villages,
                         "town_codes": self.towns}, rules)
            if self.tier is None:
                self.tier = self.start = now
            elif rules.rank(now) > rules.rank(self.tier):
                if len(self.towns) > 1 or len(self.villages) > 1:
                    where = f"{len(self.towns)}个乡镇" if len(self.towns) > 1 else f"{len(self.villages)}个村"
                    code_, reason = "spread", f"事件涉及{where}，升级至{_cn(now)}"
                elif int(e.get("severity") or 1) == self.severity and self.severity >= rules.severity[0][0]:
                    code_, reason = "severity", f"严重程度{self.severity}级，升级至{_cn(now)}"
                else:
                    code_, reason = "severity", f"事件类别升级，由{_cn(now)}处置"
                self.steps.append(_step(self.tier, now, code_, reason, int(e["occurred_at"])))
                self.tier = now
        return self

    def result(self) -> Rises:
        """(starting tier, tier reached, tier rises) of what was fed."""
        return self.start, self.tier, tuple(self.steps)


def event_rises(events: Sequence[Mapping[str, Any]], rules: TierRules) -> Rises:
    """(starting tier, tier reached, tier rises) from the event summaries alone, in event time.

    The part of `routing_steps` that depends only on the summaries (at most MAX_EVENT_SUMMARIES
    of them): the incident state computes it once per distinct summaries list, not per touch
    (`RisesFold` carries it on when later summaries are added). Tiers are None when there are no
    summaries."""
    ordered = sorted(events or (), key=lambda e: (int(e["occurred_at"]), e["event_id"]))
    return RisesFold().feed(ordered, rules).result()


def routing_steps(incident: Mapping[str, Any], rules: TierRules,
                  rises: tuple[str | None, str | None, tuple[dict[str, Any], ...]] | None = None,
                  ) -> tuple[str, list[dict[str, Any]]]:
    """(starting tier, tier rises) from the incident's own content, in event time.

    The starting tier is the routed tier of its first event alone; walking the events in time
    order, every point where the routed tier of the events so far goes up (spread to another
    village or town, a more serious kind or severity) is a rise at that event's time.
    ``rises``: `event_rises` of the incident's summaries when the caller has it already."""
    start, tier, steps = rises if rises is not None else event_rises(incident.get("events") or (), rules)
    if start is None or tier is None:
        return route(incident, rules), []
    out = [dict(s) for s in steps]
    final = route(incident, rules)  # the whole incident (its summaries may be capped)
    if rules.rank(final) > rules.rank(tier):
        out.append(_step(tier, final, "spread", f"事件范围扩大，升级至{_cn(final)}", int(incident["last_seen"])))
    return start, out


def derive(incident: Mapping[str, Any], rules: TierRules, clock_ms: int | None,
           routing: tuple[str | None, str | None, tuple[dict[str, Any], ...]] | None = None) -> dict[str, Any]:
    """The lifecycle fields of an incident at a (quantized) county clock; see module docstring.

    ``routing``: `event_rises` of the incident's summaries, when the caller keeps it (same result)."""
    first_seen = int(incident["first_seen"])
    actionable = bool(incident.get("actionable", True))
    start, rises = routing_steps(incident, rules, routing)  # tier rises that do not depend on the clock
    if incident.get("recurrence"):
        rises.append(dict(incident["recurrence"]))
    for d in incident.get("dispositions") or ():
        if d["action"] == "escalate" and d.get("to_tier") in rules.tiers:
            who = d.get("actor") or ""
            rises.append(_step("", d["to_tier"], "manual",
                               f"{who}人工上报至{_cn(d['to_tier'])}" + (f"：{d['note']}" if d.get("note") else ""),
                               int(d["at"])))
    rises.sort(key=lambda s: (s["at"], rules.rank(s["to_tier"]), s["reason_code"]))

    # the disposition fold (status) and the deadline clock, interleaved in time order
    status, accepted_by, assignee = "open", None, None
    resolved_at: int | None = None
    outcome: str | None = None
    opened_at = first_seen
    tier = start
    history: list[dict[str, Any]] = []
    clock = quantize(clock_ms, rules)

    def raise_to(to: str, code: str, reason: str, at: int) -> None:
        nonlocal tier
        if rules.rank(to) > rules.rank(tier):
            history.append(_step(tier, to, code, reason, at))
            tier = to

    def deadlines_until(until: int) -> None:
        """Deadline escalations of the current open period up to `until`."""
        if not actionable:
            return
        while rules.rank(tier) < len(rules.tiers) - 1:
            hours = rules.deadline_hours.get(tier)
            if hours is None:
                return
            due = opened_at + int(hours * _HOUR_MS)
            if due >= until:
                return
            to = rules.up(tier)
            raise_to(to, "deadline", f"{_cn(tier)}{hours:g}小时未办结，自动上报{_cn(to)}", due)

    facts: list[tuple[int, int, str, Mapping[str, Any]]] = []
    for s in rises:
        facts.append((int(s["at"]), 0, "rise", s))
    for d in incident.get("dispositions") or ():
        facts.append((int(d["at"]), 1, d["disposition_id"], d))
    opening_at = incident.get("opening_at")
    facts.sort(key=lambda f: (f[0], f[1], f[2]))
    for at, _, _, fact in facts:
        if status != "resolved":
            deadlines_until(at)
        if "reason_code" in fact:  # a tier rise
            if actionable or fact["reason_code"] != "deadline":
                raise_to(fact["to_tier"], fact["reason_code"], fact["reason"], at)
            continue
        action = fact["action"]
        if status == "resolved" and opening_at is not None and resolved_at is not None \
                and int(opening_at) > resolved_at and int(opening_at) <= at:
            status, resolved_at, outcome, opened_at = "open", None, None, int(opening_at)
        if action == "accept" and status == "open":
            status, accepted_by = "accepted", fact.get("actor")
        elif action == "assign" and status != "resolved":
            status, assignee = "assigned", fact.get("assignee") or assignee
            accepted_by = accepted_by or fact.get("actor")
        elif action == "resolve" and status != "resolved":
            status, resolved_at, outcome = "resolved", at, fact.get("outcome") or fact.get("note")
        elif action == "reopen" and status == "resolved":
            status, resolved_at, outcome, opened_at = "open", None, None, at
    # a new opening event after the last resolution reopens the incident
    if status == "resolved" and opening_at is not None and resolved_at is not None and int(opening_at) > resolved_at:
        status, resolved_at, outcome, opened_at = "open", None, None, int(opening_at)
    deadline_at: int | None = None
    if status != "resolved" and actionable:
        if clock is not None:
            deadlines_until(clock)
        hours = rules.deadline_hours.get(tier)
        if hours is not None and rules.rank(tier) < len(rules.tiers) - 1:
            deadline_at = opened_at + int(hours * _HOUR_MS)
    if not actionable:  # evidence only: owned where it happened, never escalated, no deadline
        tier, history, deadline_at = route(incident, rules), [], None
    return {
        "status": status, "accepted_by": accepted_by, "assignee": assignee, "resolved_at": resolved_at,
        "outcome": outcome, "opened_at": opened_at, "tier": tier, "escalated": bool(history),
        "escalation_history": history, "deadline_at": deadline_at,
    }
