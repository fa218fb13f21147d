"""What a rule change does to the incidents: compare two incident sets (pure).

Contract (`compare(live, shadow, since_ms=…)`; unit-tested in tests/unit/test_rules_diff.py):
- Inputs: incident_id → latest record of each side (merged redirects are ignored: their events
  live in the surviving incident). Only incidents whose ``last_seen`` ≥ ``since_ms`` on either side
  take part (None: all).
- An event's incident on each side gives the changes:
  * ``split``: a live incident whose events are spread over several shadow incidents;
  * ``merged``: a shadow incident holding the events of several live incidents;
  * ``retiered``: the same events in one incident on both sides, with another tier (or escalation);
  * ``new`` / ``gone``: events in an incident on one side only (evidence that now opens one, or no
    longer does);
  * ``link_reasons``: links (by link_id) whose reasons differ, or that exist on one side only.
- Every category carries a count and up to ``examples`` examples; `RulesDiff.as_json()` is the JSON
  written next to the printed summary.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Incidents = Mapping[str, Mapping[str, Any]]


@dataclass
class RulesDiff:
    """The changes between the live and the shadow incidents."""

    live_incidents: int = 0
    shadow_incidents: int = 0
    unchanged: int = 0
    split: list[dict[str, Any]] = field(default_factory=list)
    merged: list[dict[str, Any]] = field(default_factory=list)
    retiered: list[dict[str, Any]] = field(default_factory=list)
    new: list[dict[str, Any]] = field(default_factory=list)
    gone: list[dict[str, Any]] = field(default_factory=list)
    link_reasons: list[dict[str, Any]] = field(default_factory=list)
    rules_version_live: list[str] = field(default_factory=list)
    rules_version_shadow: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.split or self.merged or self.retiered or self.new or self.gone or self.link_reasons)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("split", "merged", "retiered", "new", "gone", "link_reasons")}

    def as_json(self, examples: int = 20) -> dict[str, Any]:
        out: dict[str, Any] = {"live_incidents": self.live_incidents, "shadow_incidents": self.shadow_incidents,
                               "unchanged": self.unchanged, "counts": self.counts(),
                               "rules_version": {"live": self.rules_version_live, "shadow": self.rules_version_shadow}}
        for k in self.counts():
            out[k] = getattr(self, k)[:examples]
        return out

    def lines(self, examples: int = 3) -> list[str]:
        """A human-readable summary with a few examples of each change."""
        c = self.counts()
        out = [f"live {self.live_incidents} incident(s) (rules {', '.join(self.rules_version_live) or '-'}) → shadow "
               f"{self.shadow_incidents} (rules {', '.join(self.rules_version_shadow) or '-'}); {self.unchanged} unchanged",
               f"split {c['split']}, merged {c['merged']}, re-tiered {c['retiered']}, new {c['new']}, gone {c['gone']}, "
               f"links with other reasons {c['link_reasons']}"]
        for s in self.split[:examples]:
            out.append(f"  split  {s['live']} ({s['events']} events) → {', '.join(s['shadow'])}")
        for m in self.merged[:examples]:
            out.append(f"  merged {', '.join(m['live'])} → {m['shadow']} ({m['events']} events)")
        for r in self.retiered[:examples]:
            out.append(f"  tier   {r['incident']}: {r['live_tier']} → {r['shadow_tier']}"
                       + (f" (escalated {r['live_escalated']} → {r['shadow_escalated']})"
                          if r['live_escalated'] != r['shadow_escalated'] else ""))
        for n in self.new[:examples]:
            out.append(f"  new    {n['shadow']} ({n['kind']}, {n['events']} events)")
        for g in self.gone[:examples]:
            out.append(f"  gone   {g['live']} ({g['kind']}, {g['events']} events)")
        for lk in self.link_reasons[:examples]:
            out.append(f"  link   {lk['event_a']} ~ {lk['event_b']}: {lk['live'] or '(no link)'} → "
                       f"{lk['shadow'] or '(no link)'}")
        return out


def _live(incidents: Incidents, since_ms: int | None) -> dict[str, Mapping[str, Any]]:
    return {i: r for i, r in incidents.items()
            if r.get("status") != "merged" and (since_ms is None or int(r.get("last_seen") or 0) >= since_ms)}


def _owner(incidents: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    return {str(e): iid for iid, r in incidents.items() for e in r.get("event_ids") or ()}


def _links(incidents: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(lk["link_id"]): lk for r in incidents for lk in r.get("links") or ()}


def compare(live: Incidents, shadow: Incidents, *, since_ms: int | None = None) -> RulesDiff:
    """The changes from `live` to `shadow` (see module contract)."""
    a, b = _live(live, since_ms), _live(shadow, since_ms)
    diff = RulesDiff(len(a), len(b))
    diff.rules_version_live = sorted({str(r.get("rules_version") or "") for r in a.values()} - {""})
    diff.rules_version_shadow = sorted({str(r.get("rules_version") or "") for r in b.values()} - {""})
    own_a, own_b = _owner(a), _owner(b)
    # events of a window-edge incident may sit in an incident outside the window on the other side
    own_a.update({e: i for e, i in _owner(_live(live, None)).items() if e not in own_a})
    own_b.update({e: i for e, i in _owner(_live(shadow, None)).items() if e not in own_b})
    a_to_b: dict[str, set[str]] = defaultdict(set)
    b_to_a: dict[str, set[str]] = defaultdict(set)
    for e, ia in own_a.items():
        if ia in a and e in own_b:
            a_to_b[ia].add(own_b[e])
    for e, ib in own_b.items():
        if ib in b and e in own_a:
            b_to_a[ib].add(own_a[e])
    for ia in sorted(a):
        targets = a_to_b.get(ia, set())
        if not targets:
            diff.gone.append({"live": ia, "kind": a[ia].get("kind"), "events": len(a[ia].get("event_ids") or ())})
        elif len(targets) > 1:
            diff.split.append({"live": ia, "shadow": sorted(targets), "events": len(a[ia].get("event_ids") or ())})
    for ib in sorted(b):
        sources = b_to_a.get(ib, set())
        if not sources:
            diff.new.append({"shadow": ib, "kind": b[ib].get("kind"), "events": len(b[ib].get("event_ids") or ())})
        elif len(sources) > 1:
            diff.merged.append({"live": sorted(sources), "shadow": ib, "events": len(b[ib].get("event_ids") or ())})
    for ia in sorted(a):
        targets = a_to_b.get(ia, set())
        if len(targets) != 1:
            continue
        (ib,) = targets
        if len(b_to_a.get(ib, set())) != 1 or ib not in b:
            continue
        ra, rb = a[ia], b[ib]
        if (ra.get("tier"), bool(ra.get("escalated"))) != (rb.get("tier"), bool(rb.get("escalated"))):
            diff.retiered.append({"incident": ib, "live_tier": ra.get("tier"), "shadow_tier": rb.get("tier"),
                                  "live_escalated": bool(ra.get("escalated")),
                                  "shadow_escalated": bool(rb.get("escalated")),
                                  "reasons": [s.get("reason") for s in rb.get("escalation_history") or ()][-3:]})
        elif set(ra.get("event_ids") or ()) == set(rb.get("event_ids") or ()):
            diff.unchanged += 1
    la, lb = _links(a.values()), _links(b.values())
    for lid in sorted(set(la) | set(lb)):
        x, y = la.get(lid), lb.get(lid)
        ra = list((x or {}).get("reasons") or ())
        rb = list((y or {}).get("reasons") or ())
        if x is None or y is None or ra != rb:
            ref = x or y or {}
            diff.link_reasons.append({"link_id": lid, "event_a": ref.get("event_a"), "event_b": ref.get("event_b"),
                                      "live": "; ".join(ra), "shadow": "; ".join(rb),
                                      "rule": [(x or {}).get("rule"), (y or {}).get("rule")]})
    return diff


def parse_since(text: str) -> int:
    """``7d``, ``36h``, ``90m`` → milliseconds; ValueError otherwise."""
    units = {"d": 86_400_000, "h": 3_600_000, "m": 60_000}
    t = text.strip().lower()
    if len(t) < 2 or t[-1] not in units or not t[:-1].isdigit():
        raise ValueError(f"--since takes a duration like 7d, 36h or 90m, not {text!r}")
    return int(t[:-1]) * units[t[-1]]
