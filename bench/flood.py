"""Flood benchmark: per-event cost of the pure correlate step as ONE incident grows to thousands.

A flood along the Min river: a row of riverside cameras (about 150 m apart) trips intrusion alarms
every 20 s, walking up and down the bank, and every 50th event a grid worker files a flood
(``disaster``) report from the same stretch. Neighbouring alarms within 5 min and 500 m link
(``intrusion_same_spot``), the reports link to each other (``disaster_area``) and to the alarms
around them (``disaster_x_camera_alarm``), so everything is one incident. The events are fed in
event-time order to one `CountyProcessor` over dict stores (what the pure benchmarks use), and
each consecutive chunk of events is timed (CPU seconds of this process, so that other work on a
shared machine does not count; thread CPU time, so neither does the rest of the process). A second figure times the output side: the worker
publishes each touched incident once per batch of 500 events, so per batch the last record of
every touched incident is Avro-encoded as published (``incidents.published``: at most
``listed_event_ids`` member ids), and every event's ``pingan.IncidentMember`` record. A third
figure is the biggest incident's state value (JSON, what the correlate table writes to its
changelog on every touch) after each chunk: bounded since the state lists what the record lists.

Usage::

    python -m bench.flood [--events 5000] [--chunk 1000] [--repeat 1]

The flood row of issue 18 asks that the last 1,000 of 5,000 events cost at most 1.5x the first
1,000 (``ratio``).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

from schemas.serde import default_store
from streams.domain.incidents import count_of, published
from streams.domain.pipeline import CountyProcessor

T0 = 1_719_792_000_000  # 2024-07-01 00:00 UTC
COUNTY = "513221"
TOWN = "513221107"
VILLAGES = ["513221107201", "513221107202", "513221107203"]
# a 1.2 km stretch of the river bank near Weizhou: 9 cameras ~150 m apart (north-south)
BASE_LAT, BASE_LON = 31.4770, 103.5900
CAMERAS = 9
CAMERA_STEP_DEG = 0.00135  # ~150 m of latitude
GAP_MS = 20_000
REPORT_EVERY = 50
BATCH = 500  # the worker publishes each touched incident once per batch of this many events


@dataclass
class FloodResult:
    chunk_seconds: list[float]   # seconds per consecutive chunk as the incident grows
    ratio: float                 # chunk_seconds[-1] / chunk_seconds[0]
    events: int
    largest_incident: int        # events in the biggest incident at the end
    #: seconds per chunk spent Avro-encoding the touched incidents once per batch of 500 events
    encode_seconds: list[float] = field(default_factory=list)
    #: encoded bytes per chunk (same batching)
    encode_bytes: list[int] = field(default_factory=list)
    #: JSON bytes of the biggest incident's state value (the correlate table's value) after each chunk
    state_bytes: list[int] = field(default_factory=list)


def _camera_event(i: int) -> dict[str, Any]:
    # walk up and down the row of cameras, so consecutive alarms are neighbours
    period = 2 * (CAMERAS - 1)
    pos = i % period
    cam = pos if pos < CAMERAS else period - pos
    village = VILLAGES[cam * len(VILLAGES) // CAMERAS]
    t = T0 + i * GAP_MS
    return {
        "event_id": f"camera:flood-cam{cam:02d}-{i:06d}", "source": "camera", "kind": "intrusion",
        "severity": 2, "occurred_at": t, "received_at": t + 1_000,
        "location": {"lat": BASE_LAT + cam * CAMERA_STEP_DEG, "lon": BASE_LON, "admin_code": village,
                     "county_code": COUNTY, "town_code": TOWN, "village_code": village,
                     "address": None, "geo_cell": None},
        "persons": [], "vehicles": [], "refs": {"native_id": f"flood-cam{cam:02d}-{i:06d}", "related_ids": []},
        "text": f"区域入侵告警 摄像机{cam:02d} 岷江河岸", "quality": [],
    }


def _report_event(i: int) -> dict[str, Any]:
    cam = (i // REPORT_EVERY) % CAMERAS
    village = VILLAGES[cam * len(VILLAGES) // CAMERAS]
    t = T0 + i * GAP_MS + 7_000
    return {
        "event_id": f"grid:flood-{i:06d}", "source": "grid", "kind": "disaster", "severity": 3,
        "occurred_at": t, "received_at": t + 60_000,
        "location": {"lat": BASE_LAT + cam * CAMERA_STEP_DEG + 0.0003, "lon": BASE_LON + 0.0004,
                     "admin_code": village, "county_code": COUNTY, "town_code": TOWN, "village_code": village,
                     "address": None, "geo_cell": None},
        "persons": [], "vehicles": [], "refs": {"native_id": f"flood-{i:06d}", "related_ids": []},
        "text": "岷江涨水，河岸道路被淹，请求转移群众", "quality": [],
    }


def flood_events(n: int) -> list[dict[str, Any]]:
    """`n` canonical events of one flood, in event-time order (see module docstring)."""
    out = []
    for i in range(n):
        out.append(_report_event(i) if i % REPORT_EVERY == REPORT_EVERY - 1 else _camera_event(i))
    return out


def measure_flood(events: int = 5000, chunk: int = 1000) -> FloodResult:
    """Feed `events` flood events to one processor; time each chunk (and the batch encode)."""
    evs = flood_events(events)
    proc = CountyProcessor()
    listed = proc.tier_rules.listed_event_ids
    store = default_store()
    # CPU time of this thread: the machine is shared, and wall time would count the others' work;
    # inside `pingan bench throughput` this runs in a worker thread of a process whose other threads
    # (clients left from the rounds) would count under process_time (the last chunk doubled there,
    # not when run alone). Garbage collection triggered here runs in this thread and still counts.
    clock = time.thread_time
    chunk_seconds: list[float] = []
    encode_seconds: list[float] = []
    encode_bytes: list[int] = []
    state_bytes: list[int] = []
    for start in range(0, len(evs), chunk):
        part = evs[start:start + chunk]
        batches: list[dict[str, dict[str, Any]]] = []
        members: list[dict[str, Any]] = []
        spent = 0.0
        for b in range(0, len(part), BATCH):
            touched: dict[str, dict[str, Any]] = {}
            t0 = clock()
            for ev in part[b:b + BATCH]:
                step = proc.process(ev)
                for rec in step.incidents:
                    touched[rec["incident_id"]] = rec
                members += step.members
            spent += clock() - t0
            batches.append(touched)
        chunk_seconds.append(spent)
        t1 = clock()
        size = 0
        for touched in batches:
            for rec in touched.values():
                size += len(store.encode("pingan.Incident", published(rec, listed)))
        for member in members:
            size += len(store.encode("pingan.IncidentMember", member))
        encode_seconds.append(clock() - t1)
        encode_bytes.append(size)
        state_bytes.append(max((len(json.dumps(inc)) for inc in proc.stores.incidents.values()), default=0))
    live = [inc for inc in proc.stores.incidents.values() if inc.get("status") != "merged"]
    largest = max((count_of(inc) for inc in live), default=0)
    assert largest >= 0.95 * len(evs), f"the flood did not correlate: largest incident {largest} of {len(evs)}"
    ratio = chunk_seconds[-1] / chunk_seconds[0] if chunk_seconds and chunk_seconds[0] > 0 else float("inf")
    return FloodResult(chunk_seconds=chunk_seconds, ratio=ratio, events=len(evs), largest_incident=largest,
                       encode_seconds=encode_seconds, encode_bytes=encode_bytes, state_bytes=state_bytes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    for _ in range(max(1, args.repeat)):
        r = measure_flood(args.events, args.chunk)
        print(f"flood: {r.events} events, largest incident {r.largest_incident} events")
        print("  correlate s/chunk: " + " ".join(f"{s:.3f}" for s in r.chunk_seconds)
              + f"   ratio last/first {r.ratio:.2f}")
        enc_ratio = r.encode_seconds[-1] / r.encode_seconds[0] if r.encode_seconds and r.encode_seconds[0] else 0.0
        print("  encode s/chunk:    " + " ".join(f"{s:.3f}" for s in r.encode_seconds)
              + f"   ratio last/first {enc_ratio:.2f}")
        print("  encoded kB/chunk:  " + " ".join(f"{b / 1024:.0f}" for b in r.encode_bytes))
        print("  state value kB:    " + " ".join(f"{b / 1024:.0f}" for b in r.state_bytes))


if __name__ == "__main__":
    main()
