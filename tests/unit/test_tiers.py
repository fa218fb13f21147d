"""Tier routing and escalations: 小事不出村，大事不出镇，矛盾不上交."""
from __future__ import annotations

import hashlib

import pytest

from streams.domain.incidents import IncidentState
from streams.domain.tiers import (
    PersonHistory, check_deadline, escalations, load_tier_rules, parse_tier_rules, route,
)

RULES = load_tier_rules()
T0 = 1_719_792_000_000
DAY = 86_400_000
HOUR = 3_600_000
WANG = "id:" + "a" * 32


def ev(eid, kind, t, village, *, keys=(), severity=2):
    return {
        "event_id": eid, "source": eid.split(":")[0], "kind": kind, "severity": severity, "occurred_at": t,
        "location": {"admin_code": village, "county_code": village[:6], "town_code": village[:9],
                     "village_code": village},
        "persons": [{"role": "party", "keys": list(keys)}] if keys else [], "vehicles": [],
        "refs": {"related_ids": []}, "text": "",
    }


def link(a, b):
    lo, hi = sorted((a, b))
    return {"link_id": hashlib.sha1(f"{lo}|{hi}".encode()).hexdigest()[:20], "event_a": lo, "event_b": hi,
            "score": 0.8, "reasons": [], "rule": "disaster_area", "county_code": "513221", "created_at": T0}


def incident(events, links=()):
    state = IncidentState(tier_rules=RULES)
    for e in events:
        state.apply_event(e)
    for lk in links:
        state.apply_link(lk)
    (inc,) = state.live().values()
    return inc


def test_village_dispute_stays_in_village():
    inc = incident([ev("grid:g1", "dispute", T0, "513221107201", keys=[WANG])])
    assert route(inc, RULES) == "village" and inc["tier"] == "village"
    assert escalations(None, inc, RULES, {}) == []


def test_dispute_across_two_villages_goes_to_town():
    events = [ev("grid:g1", "dispute", T0, "513221107201"), ev("grid:g2", "dispute", T0, "513221107202")]
    inc = incident(events, [link("grid:g1", "grid:g2")])
    assert route(inc, RULES) == "town"


def test_flood_across_towns_is_county_with_spread_escalation():
    first = incident([ev("grid:f1", "disaster", T0, "513221102202", severity=2)])
    assert first["tier"] == "town"
    events = [ev("grid:f1", "disaster", T0, "513221102202", severity=2),
              ev("alarm110:f2", "disaster", T0 + HOUR, "513221106202", severity=2)]
    flood = incident(events, [link("grid:f1", "alarm110:f2")])
    assert route(flood, RULES) == "county" and flood["tier"] == "county"
    (esc,) = escalations(first, flood, RULES, {})
    assert (esc["from_tier"], esc["to_tier"], esc["reason_code"]) == ("town", "county", "spread")
    assert esc["reason"] == "事件涉及2个乡镇，升级至县级"
    assert esc["escalation_id"] == hashlib.sha1(f"{flood['incident_id']}|county|spread".encode()).hexdigest()
    assert esc["admin_code"] == "513221" and esc["at"] == flood["updated_at"]
    assert escalations(flood, flood, RULES, {}) == []  # nothing new


def test_severity_raises_tier():
    inc = incident([ev("alarm110:s1", "dispute", T0, "513221107201", severity=4)])
    assert inc["tier"] == "county"
    (esc,) = escalations(None, inc, RULES, {})
    assert (esc["from_tier"], esc["to_tier"], esc["reason_code"]) == ("village", "county", "severity")


def test_third_dispute_with_same_person_within_30_days_escalates():
    history = PersonHistory(RULES)
    disputes = [ev(f"grid:d{i}", "dispute", T0 + i * 10 * DAY, "513221107201", keys=[WANG]) for i in range(3)]
    history.record(disputes[0])
    history.record(disputes[1])
    second = incident([disputes[1]])
    assert escalations(None, second, RULES, history.store) == []  # 2nd time: still the village's
    history.record(disputes[2])
    history.record(disputes[2])  # idempotent
    third = incident([disputes[2]])
    assert history.count(WANG, third["last_seen"]) == 3
    (esc,) = escalations(None, third, RULES, history.store)
    assert (esc["from_tier"], esc["to_tier"], esc["reason_code"]) == ("village", "town", "recurrence")
    assert "第3次" in esc["reason"]
    # once escalated, the same recurrence does not escalate again
    raised = {**third, "tier": "town", "status": "escalated"}
    assert escalations(raised, raised, RULES, history.store) == []
    # outside the window it does not count
    late = ev("grid:d9", "dispute", T0 + 90 * DAY, "513221107201", keys=[WANG])
    history.record(late)
    assert escalations(None, incident([late]), RULES, history.store) == []


def test_escalation_applies_to_incident_state():
    state = IncidentState(tier_rules=RULES)
    (inc,) = state.apply_event(ev("grid:g1", "dispute", T0, "513221107201", keys=[WANG]))
    esc = check_deadline(inc, T0 + 73 * HOUR, RULES)
    (raised,) = state.apply_escalation(esc)
    assert raised["tier"] == "town" and raised["status"] == "escalated" and raised["version"] > inc["version"]
    assert state.apply_escalation(esc) == []


def test_deadline():
    inc = incident([ev("grid:g1", "dispute", T0, "513221107201")])
    assert check_deadline(inc, T0 + 71 * HOUR, RULES) is None
    esc = check_deadline(inc, T0 + 73 * HOUR, RULES)
    assert esc is not None and (esc["to_tier"], esc["reason_code"], esc["at"]) == ("town", "deadline", T0 + 72 * HOUR)
    assert esc == check_deadline(inc, T0 + 80 * HOUR, RULES)  # deterministic
    assert check_deadline({**inc, "tier": "town"}, T0 + 100 * HOUR, RULES) is None
    assert check_deadline({**inc, "tier": "county"}, T0 + 1000 * HOUR, RULES) is None
    assert check_deadline({**inc, "status": "closed"}, T0 + 100 * HOUR, RULES) is None
    assert check_deadline(inc, T0 + 73 * HOUR) == esc  # default rules from the TOML


def test_tier_rules_validation():
    import tomllib
    from streams.domain.tiers import DEFAULT_TIER_RULES_PATH
    doc = tomllib.loads(DEFAULT_TIER_RULES_PATH.read_text())
    doc["base_tier"] = {**doc["base_tier"], "fire": "province"}
    with pytest.raises(ValueError, match="province"):
        parse_tier_rules(doc)


def test_records_encode_with_the_avro_contracts():
    from schemas.serde import decode, encode
    from streams.domain.correlate import links_for
    from streams.domain.rules import load_rules

    a = ev("grid:f1", "disaster", T0, "513221102202")
    b = ev("alarm110:f2", "disaster", T0 + HOUR, "513221106202")
    for e, (lat, lon) in ((a, (31.054, 103.487)), (b, (30.999, 103.465))):
        e["location"].update(lat=lat, lon=lon)
    (lk,) = links_for([a, b], load_rules())
    state = IncidentState(tier_rules=RULES)
    first = state.apply_event(a)[0]
    state.apply_event(b)
    out = state.apply_link(lk)
    (esc,) = escalations(first, state.live()[out[0]["incident_id"]], RULES, {})
    for name, rec in [("Link", lk), ("Escalation", esc)] + [("Incident", r) for r in out]:
        assert decode(encode(name, rec))[1] == rec
