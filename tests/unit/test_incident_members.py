"""Published incident records list at most `listed_event_ids` members; incident-members.v1 has the rest.

The subscriber's recipe (examples/downstream_consumer.py `IncidentView.members_of`: listed ids, plus
every member record that leads to the incident through the redirects) must give back the full
membership the correlate state holds, for a flood far over the listed cap.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

from bench.flood import flood_events
from schemas.serde import default_store
from streams.domain.incidents import (complete_members, count_of, lists_fewer, may_hold, member_record, published,
                                      resolve)
from streams.domain.pipeline import CountyProcessor, Stores
from streams.domain.tiers import load_tier_rules

ROOT = Path(__file__).resolve().parents[2]


def _example():  # noqa: ANN202 - the example module
    spec = importlib.util.spec_from_file_location("downstream_consumer", ROOT / "examples" / "downstream_consumer.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = mod  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_published_lists_the_smallest_ids_and_keeps_the_true_count() -> None:
    inc = {"incident_id": "inc-x", "event_ids": [f"e{i:03d}" for i in range(10)], "event_count": 10,
           "merged_from": ["inc-a", "inc-b", "inc-c"]}
    assert published(inc, 10) is inc  # nothing over the cap: the record itself
    out = published(inc, 4)
    assert out["event_ids"] == ["e000", "e001", "e002", "e003"] and out["merged_from"] == ["inc-a", "inc-b", "inc-c"]
    assert out["event_count"] == 10 and inc["event_ids"][-1] == "e009"  # the state is not touched
    assert published(inc, 2)["merged_from"] == ["inc-a", "inc-b"]


def test_member_record_and_resolve() -> None:
    ev = {"event_id": "camera:1", "occurred_at": 1_700_000_000_000, "location": {"county_code": "513221"}}
    rec = member_record(ev, "inc-a", "r1")
    assert rec == {"event_id": "camera:1", "incident_id": "inc-a", "county_code": "513221",
                   "occurred_at": 1_700_000_000_000, "rules_version": "r1"}
    default_store().encode("pingan.IncidentMember", rec)  # fits the contract
    assert resolve("inc-a", {"inc-a": "inc-b", "inc-b": "inc-c"}) == "inc-c"
    assert resolve("inc-z", {"inc-a": "inc-b"}) == "inc-z"


def test_a_subscriber_rebuilds_every_member_of_a_flood_over_the_listed_cap() -> None:
    listed, batch = 40, 25
    rules = dataclasses.replace(load_tier_rules(), listed_event_ids=listed)
    proc = CountyProcessor(Stores(), tier_rules=rules)
    store = default_store()
    ex = _example()
    view, decoder = ex.IncidentView(), ex.AvscDecoder(ROOT / "schemas")
    events = flood_events(600)
    for start in range(0, len(events), batch):  # what the worker publishes per batch
        latest, members = {}, []
        for ev in events[start:start + batch]:
            step = proc.process(ev)
            latest.update({rec["incident_id"]: rec for rec in step.incidents})
            members += step.members
        for rec in latest.values():
            out = published(rec, rules.listed_event_ids)
            assert len(out["event_ids"]) <= listed and len(out["merged_from"]) <= listed
            ex.apply_message(view, decoder, "incidents.v1", store.encode("pingan.Incident", out))
        for m in members:
            ex.apply_message(view, decoder, "incident-members.v1", store.encode("pingan.IncidentMember", m))
    live = {iid: inc for iid, inc in proc.stores.incidents.items() if inc.get("status") != "merged"}
    full = proc.state.members()  # the state's own lists are bounded too: its mappings, resolved
    assert set(full) == set(live)
    assert max(len(ids) for ids in full.values()) > 10 * listed  # far over the cap
    assert all(len(inc["event_ids"]) <= listed for inc in live.values())
    assert set(view.live()) == set(live)
    for iid, inc in live.items():
        assert view.members_of(iid) == set(full[iid]), iid
        assert inc["event_ids"] == full[iid][:listed], iid  # the state lists the smallest
        assert view.incidents[iid]["event_count"] == inc["event_count"] == len(full[iid])
    # every event has its member record (an event joins once; a redelivery writes it again)
    assert set(view.members) == {ev["event_id"] for ev in events}


def test_complete_members_puts_every_member_back_for_the_replay_diff() -> None:
    """`pingan replay diff` compares incident sets by member: records over the listed cap get their
    members back from incident-members.v1 before the comparison."""
    listed = {"incident_id": "inc-a", "status": "open", "event_ids": ["e1", "e2"], "event_count": 4}
    gone = {"incident_id": "inc-b", "status": "merged", "merged_into": "inc-a", "event_ids": [], "event_count": 2}
    small = {"incident_id": "inc-c", "status": "open", "event_ids": ["e9"], "event_count": 1}
    joined = {"e1": "inc-a", "e2": "inc-a", "e3": "inc-b", "e4": "inc-a", "e9": "inc-c"}
    out = complete_members({"inc-a": listed, "inc-b": gone, "inc-c": small}, joined)
    assert out["inc-a"]["event_ids"] == ["e1", "e2", "e3", "e4"] and listed["event_ids"] == ["e1", "e2"]
    assert out["inc-b"] == gone and out["inc-c"] == small


def test_count_lists_fewer_and_may_hold_read_a_bounded_record() -> None:
    full = {"status": "open", "event_ids": ["e1", "e2"], "event_count": 2}
    short = {"status": "open", "event_ids": ["e1", "e5"], "event_count": 9}
    gone = {"status": "merged", "event_ids": [], "event_count": 9}
    assert count_of(full) == 2 and count_of(short) == 9 and count_of({"event_ids": ["x"]}) == 1
    assert not lists_fewer(full) and lists_fewer(short) and not lists_fewer(gone)
    assert may_hold(full, "e2") and not may_hold(full, "e3") and not may_hold(full, "e0")
    # past the listed (smallest) ids of a record that lists fewer: possible; below them: listed or not
    assert may_hold(short, "e5") and may_hold(short, "e9") and not may_hold(short, "e3")
