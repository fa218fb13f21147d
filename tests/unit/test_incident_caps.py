"""A flood-sized incident stays far below Kafka's message size and independent of arrival order."""
from __future__ import annotations

import random

from schemas.serde import default_store
from streams.domain.incidents import MAX_EVENT_SUMMARIES, MAX_LINKS
from streams.domain.pipeline import CountyProcessor, run_batch

BASE_MS = 1_784_000_000_000


def _flood_events(n: int) -> list[dict]:
    rng = random.Random(7)
    events = []
    for i in range(n):
        lat, lon = 31.054 + rng.uniform(-0.004, 0.004), 103.487 + rng.uniform(-0.004, 0.004)
        events.append({
            "event_id": f"alarm110:J{i:06d}", "source": "alarm110", "kind": "disaster", "severity": 3,
            "occurred_at": BASE_MS + rng.randint(0, 20 * 60_000), "received_at": BASE_MS,
            "location": {"lat": lat, "lon": lon, "accuracy_m": 50.0, "admin_code": "513221102201",
                         "county_code": "513221", "town_code": "513221102", "village_code": "513221102201",
                         "address": "映秀镇渔子溪村", "geo_cell": None},
            "persons": [], "vehicles": [], "text": "山洪暴发，请求救援", "text_original": "山洪暴发，请求救援",
            "refs": {"native_id": f"J{i:06d}", "related_ids": [], "device_id": None, "raw_topic": None,
                     "raw_partition": None, "raw_offset": None},
            "duplicate_of": None,
        })
    return events


def test_flood_incident_is_capped_and_encodable() -> None:
    events = _flood_events(600)
    proc, _ = run_batch(events)
    live = proc.state.live()
    assert len(live) == 1
    (inc,) = live.values()
    assert inc["event_count"] == 600 and len(inc["event_ids"]) == 600
    assert len(inc["events"]) == MAX_EVENT_SUMMARIES
    assert len(inc["links"]) == MAX_LINKS and inc["link_count"] > MAX_LINKS
    encoded = default_store().encode("pingan.Incident", inc)
    assert len(encoded) < 512 * 1024


def test_capped_incident_does_not_depend_on_arrival_order() -> None:
    events = _flood_events(400)
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    a, _ = run_batch(events)
    b, _ = run_batch(shuffled, CountyProcessor())
    assert a.state.live() == b.state.live()
