"""Pure decisions of a center's work (streams/web/operations.py): body validation, who may act,
the disposition record, queue ordering, due states and the live-stream filter."""
from __future__ import annotations

from typing import Any

import pytest

from schemas.serde import default_store
from streams.domain import lifecycle
from streams.domain.tiers import load_tier_rules
from streams.web import operations as ops

RULES = load_tier_rules()


def _inc(**kw: Any) -> dict[str, Any]:
    base = {"incident_id": "inc-1", "status": "open", "tier": "village", "admin_code": "513221107201",
            "county_code": "513221", "event_ids": ["grid:b", "grid:a"], "actionable": True}
    return base | kw


def test_parse_action_happy_and_defaults() -> None:
    req = ops.parse_action({"action": "assign", "assignee": " 张某网格员 ", "request_id": "r-1"})
    assert isinstance(req, ops.ActionRequest)
    assert (req.action, req.assignee, req.request_id) == ("assign", "张某网格员", "r-1")
    auto = ops.parse_action({"action": "accept"}, new_request_id="fixed")
    assert isinstance(auto, ops.ActionRequest) and auto.request_id == "fixed"


@pytest.mark.parametrize("body", [
    None, [], "accept", {"action": "dance"}, {"action": "accept", "extra": 1}, {"action": "assign"},
    {"action": "resolve"}, {"action": "note", "note": "  "}, {"action": "escalate"},
    {"action": "escalate", "to_tier": "province"}, {"action": "accept", "to_tier": "town"},
    {"action": "note", "note": 5}, {"action": "note", "note": "x" * 501},
    {"action": "accept", "request_id": "bad id!"},
])
def test_parse_action_rejects_malformed(body: Any) -> None:
    out = ops.parse_action(body)
    assert isinstance(out, ops.Refusal) and out.status == 400 and out.reason


def test_credential_tier() -> None:
    assert [ops.credential_tier(c) for c in ("513221107201", "513221107", "513221", "5132")] == \
        ["village", "town", "county", "county"]


def _req(action: str, **kw: Any) -> ops.ActionRequest:
    out = ops.parse_action({"action": action, **kw}, new_request_id="r")
    assert isinstance(out, ops.ActionRequest)
    return out


def test_decide_tier_authority() -> None:
    village, town, county = "513221107201", "513221107", "513221"
    assert ops.decide_action(_req("accept"), _inc(), village, RULES) is None
    refused = ops.decide_action(_req("accept"), _inc(tier="county"), village, RULES)
    assert refused is not None and refused.status == 403 and "县级" in refused.reason
    assert ops.decide_action(_req("accept"), _inc(tier="town"), village, RULES).status == 403  # type: ignore[union-attr]
    assert ops.decide_action(_req("accept"), _inc(tier="town"), town, RULES) is None
    assert ops.decide_action(_req("accept"), _inc(tier="county"), county, RULES) is None


def test_decide_transitions() -> None:
    code = "513221"
    assert ops.decide_action(_req("accept"), _inc(status="accepted"), code, RULES).status == 409  # type: ignore[union-attr]
    assert ops.decide_action(_req("reopen"), _inc(status="open"), code, RULES).status == 409  # type: ignore[union-attr]
    assert ops.decide_action(_req("reopen"), _inc(status="closed"), code, RULES) is None  # legacy closed = resolved
    assert ops.decide_action(_req("resolve", outcome="已调解"), _inc(status="assigned"), code, RULES) is None
    assert ops.decide_action(_req("escalate", to_tier="village"), _inc(), code, RULES).status == 409  # type: ignore[union-attr]
    assert ops.decide_action(_req("escalate", to_tier="town"), _inc(), code, RULES) is None
    assert ops.decide_action(_req("accept"), _inc(actionable=False), code, RULES).status == 409  # type: ignore[union-attr]
    assert ops.decide_action(_req("note", note="x"), _inc(status="merged"), code, RULES).status == 409  # type: ignore[union-attr]


def test_build_disposition_is_deterministic_masked_and_valid_avro() -> None:
    req = _req("note", note="当事人电话13812345678，身份证513221199001011234")
    rec = ops.build_disposition(req, _inc(), "柒山村网格员", "513221107201", 1_700_000_000_000)
    assert rec["anchor_event_id"] == "grid:a"
    assert rec["disposition_id"] == lifecycle.disposition_id("grid:a", "note", "柒山村网格员", "r")
    assert "13812345678" not in rec["note"] and "513221199001011234" not in rec["note"]
    assert (rec["county_code"], rec["origin"], rec["actor_admin_code"]) == ("513221", "center", "513221107201")
    store = default_store()
    assert store.decode(store.encode("pingan.Disposition", rec))[1]["disposition_id"] == rec["disposition_id"]


def test_due_state_and_queue_order() -> None:
    assert ops.due_state(None, 100, 10) is None
    assert ops.due_state(100, 100, 10) == "overdue"
    assert ops.due_state(105, 100, 10) == "due_soon"
    assert ops.due_state(200, 100, 10) is None
    items = [{"incident_id": "n", "deadline_at": None, "severity": 4},
             {"incident_id": "late-low", "deadline_at": 500, "severity": 1},
             {"incident_id": "soon-low", "deadline_at": 100, "severity": 1},
             {"incident_id": "soon-high", "deadline_at": 100, "severity": 3}]
    assert [i["incident_id"] for i in sorted(items, key=ops.queue_key)] == ["soon-high", "soon-low", "late-low", "n"]


def _record(inc_id: str, village: str) -> dict[str, Any]:
    ev = {"event_id": f"grid:{inc_id}", "source": "grid", "kind": "dispute", "occurred_at": 1, "text": "纠纷",
          "admin_code": village, "persons": []}
    return {"incident_id": inc_id, "status": "open", "merged_into": None, "kind": "dispute", "severity": 2,
            "tier": "village", "admin_code": village, "county_code": village[:6], "town_codes": [village[:9]],
            "village_codes": [village], "first_seen": 1, "last_seen": 1, "event_ids": [ev["event_id"]],
            "events": [ev], "links": [], "version": 1, "updated_at": 1}


def test_stream_filter_by_jurisdiction() -> None:
    qishan, caoping = "513221107201", "513221107202"
    rec = _record("inc-q", qishan)
    assert ops.visible_incident(qishan, rec) is not None
    assert ops.visible_incident(caoping, rec) is None
    assert ops.visible_incident("513221107", rec) is not None
    known = {"inc-q": ["51", "5132", "513221", "513221107", qishan]}
    disp = {"incident_id": "inc-q", "actor_admin_code": "513221"}
    assert ops.visible_disposition(qishan, disp, known)
    assert not ops.visible_disposition(caoping, disp, known)
    # unknown incident: only credentials whose area holds the acting center
    assert ops.visible_disposition("513221", {"incident_id": "x", "actor_admin_code": qishan}, {})
    assert not ops.visible_disposition(caoping, {"incident_id": "x", "actor_admin_code": qishan}, {})
    assert ops.visible_merge(qishan, {"incident_id": "inc-q"}, known)
    assert not ops.visible_merge(caoping, {"incident_id": "inc-q"}, known)


def test_an_action_on_an_incident_seen_in_part_is_streamed_without_its_content() -> None:
    """A village that sees one of an incident's two villages learns that an action happened, not who
    did what: the detail view hides the actions of such an incident too (server._lifecycle_source)."""
    from streams.settings import Settings
    from streams.web.live import LiveHub
    from streams.web.server import stream_payload

    qishan, caoping, town = "513221107201", "513221107202", "513221107"
    rec = _record("inc-two", qishan)
    rec.update(admin_code=town, village_codes=[qishan, caoping],
               events=[*rec["events"], {**rec["events"][0], "event_id": "grid:b", "admin_code": caoping}])
    hub = LiveHub(Settings())
    hub.publish("incident", rec)
    disp = {"disposition_id": "d1", "incident_id": "inc-two", "action": "note", "actor": "镇中心", "at": 5,
            "note": "草坪村张某家属情绪激动", "assignee": None, "outcome": None, "to_tier": None, "origin": "center"}
    _, village_view = stream_payload(qishan, "disposition", disp, hub.known_paths, hub.known_owners)
    assert set(village_view) == {"disposition_id", "incident_id", "action", "at", "action_name"}
    _, town_view = stream_payload(town, "disposition", disp, hub.known_paths, hub.known_owners)
    assert town_view["note"] == disp["note"] and town_view["actor"] == "镇中心"
    assert stream_payload("513221108201", "disposition", disp, hub.known_paths, hub.known_owners) is None
