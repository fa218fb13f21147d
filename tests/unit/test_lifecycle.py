"""The incident lifecycle: evidence vs incidents, the disposition loop, escalation on the county clock."""
from __future__ import annotations

import dataclasses
import random

import pytest

from streams.domain import lifecycle
from streams.domain.lifecycle import ActionRefused, check, derive, opens, settling
from streams.domain.pipeline import CountyProcessor
from streams.domain.tiers import load_tier_rules

RULES = load_tier_rules()
T0 = 1_719_792_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
WANG = "id:" + "a" * 32
VILLAGE = "513221107201"


def ev(eid: str, kind: str, t: int, *, village: str = VILLAGE, keys=(), severity: int = 2,
       resolution: str | None = None, received: int | None = None, plates=()) -> dict:
    return {
        "event_id": eid, "source": eid.split(":")[0], "kind": kind, "severity": severity, "occurred_at": t,
        "received_at": received if received is not None else t,
        "location": {"admin_code": village, "county_code": village[:6], "town_code": village[:9],
                     "village_code": village, "lat": 31.0, "lon": 103.4},
        "persons": [{"role": "party", "keys": list(keys)}] if keys else [],
        "vehicles": [{"key": p} for p in plates], "refs": {"related_ids": [], "native_id": eid.split(":")[1]},
        "text": "", "resolution": resolution,
    }


def action(anchor: str, act: str, at: int, **kw) -> dict:
    did = lifecycle.disposition_id(anchor, act, kw.get("actor", "village:1"), str(at))
    return {"disposition_id": did, "incident_id": "inc-x", "anchor_event_id": anchor, "county_code": "513221",
            "action": act, "actor": kw.pop("actor", "village:1"), "actor_admin_code": VILLAGE, "at": at,
            "assignee": kw.get("assignee"), "outcome": kw.get("outcome"), "note": kw.get("note"),
            "to_tier": kw.get("to_tier"), "origin": "center", "request_id": str(at)}


def only(proc: CountyProcessor) -> dict:
    (inc,) = proc.state.live().values()
    return inc


# ----------------------------------------------------------------------------- evidence vs incidents

@pytest.mark.parametrize("event, expected", [
    (ev("alarm110:1", "other", T0, severity=1), True),        # a 110 call always
    (ev("grid:1", "other", T0, severity=1), True),            # a grid report always
    (ev("mediation:1", "dispute", T0), True),
    (ev("door:1", "intrusion", T0, severity=4), False),       # door passes never
    (ev("camera:1", "person_sighting", T0, severity=1), False),  # a face capture
    (ev("camera:2", "vehicle_sighting", T0, severity=1), False),  # a plate read
    (ev("camera:3", "intrusion", T0, severity=1), False),     # low-severity motion
    (ev("camera:4", "intrusion", T0, severity=4), True),      # a serious camera alarm
    (ev("camera:7", "intrusion", T0, severity=3), False),     # line crossing by day: evidence
    (ev("camera:5", "mass_gathering", T0, severity=1), True),
    (ev("camera:6", "device", T0, severity=4), False),        # a device fault is not a governance matter
])
def test_which_events_open_an_incident(event: dict, expected: bool) -> None:
    assert opens(event, RULES) is expected


def test_evidence_opens_nothing_and_escalates_nothing_until_linked_or_watched() -> None:
    proc = CountyProcessor(tier_rules=RULES)
    (inc,) = proc.process(ev("door:d1", "person_sighting", T0, severity=1, keys=[WANG])).incidents
    assert inc["actionable"] is False and inc["deadline_at"] is None
    step = proc.tick({"county_code": "513221", "now_ms": T0 + 30 * DAY})
    assert step.incidents == [] and step.escalations == []
    assert only(proc)["escalation_history"] == []
    # a plate on a watch list makes a plate read actionable
    watched = CountyProcessor(tier_rules=RULES, watch={"plate:x": "stolen_vehicles"})
    (hit,) = watched.process(ev("camera:p1", "vehicle_sighting", T0, severity=1, plates=["plate:x"])).incidents
    assert hit["actionable"] and hit["watch_hits"] == ["watch:stolen_vehicles"] and hit["deadline_at"] is not None


def test_evidence_joining_an_incident_becomes_part_of_it() -> None:
    proc = CountyProcessor(tier_rules=RULES)
    proc.process(ev("door:d1", "person_sighting", T0, severity=1, keys=[WANG]))
    proc.process(ev("grid:g1", "dispute", T0 + 60_000, keys=[WANG]))
    incs = list(proc.state.live().values())
    joined = [i for i in incs if "door:d1" in i["event_ids"]]
    assert joined and joined[0]["actionable"] and "grid:g1" in joined[0]["event_ids"]


# ----------------------------------------------------------------------------- the disposition loop

def test_accept_assign_resolve_reopen() -> None:
    proc = CountyProcessor(tier_rules=RULES)
    proc.process(ev("grid:g1", "dispute", T0, keys=[WANG]))
    assert only(proc)["status"] == "open"
    proc.apply_disposition(action("grid:g1", "accept", T0 + HOUR, actor="village:柒山村"))
    assert (only(proc)["status"], only(proc)["accepted_by"]) == ("accepted", "village:柒山村")
    proc.apply_disposition(action("grid:g1", "assign", T0 + 2 * HOUR, assignee="网格员 李四"))
    assert (only(proc)["status"], only(proc)["assignee"]) == ("assigned", "网格员 李四")
    proc.apply_disposition(action("grid:g1", "note", T0 + 3 * HOUR, note="已上门"))
    out = proc.apply_disposition(action("grid:g1", "resolve", T0 + 4 * HOUR, outcome="双方和解"))
    inc = only(proc)
    assert (inc["status"], inc["resolved_at"], inc["outcome"], inc["deadline_at"]) == (
        "resolved", T0 + 4 * HOUR, "双方和解", None)
    assert [d["action"] for d in inc["dispositions"]] == ["accept", "assign", "note", "resolve"]
    assert out.incidents and out.incidents[-1]["version"] > 0
    # applying the same action again changes nothing
    assert proc.apply_disposition(action("grid:g1", "resolve", T0 + 4 * HOUR, outcome="双方和解")).incidents == []
    # resolved: no deadline escalation, however long
    assert proc.tick({"county_code": "513221", "now_ms": T0 + 60 * DAY}).escalations == []
    proc.apply_disposition(action("grid:g1", "reopen", T0 + 61 * DAY))
    inc = only(proc)
    assert inc["status"] == "open" and inc["opened_at"] == T0 + 61 * DAY
    assert inc["deadline_at"] == T0 + 61 * DAY + 72 * HOUR


def test_a_settling_source_event_resolves_and_a_new_call_reopens() -> None:
    proc = CountyProcessor(tier_rules=RULES)
    proc.process(ev("grid:g1", "dispute", T0, keys=[WANG]))
    proc.process(ev("mediation:m1", "dispute", T0 + HOUR, keys=[WANG], received=T0 + 5 * HOUR))
    assert only(proc)["status"] == "open"
    # the same case delivered again with its result: 调解成功
    proc.process(ev("mediation:m1", "dispute", T0 + HOUR, keys=[WANG], received=T0 + 6 * DAY // 6,
                    resolution="调解成功"))
    inc = only(proc)
    assert inc["status"] == "resolved" and inc["outcome"].startswith("调解成功")
    assert inc["dispositions"][-1]["origin"] == "source" and inc["dispositions"][-1]["actor"] == "source:mediation"
    # a new 110 call about the same people after that reopens it
    proc.process(ev("alarm110:a1", "dispute", T0 + 3 * DAY, keys=[WANG]))
    inc = only(proc)
    assert inc["status"] == "open" and inc["opened_at"] == T0 + 3 * DAY


def test_a_grid_report_already_settled_on_arrival() -> None:
    assert settling(ev("grid:g1", "dispute", T0)) is None
    s = settling(ev("grid:g1", "dispute", T0, resolution="已化解", received=T0 + 60_000))
    assert s is not None and (s["action"], s["at"], s["origin"]) == ("resolve", T0 + 60_000, "source")
    proc = CountyProcessor(tier_rules=RULES)
    proc.process(ev("grid:g1", "dispute", T0, resolution="已化解", received=T0 + 60_000))
    assert only(proc)["status"] == "resolved"


def test_manual_escalation() -> None:
    proc = CountyProcessor(tier_rules=RULES)
    proc.process(ev("grid:g1", "dispute", T0))
    out = proc.apply_disposition(action("grid:g1", "escalate", T0 + HOUR, to_tier="town", note="当事人情绪激动"))
    (esc,) = out.escalations
    assert (esc["from_tier"], esc["to_tier"], esc["reason_code"]) == ("village", "town", "manual")
    assert "当事人情绪激动" in esc["reason"] and only(proc)["tier"] == "town"


def test_an_action_that_arrives_before_its_events_waits_for_them() -> None:
    """A pipeline replay may read dispositions.v1 before the raw topics."""
    proc = CountyProcessor(tier_rules=RULES)
    assert proc.apply_disposition(action("grid:g1", "accept", T0 + HOUR)).incidents == []
    proc.process(ev("grid:g1", "dispute", T0))
    assert only(proc)["status"] == "accepted"


def test_check_refuses_actions_that_do_not_apply() -> None:
    check("accept", "open")
    with pytest.raises(ActionRefused, match="受理"):
        check("accept", "resolved")
    with pytest.raises(ActionRefused):
        check("reopen", "open")
    with pytest.raises(ActionRefused, match="already"):
        check("escalate", "open", tier="town", to_tier="village", rules=RULES)
    with pytest.raises(ActionRefused, match="unknown"):
        check("delete", "open")


# ----------------------------------------------------------------------------- the clock

def test_a_future_timestamp_cannot_run_the_clock_ahead() -> None:
    proc = CountyProcessor(tier_rules=RULES)
    proc.process(ev("grid:g1", "dispute", T0))
    # a camera whose clock is a year ahead: it counts as received (T0 + 1 min)
    proc.process(ev("camera:c1", "intrusion", T0 + 365 * DAY, severity=1, received=T0 + 60_000,
                    village="513221102202"))
    inc = proc.stores.incidents[next(k for k, v in proc.state.live().items() if "grid:g1" in v["event_ids"])]
    assert inc["tier"] == "village" and inc["escalation_history"] == []


def test_derive_is_a_function_of_facts_and_clock() -> None:
    proc = CountyProcessor(tier_rules=RULES)
    proc.process(ev("grid:g1", "dispute", T0))
    inc = only(proc)
    at_80h = derive(inc, RULES, T0 + 80 * HOUR)
    assert at_80h["tier"] == "town" and at_80h["deadline_at"] == T0 + 168 * HOUR
    at_200h = derive(inc, RULES, T0 + 200 * HOUR)
    assert at_200h["tier"] == "county" and at_200h["deadline_at"] is None
    assert [s["reason"] for s in at_200h["escalation_history"]] == [
        "村级72小时未办结，自动上报镇级", "镇级168小时未办结，自动上报县级"]
    resolved_early = derive({**inc, "dispositions": [lifecycle.summary_of(
        action("grid:g1", "resolve", T0 + 100 * HOUR, outcome="ok"))]}, RULES, T0 + 200 * HOUR)
    assert resolved_early["tier"] == "town" and resolved_early["status"] == "resolved"


def _feed() -> list[tuple[str, dict]]:
    """Events, actions and ticks of two weeks in one village, as (kind, record)."""
    items: list[tuple[str, dict]] = []
    for i in range(12):
        t = T0 + i * 20 * HOUR
        keys = [WANG] if i % 3 == 0 else ["id:" + str(i) * 32]
        items.append(("event", ev(f"grid:g{i}", "dispute", t, keys=keys)))
        items.append(("event", ev(f"door:d{i}", "person_sighting", t + 60_000, severity=1, keys=keys)))
        items.append(("event", ev(f"camera:c{i}", "intrusion", t + 120_000, severity=4 if i % 4 == 0 else 1,
                                  village="513221107202")))
    items.append(("action", action("grid:g0", "accept", T0 + 2 * HOUR)))
    items.append(("action", action("grid:g3", "resolve", T0 + 70 * HOUR, outcome="和解")))
    items.append(("action", action("grid:g4", "escalate", T0 + 81 * HOUR, to_tier="town")))
    items.append(("event", ev("mediation:m1", "dispute", T0 + 100 * HOUR, keys=["id:" + "5" * 32],
                              resolution="调解成功", received=T0 + 120 * HOUR)))
    for h in range(0, 400, 37):
        items.append(("tick", {"county_code": "513221", "now_ms": T0 + h * HOUR}))
    return items


def _run(items: list[tuple[str, dict]]) -> dict:
    proc = CountyProcessor(tier_rules=RULES)
    _run_into(proc, items)
    return proc.state.live()


def test_same_inputs_in_any_order_give_the_same_incidents() -> None:
    """What makes a replay reproduce the index: state is a function of the facts and the clock."""
    items = _feed()
    expected = _run(items)
    assert any(i["status"] == "resolved" for i in expected.values())
    assert any(i["escalation_history"] for i in expected.values())
    assert any(not i["actionable"] for i in expected.values())
    for seed in range(8):
        shuffled = list(items)
        random.Random(seed).shuffle(shuffled)
        assert _run(shuffled) == expected, seed


def test_versions_increase_with_every_change() -> None:
    proc = CountyProcessor(tier_rules=dataclasses.replace(RULES))
    seen: dict[str, int] = {}
    for kind, rec in _feed():
        step = (proc.process(rec) if kind == "event" else
                proc.apply_disposition(rec) if kind == "action" else proc.tick(rec))
        for inc in step.incidents:
            if inc["status"] == "merged":
                continue
            assert inc["version"] > seen.get(inc["incident_id"], -1) or inc == proc.stores.incidents.get(
                inc["incident_id"]), inc["incident_id"]
            seen[inc["incident_id"]] = inc["version"]


def test_the_deadline_index_finds_every_due_incident() -> None:
    """After the clock moved on, every live incident equals its derivation at the final clock:
    the deadline index (``~due:`` buckets) missed none, and holds exactly the open deadlines."""
    proc = CountyProcessor(tier_rules=RULES)
    _run_into(proc, _feed())
    clock = proc.clock("513221")
    assert clock is not None
    indexed = {iid for k, ids in proc.stores.pending.items() if str(k).startswith("~due:") for iid in ids}
    for iid, inc in proc.state.live().items():
        derived = derive(inc, RULES, clock)
        assert {k: inc[k] for k in derived} == derived, iid
        assert (iid in indexed) == (inc["deadline_at"] is not None), iid
    assert any(s["reason_code"] == "deadline" for i in proc.state.live().values() for s in i["escalation_history"])


def _run_into(proc: CountyProcessor, items: list[tuple[str, dict]]) -> None:
    for kind, rec in items:
        if kind == "event":
            proc.process(rec)
        elif kind == "action":
            proc.apply_disposition(rec)
        else:
            proc.tick(rec)
    proc.tick({"county_code": "513221", "now_ms": T0 + 400 * HOUR})
