"""Tiers: which level (village → town → county) owns an incident, and when it escalates.

Contracts (all pure and deterministic; rules come from ``tier_rules.toml``):
- ``route(incident, rules) -> tier``: max of the kind's base tier, the severity tier and the
  spread tier (>1 village → town, >1 town → county).
- ``recurrence(incident, rules, history) -> (person key, count) | None``: the same person in
  ``count`` recurrence-kind events within the window (``history`` as kept by ``PersonHistory``).
- Escalation steps, deadlines and the handling state are derived in ``lifecycle.py``;
  escalation_id = sha1(incident_id|to_tier|reason_code).
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from types import MappingProxyType
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Sequence

from .ids import sha1_hex

DEFAULT_TIER_RULES_PATH = Path(__file__).with_name("tier_rules.toml")
TIER_NAMES_CN = {"village": "村级", "town": "镇级", "county": "县级"}
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class TierRules:
    """Typed view of tier_rules.toml."""

    tiers: tuple[str, ...]
    kind_priority: tuple[str, ...]
    base_tier: Mapping[str, str]
    default_tier: str
    severity: tuple[tuple[int, str], ...]      # (at, tier), ascending by `at`
    multi_village: str
    multi_town: str
    recurrence_kinds: frozenset[str]
    recurrence_window_days: int
    recurrence_count: int
    deadline_hours: Mapping[str, float]
    #: sources whose every event opens an incident (110, grid, mediation)
    always_sources: frozenset[str] = frozenset()
    #: sources whose events are evidence only, whatever their kind (door passes)
    evidence_sources: frozenset[str] = frozenset()
    #: other sources: kind -> lowest severity at which an event of that kind opens an incident
    opening_kinds: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: deadlines are checked on the county clock rounded down to this step (epoch ms)
    clock_step_ms: int = 600_000
    #: an incident holds at most this many events; past it a flood goes on in continuation
    #: incidents (streams/domain/incidents.py, "Full incidents")
    max_incident_events: int = 20_000
    #: at most this many member ids (the smallest) in a published incident record's event_ids and
    #: merged_from; the rest are on incident-members.v1 / in the redirect records (`incidents.published`)
    listed_event_ids: int = 1_000

    def rank(self, tier: str) -> int:
        """Position of a tier (0 = lowest)."""
        return self.tiers.index(tier)

    def higher(self, *tiers: str) -> str:
        """The highest of the given tiers."""
        return max(tiers, key=self.rank)

    def up(self, tier: str) -> str:
        """One tier above (the top tier stays)."""
        return self.tiers[min(self.rank(tier) + 1, len(self.tiers) - 1)]

    def kind_rank(self, kind: str | None) -> int:
        """Priority of an event kind for the incident kind (lower = wins)."""
        try:
            return self.kind_priority.index(kind or "")
        except ValueError:
            return len(self.kind_priority)


def parse_tier_rules(doc: Mapping[str, Any]) -> TierRules:
    """Build and validate tier rules from a parsed TOML document."""
    tiers = tuple(doc["tiers"])
    base = dict(doc["base_tier"])
    default = base.pop("default", tiers[0])
    sev = tuple(sorted((int(r["at"]), str(r["tier"])) for r in doc["severity"]["rules"]))
    rec = doc["recurrence"]
    act = doc.get("actionable") or {}
    rules = TierRules(
        tiers=tiers, kind_priority=tuple(doc.get("kind_priority", ())), base_tier=base,
        default_tier=default, severity=sev, multi_village=doc["spread"]["multi_village"],
        multi_town=doc["spread"]["multi_town"], recurrence_kinds=frozenset(rec["kinds"]),
        recurrence_window_days=int(rec["window_days"]), recurrence_count=int(rec["count"]),
        deadline_hours={k: float(v) for k, v in doc["deadline_hours"].items()},
        always_sources=frozenset(act.get("always_sources", ())),
        evidence_sources=frozenset(act.get("evidence_sources", ())),
        opening_kinds=MappingProxyType({str(k): int(v) for k, v in (act.get("opening_kinds") or {}).items()}),
        clock_step_ms=int(float(doc.get("clock", {}).get("check_minutes", 10)) * 60_000),
        max_incident_events=int(doc.get("incidents", {}).get("max_events", 20_000)),
        listed_event_ids=int(doc.get("incidents", {}).get("listed_event_ids", 1_000)),
    )
    if rules.listed_event_ids < 1:
        raise ValueError(f"incidents.listed_event_ids must be at least 1, not {rules.listed_event_ids}")
    if rules.max_incident_events < 2:
        raise ValueError(f"incidents.max_events must be at least 2, not {rules.max_incident_events}")
    used = {default, rules.multi_village, rules.multi_town, *base.values(), *(t for _, t in sev),
            *rules.deadline_hours}
    if not used <= set(tiers):
        raise ValueError(f"unknown tiers in tier rules: {sorted(used - set(tiers))}")
    return rules


def load_tier_rules(path: str | Path | None = None) -> TierRules:
    """Read tier_rules.toml (default: next to this module)."""
    with open(path or DEFAULT_TIER_RULES_PATH, "rb") as fh:
        return parse_tier_rules(tomllib.load(fh))


# ----------------------------------------------------------------------------- routing

def base_tier(incident: Mapping[str, Any], rules: TierRules) -> str:
    """Owning tier by incident kind alone."""
    return rules.base_tier.get(incident.get("kind") or "", rules.default_tier)


def severity_tier(incident: Mapping[str, Any], rules: TierRules) -> str:
    """Lowest tier the incident's severity requires."""
    tier = rules.tiers[0]
    for at, t in rules.severity:
        if int(incident.get("severity") or 0) >= at:
            tier = rules.higher(tier, t)
    return tier


def spread_tier(incident: Mapping[str, Any], rules: TierRules) -> str:
    """Lowest tier the incident's spread across villages/towns requires."""
    if len(set(incident.get("town_codes") or ())) > 1:
        return rules.higher(rules.multi_town, rules.multi_village)
    if len(set(incident.get("village_codes") or ())) > 1:
        return rules.multi_village
    return rules.tiers[0]


def route(incident: Mapping[str, Any], rules: TierRules) -> str:
    """Owning tier of an incident: max(kind base tier, severity tier, spread tier)."""
    return rules.higher(base_tier(incident, rules), severity_tier(incident, rules), spread_tier(incident, rules))


# ----------------------------------------------------------------------------- escalations

def escalation_id(incident_id: str, to_tier: str, reason_code: str) -> str:
    """sha1(incident_id|to_tier|reason_code) hex."""
    return sha1_hex(incident_id, to_tier, reason_code)


def recurrence(incident: Mapping[str, Any], rules: TierRules,
               history: Mapping[str, Sequence[Sequence[Any]]] | None) -> tuple[str, int] | None:
    """(person key, count) of the most recurrent person within the window ending at last_seen,
    when the count reaches the threshold and the incident kind is a recurrence kind."""
    # `history is None`, not `not history`: the truth of a table-backed mapping is its length,
    # which a RocksDB table can only count by reading every key
    if history is None or incident.get("kind") not in rules.recurrence_kinds:
        return None
    until = int(incident.get("last_seen") or 0)
    since = until - rules.recurrence_window_days * _DAY_MS
    best: tuple[str, int] | None = None
    for key in sorted(incident.get("person_keys") or ()):
        if key.startswith("plate:"):
            continue
        n = len({str(eid) for ts, eid in history.get(key) or () if since <= int(ts) <= until})
        if n >= rules.recurrence_count and (best is None or n > best[1]):
            best = (key, n)
    return best


def recurrence_at(incident: Mapping[str, Any], rules: TierRules,
                  history: Mapping[str, Sequence[Sequence[Any]]] | None) -> int | None:
    """When the incident's recurrence threshold was reached: over its person keys, the earliest
    time at which one person had ``count`` recurrence-kind events within the window ending at
    the incident's last_seen (None if never). A function of the recorded events, not of the
    order they were recorded in."""
    # `history is None`, not `not history`: the truth of a table-backed mapping is its length,
    # which a RocksDB table can only count by reading every key
    if history is None or incident.get("kind") not in rules.recurrence_kinds:
        return None
    until = int(incident.get("last_seen") or 0)
    since = until - rules.recurrence_window_days * _DAY_MS
    best: int | None = None
    for key in sorted(incident.get("person_keys") or ()):
        if key.startswith("plate:"):
            continue
        times = sorted({(int(ts), str(eid)) for ts, eid in history.get(key) or () if since <= int(ts) <= until})
        if len(times) >= rules.recurrence_count:
            at = times[rules.recurrence_count - 1][0]
            best = at if best is None else min(best, at)
    return best


# ----------------------------------------------------------------------------- person history

class PersonHistory:
    """Per person key, the recurrence-kind events seen: ``key -> [[occurred_at, event_id], ...]``.

    Over an injectable mapping (a Faust table in the agent); values are re-assigned, never
    mutated in place. Bounded: entries older than the window behind the newest entry are
    dropped, and at most ``max_per_key`` (newest) are kept. Idempotent per event_id.
    """

    def __init__(self, rules: TierRules, store: MutableMapping[str, list] | None = None,
                 max_per_key: int = 50) -> None:
        self.rules = rules
        self.store: MutableMapping[str, list] = {} if store is None else store
        self.max_per_key = max_per_key

    def record(self, event: Mapping[str, Any]) -> None:
        """Record an event under each of its person keys (recurrence kinds only)."""
        if event.get("kind") not in self.rules.recurrence_kinds:
            return
        ts, eid = int(event["occurred_at"]), event["event_id"]
        keys = {k for p in event.get("persons") or () for k in p.get("keys") or ()}
        for key in sorted(keys):
            entries = [list(e) for e in self.store.get(key) or () if e[1] != eid] + [[ts, eid]]
            newest = max(e[0] for e in entries)
            horizon = newest - self.rules.recurrence_window_days * _DAY_MS
            entries = sorted(e for e in entries if e[0] >= horizon)[-self.max_per_key:]
            self.store[key] = entries

    def count(self, key: str, until_ms: int) -> int:
        """Events recorded for this key within the recurrence window ending at until_ms."""
        since = until_ms - self.rules.recurrence_window_days * _DAY_MS
        return sum(1 for ts, _ in self.store.get(key) or () if since <= ts <= until_ms)
