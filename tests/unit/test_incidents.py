"""Incidents as connected components of links: merges, redirects, order independence."""
from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings, strategies as st

from streams.domain.correlate import links_for
from streams.domain.ids import incident_id
from streams.domain.incidents import IncidentState, lowest_common_admin
from streams.domain.rules import load_rules

RULES = load_rules()
T0 = 1_719_792_000_000
MIN = 60_000
DAY = 86_400_000
WANG = "id:" + "a" * 32
LI = "id:" + "b" * 32


def ev(eid, kind, t, village, *, keys=(), severity=2, lat=None, lon=None, related=()):
    return {
        "event_id": eid, "source": eid.split(":")[0], "kind": kind, "severity": severity, "occurred_at": t,
        "location": {"lat": lat, "lon": lon, "admin_code": village, "county_code": village[:6],
                     "town_code": village[:9], "village_code": village},
        "persons": [{"role": "party", "keys": list(keys), "display_name": "王某学"}] if keys else [],
        "vehicles": [], "refs": {"related_ids": list(related)}, "text": f"{kind} {eid}",
    }


def link(a, b, t=T0):
    lo, hi = sorted((a, b))
    return {"link_id": hashlib.sha1(f"{lo}|{hi}".encode()).hexdigest()[:20], "event_a": lo, "event_b": hi,
            "score": 0.9, "reasons": ["同一身份证号"], "rule": "dispute_history", "county_code": "513221",
            "created_at": t}


def test_dispute_trio_becomes_one_incident_over_weeks():
    events = [
        ev("grid:g1", "dispute", T0, "513221107201", keys=[WANG]),
        ev("alarm110:J1", "dispute", T0 + 12 * DAY, "513221107201", keys=[WANG], severity=2),
        ev("mediation:M1", "dispute", T0 + 40 * DAY, "513221107201", keys=[WANG, LI]),
    ]
    state = IncidentState()
    for e in events:
        assert len(state.apply_event(e)) == 1  # singleton each
    lookup = {e["event_id"]: e for e in events}
    for lk in links_for(events, RULES):
        state.apply_link(lk, lookup)
    live = state.live()
    assert len(live) == 1
    inc = next(iter(live.values()))
    assert inc["incident_id"] == incident_id("alarm110:J1") == "inc-" + hashlib.sha1(b"alarm110:J1").hexdigest()[:16]
    assert inc["event_ids"] == ["alarm110:J1", "grid:g1", "mediation:M1"]
    assert [e["event_id"] for e in inc["events"]] == ["grid:g1", "alarm110:J1", "mediation:M1"]
    assert inc["kind"] == "dispute" and inc["tier"] == "village" and inc["status"] == "open"
    assert inc["admin_code"] == "513221107201" and inc["village_codes"] == ["513221107201"]
    assert inc["first_seen"] == T0 and inc["last_seen"] == inc["updated_at"] == T0 + 40 * DAY
    assert inc["person_keys"] == [WANG, LI] and len(inc["links"]) >= 2
    assert inc["events"][0]["persons"] == ["party:王某学"]
    assert inc["version"] == 5 * (3 + len(inc["links"]))  # 5 × facts + tier rank (0) + escalations (0)


def test_bridge_event_merges_two_incidents_with_redirect():
    a, b = ev("grid:a", "dispute", T0, "513221107201"), ev("grid:b", "dispute", T0 + MIN, "513221107201")
    c, d = ev("grid:c", "theft", T0, "513221107202", severity=3), ev("grid:d", "theft", T0, "513221107202")
    bridge = ev("alarm110:z", "dispute", T0 + 2 * MIN, "513221107201")
    state = IncidentState()
    for e in (a, b, c, d, bridge):
        state.apply_event(e)
    state.apply_link(link("grid:a", "grid:b"))
    state.apply_link(link("grid:c", "grid:d"))
    assert set(state.live()) == {incident_id("grid:a"), incident_id("grid:c"), incident_id("alarm110:z")}
    state.apply_link(link("alarm110:z", "grid:b"))
    out = state.apply_link(link("alarm110:z", "grid:c"))
    survivor = incident_id("alarm110:z")  # smallest event id of the merged component
    assert set(state.live()) == {survivor}
    by_id = {r["incident_id"]: r for r in out}
    assert by_id[survivor]["status"] == "open" and len(by_id[survivor]["event_ids"]) == 5
    redirect = by_id[incident_id("grid:c")]
    assert redirect["status"] == "merged" and redirect["merged_into"] == survivor
    merged = state.live()[survivor]
    assert merged["kind"] == "theft" and merged["severity"] == 3
    assert merged["admin_code"] == "513221107" and merged["tier"] == "town"
    assert all(state.incident_of(e) == survivor for e in merged["event_ids"])


def test_link_before_events_is_parked_then_applied():
    state = IncidentState()
    assert state.apply_link(link("grid:a", "grid:b")) == []
    state.apply_event(ev("grid:b", "dispute", T0, "513221107201"))
    out = state.apply_event(ev("grid:a", "dispute", T0, "513221107201"))
    assert [r["incident_id"] for r in out if r["status"] == "open"] == [incident_id("grid:a")]
    assert len(state.live()) == 1 and not [k for k in state.pending if not k.startswith("~due:")]  # (the deadline index stays)


def test_lookup_supplies_unseen_endpoint_and_reapply_is_noop():
    a, b = ev("grid:a", "dispute", T0, "513221107201"), ev("grid:b", "dispute", T0, "513221107201")
    state = IncidentState()
    out = state.apply_link(link("grid:a", "grid:b"), {"grid:a": a, "grid:b": b}.get)
    assert any(r["event_ids"] == ["grid:a", "grid:b"] for r in out)
    assert state.apply_link(link("grid:a", "grid:b")) == [] and state.apply_event(a) == []


def test_admin_code_is_lowest_common():
    assert lowest_common_admin(["513221107201", "513221107202"], "513221") == "513221107"
    assert lowest_common_admin(["513221107201", "513221102201"], "513221") == "513221"
    assert lowest_common_admin(["513221107201", "513221107"], "513221") == "513221107"
    assert lowest_common_admin([], "513221") == "513221"


def _scenario():
    villages = ["513221107201", "513221107202", "513221102201", "513221106202"]
    kinds = ["dispute", "theft", "rescue", "intrusion", "disaster", "fire"]
    rng = random.Random(3)
    events = [ev(f"e{i:02d}", rng.choice(kinds), T0 + rng.randrange(0, 500) * MIN, rng.choice(villages),
                 severity=rng.randint(1, 4)) for i in range(14)]
    links = [link(f"e{a:02d}", f"e{b:02d}") for a, b in
             [(0, 1), (1, 2), (3, 4), (5, 6), (6, 7), (7, 3), (8, 9), (10, 11), (11, 12), (12, 10), (2, 13)]]
    return events, links


EVENTS, LINKS = _scenario()


def _run(items, with_lookup):
    state = IncidentState()
    lookup = {e["event_id"]: e for e in EVENTS} if with_lookup else None
    for kind, item in items:
        if kind == "e":
            state.apply_event(item)
        else:
            state.apply_link(item, lookup)
    return state


@settings(max_examples=60, deadline=None)
@given(st.permutations([("e", e) for e in EVENTS] + [("l", lk) for lk in LINKS] + [("l", LINKS[0])]),
       st.booleans())
def test_live_incidents_are_order_independent(items, with_lookup):
    reference = _run([("e", e) for e in EVENTS] + [("l", lk) for lk in LINKS], True)
    state = _run(items, with_lookup)
    assert state.live() == reference.live()
    assert state.members() == reference.members()


def test_order_independence_component_count_is_right():
    live = _run([("e", e) for e in EVENTS] + [("l", lk) for lk in LINKS], True).live()
    sizes = sorted(len(i["event_ids"]) for i in live.values())
    assert sizes == [2, 3, 4, 5]
