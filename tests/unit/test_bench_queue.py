"""bench.queue.queue_counts: the pure per-day counting of `pingan bench queue`."""
from __future__ import annotations

from bench.queue import QueueCounts, queue_counts, render, totals_line

DAY0 = 1_784_000_000_000  # 2026-07-14 11:33:20 +08:00
H = 3_600_000


def _inc(iid: str, *, actionable: bool, kind: str, tier: str, first: int, events: int = 1,
         status: str = "open", **extra: object) -> dict[str, object]:
    return {"incident_id": iid, "actionable": actionable, "kind": kind, "tier": tier, "first_seen": first,
            "event_count": events, "status": status, "escalation_history": [], "dispositions": [],
            "resolved_at": None, **extra}


def test_counts_per_local_day() -> None:
    events = [
        {"event_id": "a", "source": "grid", "kind": "dispute", "occurred_at": DAY0},
        {"event_id": "b", "source": "camera", "kind": "person_sighting", "occurred_at": DAY0 + H},
        {"event_id": "c", "source": "camera", "kind": "intrusion", "occurred_at": DAY0 + 13 * H},  # next local day
    ]
    settled = {"disposition_id": "s", "action": "resolve", "actor": "source:grid", "at": DAY0 + 14 * H,
               "origin": "source"}
    incidents = [
        _inc("i1", actionable=True, kind="dispute", tier="village", first=DAY0, status="resolved",
             resolved_at=DAY0 + 14 * H, dispositions=[settled]),
        _inc("i2", actionable=True, kind="intrusion", tier="town", first=DAY0 + 13 * H, events=3,
             escalation_history=[{"from_tier": "village", "to_tier": "town", "reason_code": "deadline",
                                  "reason": "", "at": DAY0 + 13 * H}], watch_hits=["watch:stolen"]),
        _inc("i3", actionable=False, kind="person_sighting", tier="village", first=DAY0 + H),
        {"incident_id": "gone", "status": "merged", "first_seen": DAY0},
    ]
    c = queue_counts(events, incidents, "Asia/Shanghai")
    d0, d1 = "2026-07-14", "2026-07-15"
    assert c.days() == [d0, d1]
    assert c.rows[("events/source", "camera")] == {d0: 1, d1: 1}
    assert c.rows[("events/kind", "dispute")] == {d0: 1}
    assert c.rows[("queue", "total")] == {d0: 1, d1: 1}
    assert c.rows[("queue/tier", "村级")] == {d0: 1} and c.rows[("queue/tier", "镇级")] == {d1: 1}
    assert c.rows[("single", "actionable with one event")] == {d0: 1}
    assert c.rows[("evidence", "total")] == {d0: 1}
    assert c.rows[("escalations", "deadline")] == {d1: 1}
    assert c.rows[("resolved", "grid")] == {d1: 1}
    assert c.rows[("queue/watch", "watch-list hits")] == {d1: 1}
    assert c.total("queue") == 2 and c.section("resolved") == {"grid": 1}
    line = totals_line(c)
    assert "2 actionable incidents" in line and "single-event 50.0%" in line and "resolved 1 (grid 1)" in line
    assert render(c).row_count > 0


def test_center_resolution_and_empty() -> None:
    done = {"disposition_id": "x", "action": "resolve", "actor": "zz-513221", "at": DAY0, "origin": "center"}
    c = queue_counts([], [_inc("i", actionable=True, kind="help", tier="village", first=DAY0, status="resolved",
                               resolved_at=DAY0, dispositions=[done])])
    assert c.section("resolved") == {"center": 1}
    assert "single-event -" in totals_line(QueueCounts())
