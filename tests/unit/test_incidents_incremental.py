"""Incremental incidents (issue 18): a touch of a big incident adds what the small side brings, and
gives exactly what a full rebuild from all its events and links would; merge redirects are headers."""
from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from bench.flood import GAP_MS as GAP_S_MS, flood_events, measure_flood
from schemas.serde import default_store
from streams.domain import lifecycle
from streams.domain.incidents import (
    MAX_EVENT_SUMMARIES,
    MAX_LINKS,
    IncidentState,
    _cap_links,
    _cap_links_sorted,
    _merge_links,
    _merge_summaries,
    _union_sorted,
    event_summary,
)
from streams.domain.pipeline import CountyProcessor, run_batch
from streams.domain.ids import incident_id
from streams.domain.tiers import load_tier_rules

from tests.unit.test_incidents import MIN, T0, ev, link

TIER_RULES = load_tier_rules()


def _strength(lk):
    return (-float(lk["score"]), lk["link_id"])


def test_flood_incident_equals_a_full_rebuild_from_all_its_events_and_links() -> None:
    events = flood_events(700)
    proc, out = run_batch(events)
    live = proc.state.live()
    assert len(live) == 1
    (inc,) = live.values()
    all_links = {lk["link_id"]: lk for lk in out.links}
    assert inc["event_ids"] == sorted(e["event_id"] for e in events) and inc["event_count"] == 700
    earliest = sorted(events, key=lambda e: (e["occurred_at"], e["event_id"]))[:MAX_EVENT_SUMMARIES]
    assert [e["event_id"] for e in inc["events"]] == [e["event_id"] for e in earliest]
    assert inc["events"] == [event_summary(e) for e in earliest]
    strongest = sorted(sorted(all_links.values(), key=_strength)[:MAX_LINKS], key=lambda lk: lk["link_id"])
    assert [lk["link_id"] for lk in inc["links"]] == [lk["link_id"] for lk in strongest]
    assert inc["link_count"] == len(all_links) > MAX_LINKS
    assert inc["incident_id"] == incident_id(min(e["event_id"] for e in events))
    # every singleton that joined it is listed and got its redirect
    assert set(inc["merged_from"]) == {incident_id(e["event_id"]) for e in events} - {inc["incident_id"]}
    # the derived fields are those of a from-scratch derivation of the same record
    fresh = IncidentState(tier_rules=TIER_RULES, clock=proc.clock)._finish(dict(inc))
    assert fresh == {**inc, "rules_version": ""}


def test_flood_in_any_order_gives_the_same_incident_and_mapping() -> None:
    events = flood_events(500)
    reference, _ = run_batch(events)
    for seed in (5, 6):  # shuffled, and late-first (the merges then go the other way: small into big)
        order = events[:]
        random.Random(seed).shuffle(order)
        if seed == 6:
            order.sort(key=lambda e: -e["occurred_at"])
        proc, _ = run_batch(order, CountyProcessor())
        assert proc.state.live() == reference.state.live(), seed
        # the mapping as resolved (a big merged-away incident leaves a pointer, not 500 re-mappings)
        assert proc.state.members() == reference.state.members(), seed


def test_a_later_event_joining_a_flood_keeps_its_summaries_and_their_derivations() -> None:
    events = flood_events(MAX_EVENT_SUMMARIES + 50)
    proc, _ = run_batch(events[:-1])
    (before,) = proc.state.live().values()
    proc.process(events[-1])
    (after,) = proc.state.live().values()
    assert after["events"] is before["events"]  # not rebuilt: the new event is not among the earliest
    assert after["event_count"] == before["event_count"] + 1 and after["version"] > before["version"]


def test_merge_redirect_is_a_header_without_the_old_content() -> None:
    a, b = ev("grid:a", "dispute", T0, "513221107201"), ev("grid:b", "dispute", T0 + MIN, "513221107201")
    c, d = ev("grid:c", "theft", T0, "513221107202", severity=3), ev("grid:d", "theft", T0, "513221107202")
    state = IncidentState()
    for e in (a, b, c, d):
        state.apply_event(e)
    state.apply_link(link("grid:a", "grid:b"))
    state.apply_link(link("grid:c", "grid:d"))
    old = state.live()[incident_id("grid:c")]
    out = {r["incident_id"]: r for r in state.apply_link(link("grid:b", "grid:c"))}
    gone = out[incident_id("grid:c")]
    assert gone["status"] == "merged" and gone["merged_into"] == incident_id("grid:a")
    assert gone["version"] == old["version"] + 1
    assert gone["events"] == gone["links"] == gone["event_ids"] == [] == gone["merged_from"]
    assert gone["person_keys"] == gone["vehicle_keys"] == gone["dispositions"] == []
    for field in ("county_code", "admin_code", "town_codes", "village_codes", "tier", "kind", "severity",
                  "first_seen", "last_seen", "event_count", "link_count"):
        assert gone[field] == old[field], field
    assert len(default_store().encode("pingan.Incident", gone)) < 1024


def test_a_duplicate_reemits_slim_redirects_for_the_merged_away_ids() -> None:
    events = flood_events(60)
    proc, _ = run_batch(events)
    step = proc.process(events[10])
    redirects = [r for r in step.incidents if r["status"] == "merged"]
    (live,) = proc.state.live().values()
    assert {r["incident_id"] for r in redirects} == set(live["merged_from"])
    assert all(r["event_ids"] == [] and r["events"] == [] and r["merged_into"] == live["incident_id"]
               for r in redirects)


def test_derive_with_kept_routing_equals_derive_from_the_summaries() -> None:
    proc, _ = run_batch(flood_events(120))
    (inc,) = proc.state.live().values()
    for clock in (None, T0, inc["last_seen"], inc["last_seen"] + 100 * 3_600_000):
        assert lifecycle.derive(inc, TIER_RULES, clock) == lifecycle.derive(
            inc, TIER_RULES, clock, routing=lifecycle.event_rises(inc["events"], TIER_RULES))


def test_summary_facts_carried_on_equal_a_fresh_derivation_at_every_step(monkeypatch) -> None:
    """A growing incident's kind, common admin code and tier rises are carried on from its kept
    summaries when later events join (`IncidentState._summary_facts`, `lifecycle.RisesFold`): after
    every event, each live incident equals a fresh derivation of the same record, while the events
    go from no admin code to one village, other villages, another town, rising kinds and severities,
    with some arriving out of time order (inserted mid-list: the full walk)."""
    carried = []
    original_copy = lifecycle.RisesFold.copy
    monkeypatch.setattr(lifecycle.RisesFold, "copy", lambda self: carried.append(1) or original_copy(self))
    rng = random.Random(11)
    events = []
    for i, e in enumerate(flood_events(160)):
        e = {**e, "location": dict(e["location"])}
        loc = e["location"]
        if i < 3:  # no code at all (an event with only a county code keeps the incident at the county)
            loc["admin_code"] = loc["village_code"] = loc["town_code"] = loc["county_code"] = None
        elif i < 40:
            loc["admin_code"] = loc["village_code"] = "513221107201"
        elif i >= 120:
            loc["admin_code"] = loc["village_code"] = "513221108201"  # another town
            loc["town_code"] = "513221108"
        e["severity"] = 1 + min(3, i // 45)
        if i in (70, 130):
            e["kind"] = "fire"
        if i % 37 == 36:  # late: an earlier time than events already seen
            e["occurred_at"] -= rng.randint(10, 30) * GAP_S_MS
        events.append(e)
    proc = CountyProcessor()
    seen_codes = set()
    for e in events:
        proc.process(e)
        for inc in proc.state.live().values():
            fresh = IncidentState(tier_rules=TIER_RULES, clock=proc.clock)._finish(dict(inc))
            assert fresh == {**inc, "rules_version": ""}, e["event_id"]
            seen_codes.add(len(inc["admin_code"]))
    assert carried, "no step carried the facts on"
    assert seen_codes == {0, 6, 9, 12}  # no code yet, a village, a town, the county
    assert any(step["reason_code"] == "spread" for inc in proc.state.live().values()
               for step in inc["escalation_history"])


def test_flood_bench_runs_and_finds_one_incident() -> None:
    result = measure_flood(events=300, chunk=100)
    assert result.events == 300 and result.largest_incident >= 285
    assert len(result.chunk_seconds) == len(result.encode_seconds) == 3 and result.ratio > 0


# ----------------------------------------------------------------------------- the set algebra
_IDS = st.text(alphabet="abcdef", min_size=1, max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(_IDS, unique=True), st.lists(_IDS, max_size=100))
def test_union_sorted_is_the_sorted_union(base, extra) -> None:
    base = sorted(base)
    out = _union_sorted(base, extra)
    assert out == sorted(set(base) | set(extra))
    assert (out is base) == (set(extra) <= set(base))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 1000), unique=True, max_size=400), st.lists(st.integers(0, 1000), max_size=80))
def test_merge_summaries_keeps_the_earliest_of_the_union(base_ids, extra_ids) -> None:
    def summary(i):
        return {"event_id": f"e{i:04d}", "occurred_at": T0 + (i % 97) * MIN}

    def key(e):
        return (e["occurred_at"], e["event_id"])

    base = sorted((summary(i) for i in base_ids), key=key)[:MAX_EVENT_SUMMARIES]
    union = {e["event_id"]: e for e in base + [summary(i) for i in extra_ids]}
    assert _merge_summaries(base, [summary(i) for i in extra_ids]) == sorted(union.values(), key=key)[
        :MAX_EVENT_SUMMARIES]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 600), unique=True, max_size=MAX_LINKS), st.lists(st.integers(0, 600), max_size=60))
def test_merge_then_cap_links_equals_capping_the_union(base_ids, extra_ids) -> None:
    def lk(i):
        return {"link_id": f"l{i:04d}", "score": round((i * 37 % 101) / 101, 2)}

    base = sorted((lk(i) for i in base_ids), key=lambda x: x["link_id"])
    merged, added = _merge_links(base, [lk(i) for i in extra_ids])
    assert added == len(set(extra_ids) - set(base_ids))
    union = {x["link_id"]: x for x in base + [lk(i) for i in extra_ids]}
    assert _cap_links_sorted(merged) == _cap_links(sorted(union.values(), key=lambda x: x["link_id"]))


def test_recurrence_sees_only_keys_that_can_reach_the_count_and_finds_the_same_step() -> None:
    from streams.domain.tiers import recurrence_at

    repeat = "phone:" + "9" * 32

    def call(i, keys):
        e = ev(f"alarm110:H{i:04d}", "help", T0 + i * MIN, "513221107201", keys=keys, lat=31.477, lon=103.59)
        e["persons"][0]["role"] = "caller"
        return e

    events = [call(i, [f"phone:{i:032x}"] + ([repeat] if i % 7 == 0 else [])) for i in range(30)]
    proc, out = run_batch(events)
    (inc,) = proc.state.live().values()
    view = proc._recurrence_view(inc)
    assert repeat in view["person_keys"] and len(view["person_keys"]) == 1 < len(inc["person_keys"])
    assert recurrence_at(view, TIER_RULES, proc.stores.history) == recurrence_at(
        inc, TIER_RULES, proc.stores.history) == T0 + 14 * MIN  # the third call with the repeated phone
    assert inc["recurrence"] and inc["recurrence"]["at"] == T0 + 14 * MIN
    assert any(s["reason_code"] == "recurrence" for s in inc["escalation_history"])


def test_the_state_of_a_flood_incident_is_bounded_and_its_members_resolve_in_any_order() -> None:
    """The incident's state value lists the smallest ``listed_event_ids`` member and merged ids and
    the true counts: it stops growing once the flood passes the limit. Membership beyond it lives in
    the event → incident mappings; a big merged-away incident leaves one merge pointer, which a
    lookup follows and shortens. Late-first order changes the surviving id at every event."""
    import dataclasses
    import json

    rules = dataclasses.replace(TIER_RULES, listed_event_ids=50)
    events = flood_events(600)
    sizes: dict[int, int] = {}
    reference = CountyProcessor(tier_rules=rules)
    for n, e in enumerate(events, 1):
        reference.process(e)
        if n in (300, 600):
            (inc,) = reference.state.live().values()
            sizes[n] = len(json.dumps(inc))
    (inc,) = reference.state.live().values()
    ids = sorted(e["event_id"] for e in events)
    assert inc["event_ids"] == ids[:50] and inc["event_count"] == 600
    assert inc["merged_from"] == sorted({incident_id(e) for e in ids[1:]})[:50]
    assert inc["incident_id"] == incident_id(ids[0])
    assert sizes[600] < 1.1 * sizes[300], sizes  # no longer proportional to the members
    assert reference.state.members() == {inc["incident_id"]: ids}

    late_first = CountyProcessor(tier_rules=rules)
    for e in sorted(events, key=lambda e: e["event_id"], reverse=True):  # every event is the new smallest
        late_first.process(e)
    assert late_first.state.live() == reference.state.live()
    assert late_first.state.members() == reference.state.members()
    pointers = [k for k in late_first.stores.event_incident if k.startswith("~into:")]
    assert pointers  # big merged-away incidents were not re-mapped member by member
    # after one lookup each, every mapping is one step from the live incident (path compression)
    assert all(late_first.stores.event_incident[e] == inc["incident_id"] for e in ids)
