"""Tier routing and escalations: 小事不出村，大事不出镇，矛盾不上交."""
from __future__ import annotations

import hashlib

import pytest

from streams.domain.incidents import IncidentState
from streams.domain.pipeline import CountyProcessor, escalation_records
from streams.domain.tiers import PersonHistory, load_tier_rules, parse_tier_rules, route

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
        "refs": {"related_ids": []}, "text": "", "received_at": t,
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
    assert inc["escalation_history"] == [] and not inc["escalated"]


def test_dispute_across_two_villages_goes_to_town():
    events = [ev("grid:g1", "dispute", T0, "513221107201"), ev("grid:g2", "dispute", T0, "513221107202")]
    inc = incident(events, [link("grid:g1", "grid:g2")])
    assert route(inc, RULES) == "town" and inc["tier"] == "town"


def test_flood_across_towns_is_county_with_spread_escalation():
    first = incident([ev("grid:f1", "disaster", T0, "513221102202", severity=2)])
    assert first["tier"] == "town" and first["escalation_history"] == []
    events = [ev("grid:f1", "disaster", T0, "513221102202", severity=2),
              ev("alarm110:f2", "disaster", T0 + HOUR, "513221106202", severity=2)]
    flood = incident(events, [link("grid:f1", "alarm110:f2")])
    assert route(flood, RULES) == "county" and flood["tier"] == "county"
    (step,) = flood["escalation_history"]
    assert (step["from_tier"], step["to_tier"], step["reason_code"]) == ("town", "county", "spread")
    assert step["reason"] == "事件涉及2个乡镇，升级至县级"
    assert step["at"] == T0 + HOUR  # when the second town's event happened
    (esc,) = escalation_records(first, flood)
    assert esc["escalation_id"] == hashlib.sha1(f"{flood['incident_id']}|county|spread".encode()).hexdigest()
    assert esc["admin_code"] == "513221" and esc["at"] == T0 + HOUR
    assert escalation_records(flood, flood) == []  # nothing new


def test_severity_routes_from_the_start_and_raises_later():
    inc = incident([ev("alarm110:s1", "dispute", T0, "513221107201", severity=4)])
    assert inc["tier"] == "county" and inc["escalation_history"] == []  # routed there, not escalated
    later = incident([ev("alarm110:s1", "dispute", T0, "513221107201", severity=2),
                      ev("alarm110:s2", "dispute", T0 + HOUR, "513221107201", severity=4)],
                     [link("alarm110:s1", "alarm110:s2")])
    (step,) = later["escalation_history"]
    assert (step["from_tier"], step["to_tier"], step["reason_code"], step["at"]) == (
        "village", "county", "severity", T0 + HOUR)


def test_third_dispute_with_same_person_within_30_days_escalates():
    import dataclasses
    slow = dataclasses.replace(RULES, deadline_hours={"village": 10_000, "town": 20_000, "county": 30_000})
    proc = CountyProcessor(tier_rules=slow)  # deadlines out of the way
    disputes = [ev(f"grid:d{i}", "dispute", T0 + i * 10 * DAY, "513221107201", keys=[WANG]) for i in range(3)]
    def recurrences(step):  # (the county clock also passes deadlines over these 20 days)
        return [e for e in step.escalations if e["reason_code"] == "recurrence"]

    first, second = proc.process(disputes[0]), proc.process(disputes[1])
    assert recurrences(first) == [] and recurrences(second) == []  # 2nd time: still the village's
    third = proc.process(disputes[2])
    (esc,) = recurrences(third)
    assert (esc["from_tier"], esc["to_tier"], esc["reason_code"]) == ("village", "town", "recurrence")
    assert "第3次" in esc["reason"]
    assert recurrences(proc.process(disputes[2])) == []  # a duplicate: nothing new
    history = PersonHistory(RULES, proc.stores.history)
    assert history.count(WANG, disputes[2]["occurred_at"]) == 3
    # outside the window it does not count
    late = proc.process(ev("grid:d9", "dispute", T0 + 90 * DAY, "513221107201", keys=[WANG]))
    assert recurrences(late) == []


def test_deadline_escalation_runs_on_the_county_clock():
    proc = CountyProcessor(tier_rules=RULES)
    (inc,) = proc.process(ev("grid:g1", "dispute", T0, "513221107201", keys=[WANG])).incidents
    assert inc["deadline_at"] == T0 + 72 * HOUR and inc["tier"] == "village"
    assert proc.tick({"county_code": "513221", "now_ms": T0 + 71 * HOUR}).incidents == []
    step = proc.tick({"county_code": "513221", "now_ms": T0 + 73 * HOUR})
    (raised,) = step.incidents
    (esc,) = step.escalations
    assert raised["tier"] == "town" and raised["escalated"] and raised["version"] > inc["version"]
    assert (esc["to_tier"], esc["reason_code"], esc["at"]) == ("town", "deadline", T0 + 72 * HOUR)
    assert esc["reason"] == "村级72小时未办结，自动上报镇级"
    assert raised["deadline_at"] == T0 + 168 * HOUR
    assert proc.tick({"county_code": "513221", "now_ms": T0 + 74 * HOUR}).incidents == []  # idempotent
    assert proc.tick({"county_code": "513222", "now_ms": T0 + 900 * HOUR}).incidents == []  # other county


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
    (esc,) = escalation_records(first, state.live()[out[0]["incident_id"]])
    for name, rec in [("Link", lk), ("Escalation", esc)] + [("Incident", r) for r in out]:
        assert decode(encode(name, rec))[1] == rec


def test_recurrence_never_counts_the_history_table() -> None:
    """`recurrence` / `recurrence_at` run for every event: asking a table-backed history for its
    length would read every key of it (a RocksDB table has no count)."""
    from streams.domain.tiers import recurrence, recurrence_at

    class NoLen(dict):
        def __len__(self) -> int:
            raise AssertionError("len() of the history table")

    rules = RULES
    kind = sorted(rules.recurrence_kinds)[0]
    day = 86_400_000
    history = NoLen({"id:p1": [[i * day, f"e{i}"] for i in range(rules.recurrence_count)]})
    inc = {"kind": kind, "person_keys": ["id:p1"], "last_seen": rules.recurrence_count * day}
    assert recurrence(inc, rules, history) == ("id:p1", rules.recurrence_count)
    assert recurrence_at(inc, rules, history) == (rules.recurrence_count - 1) * day
