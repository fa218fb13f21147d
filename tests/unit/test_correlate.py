"""Correlation: blocking keys, pair scoring and the candidate index on Wenchuan cases."""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from streams.domain import correlate
from streams.domain.correlate import (
    CandidateIndex, _cannot_link, _side, blocking_keys, index_keys, links_for, probe_keys, score_pair, slim,
)
from streams.domain.geo import haversine_m
from streams.domain.rules import load_rules, parse_rules

RULES = load_rules()
T0 = 1_719_792_000_000  # 2024-07-01T00:00Z
MIN = 60_000
DAY = 86_400_000
QISHAN = ("513221107201", 31.1080, 103.3420)      # 三江镇 柒山村
CAOPING = ("513221107202", 31.0850, 103.3700)     # 三江镇 草坪村


def key(kind: str, clear: str) -> str:
    return f"{kind}:{hashlib.sha256(clear.encode()).hexdigest()[:32]}"


def ev(eid, kind, t, *, lat=None, lon=None, village=None, keys=(), plates=(), related=(), address=None,
       severity=2, county="513221"):
    loc = {"lat": lat, "lon": lon, "county_code": county, "address": address}
    if village:
        loc.update(admin_code=village, town_code=village[:9], village_code=village)
    return {
        "event_id": eid, "source": eid.split(":")[0], "kind": kind, "severity": severity,
        "occurred_at": t, "location": loc, "persons": [{"role": "party", "keys": list(keys)}] if keys else [],
        "vehicles": [{"key": p, "display_plate": "川U·A1**5"} for p in plates],
        "refs": {"related_ids": list(related)}, "text": "",
    }


def offset(lat, lon, north_m=0.0, east_m=0.0):
    import math
    return lat + north_m / 111_195, lon + east_m / (111_195 * math.cos(math.radians(lat)))


def test_dispute_parties_link_over_weeks_via_id_key():
    wang = key("id", "513221198001011234")
    grid = ev("grid:g1", "dispute", T0, lat=31.1081, lon=103.3421, village=QISHAN[0], keys=[wang])
    call = ev("alarm110:J1", "dispute", T0 + 12 * DAY, lat=31.1090, lon=103.3400, village=QISHAN[0],
              keys=[wang, key("phone", "13800001111")])
    med = ev("mediation:M1", "dispute", T0 + 40 * DAY, village=QISHAN[0], keys=[wang])
    links = links_for([grid, call, med], RULES)
    pairs = {(lk["event_a"], lk["event_b"]) for lk in links}
    assert ("alarm110:J1", "grid:g1") in pairs and ("alarm110:J1", "mediation:M1") in pairs
    lk = next(lk for lk in links if lk["event_b"] == "mediation:M1")
    assert "同一身份证号" in lk["reasons"] and lk["rule"] == "dispute_history"
    assert "同村" in lk["reasons"]


def test_person_key_outside_window_does_not_link():
    wang = key("id", "513221198001011234")
    a = ev("grid:g1", "dispute", T0, village=QISHAN[0], keys=[wang])
    b = ev("mediation:M9", "dispute", T0 + 90 * DAY, village=QISHAN[0], keys=[wang])
    assert score_pair(a, b, RULES) is None


def test_110_person_in_river_and_riverside_camera_link():
    lat, lon = 31.0540, 103.4870  # 映秀 river bank
    lat2, lon2 = offset(lat, lon, north_m=120, east_m=160)
    call = ev("alarm110:J2", "rescue", T0, lat=lat, lon=lon, severity=4)
    cam = ev("camera:34020000001320000001:7:x", "intrusion", T0 + 3 * MIN, lat=lat2, lon=lon2)
    d = score_pair(call, cam, RULES)
    assert d is not None and d.rule == "emergency_x_camera"
    link = d.as_link()
    assert 190 <= haversine_m(lat, lon, lat2, lon2) <= 210
    assert link["reasons"][0] == "相距200米、间隔3分钟"
    assert link["event_a"] == "alarm110:J2" < link["event_b"]
    assert link["link_id"] == hashlib.sha1(b"alarm110:J2|camera:34020000001320000001:7:x").hexdigest()[:20]
    assert link["created_at"] == T0 + 3 * MIN and 0 < link["score"] <= 1
    assert link["county_code"] == "513221"
    # symmetric
    assert score_pair(cam, call, RULES) == d
    # and the index finds it
    index = CandidateIndex(RULES)
    assert index.add(call) == []
    assert [lk["link_id"] for lk in index.add(cam)] == [link["link_id"]]


def test_110_help_request_and_camera_alarm_300m_5min_apart_link():
    # issue 13: a 5xxxxx help request about a person in danger on the 威州 river bank, and the
    # cameras along the bank (~450 m apart) tripping minutes later
    lat, lon = 31.4760, 103.5880
    call = ev("alarm110:J50", "help", T0, lat=lat, lon=lon, severity=2)
    cams = [ev(f"camera:h{i}", "intrusion", T0 + (5 + 3 * i) * MIN, lat=c[0], lon=c[1])
            for i, c in enumerate(offset(lat, lon, east_m=300 + 450 * i) for i in range(3))]
    d = score_pair(call, cams[0], RULES)
    assert d is not None and d.rule == "help_x_camera"
    assert d.reasons[0] == "相距300米、间隔5分钟" and d.score >= 0.45
    assert score_pair(cams[0], call, RULES) == d
    # the cameras further along the bank join through their neighbours (camera spacing, not 300 m)
    links = links_for([call, *cams], RULES)
    assert {(lk["event_a"], lk["event_b"], lk["rule"]) for lk in links} == {
        ("alarm110:J50", "camera:h0", "help_x_camera"),
        ("camera:h0", "camera:h1", "intrusion_same_spot"), ("camera:h1", "camera:h2", "intrusion_same_spot")}
    # a medical call links the same way; too far or too late does not
    assert score_pair(dict(call, kind="medical"), cams[0], RULES).rule == "help_x_camera"
    far = ev("camera:h9", "intrusion", T0 + 5 * MIN, lat=offset(lat, lon, east_m=700)[0],
             lon=offset(lat, lon, east_m=700)[1])
    late = dict(cams[0], event_id="camera:h8", occurred_at=T0 + 15 * MIN)
    assert score_pair(call, far, RULES) is None and score_pair(call, late, RULES) is None
    # a camera fault next to the call never links (device x help is a "never")
    fault = dict(cams[0], event_id="camera:h7", kind="device")
    assert score_pair(call, fault, RULES) is None and RULES.rule_for("help", "device").link is False


def test_unrelated_events_2km_apart_in_same_town_do_not_link():
    lat, lon = 31.4800, 103.5900  # 威州镇
    lat2, lon2 = offset(lat, lon, east_m=2000)
    a = ev("alarm110:J3", "rescue", T0, lat=lat, lon=lon, village="513221100201")
    b = ev("camera:c2", "intrusion", T0 + 5 * MIN, lat=lat2, lon=lon2, village="513221100202")
    assert score_pair(a, b, RULES) is None
    # close in place and time, but kinds with no location-only rule (dispute x theft)
    c = ev("grid:g7", "dispute", T0, lat=lat, lon=lon)
    d = ev("alarm110:J4", "theft", T0 + 2 * MIN, lat=lat2 - 0.0001, lon=lon)
    assert score_pair(c, d, RULES) is None
    # compatible kinds, close, but too far apart in time
    e = ev("camera:c3", "intrusion", T0 + 90 * MIN, lat=lat, lon=lon)
    assert score_pair(a, e, RULES) is None


def test_same_common_name_in_different_villages_does_not_link():
    # 王建华 in 柒山村 and 王建华 in 草坪村: name+village keys differ; same town, 10 days apart
    a = ev("grid:g2", "dispute", T0, lat=QISHAN[1], lon=QISHAN[2], village=QISHAN[0],
           keys=[key("name_village", "王建华|513221107201")])
    b = ev("mediation:M2", "dispute", T0 + 10 * DAY, lat=CAOPING[1], lon=CAOPING[2], village=CAOPING[0],
           keys=[key("name_village", "王建华|513221107202")])
    assert score_pair(a, b, RULES) is None


def test_name_village_alone_is_weak_needs_place_support():
    nv = key("name_village", "李秀英|513221107201")
    a = ev("grid:g3", "dispute", T0, lat=QISHAN[1], lon=QISHAN[2], village=QISHAN[0], keys=[nv])
    far = ev("alarm110:J5", "dispute", T0 + 2 * DAY, lat=31.1150, lon=103.3420, village=QISHAN[0], keys=[nv])
    assert score_pair(a, far, RULES) is None  # ~780 m, 2 days: two different 李秀英 possible
    same_addr = dict(far, location={**far["location"], "address": "三江镇柒山村3组12号"})
    a_addr = dict(a, location={**a["location"], "address": "三江镇柒山村3组12号"})
    d = score_pair(a_addr, same_addr, RULES)
    assert d is not None and "同名同村" in d.reasons and "同一地址 三江镇柒山村3组12号" in d.reasons


def test_late_event_still_links():
    lat, lon = 31.0950, 103.3550
    index = CandidateIndex(RULES)
    first = ev("camera:c10", "intrusion", T0 + 10 * MIN, lat=lat, lon=lon)
    other = ev("grid:g10", "other", T0 + 600 * MIN, lat=31.4, lon=103.5)  # advances the watermark
    late = ev("alarm110:J10", "rescue", T0 + 2 * MIN, lat=lat + 0.001, lon=lon)
    assert index.add(first) == [] and index.add(other) == []
    links = index.add(late)
    assert [(lk["event_a"], lk["event_b"]) for lk in links] == [("alarm110:J10", "camera:c10")]
    assert links[0]["created_at"] == T0 + 10 * MIN


def test_explicit_110_reference_links_in_either_order():
    a = ev("alarm110:J20", "public_order", T0, lat=31.48, lon=103.59)
    b = ev("alarm110:J21", "dispute", T0 + 3 * DAY, lat=31.40, lon=103.50, related=["alarm110:J20"])
    for order in ([a, b], [b, a]):
        links = links_for(order, RULES)
        assert len(links) == 1 and "110关联警情单" in links[0]["reasons"]
    assert "e:alarm110:J20" in probe_keys(b, RULES) and "e:alarm110:J20" in index_keys(a, RULES)


def test_vehicle_plate_and_theft():
    plate = key("plate", "川UA1235")
    theft = ev("alarm110:J30", "theft", T0, lat=31.48, lon=103.59)
    theft_v = dict(theft, vehicles=[{"key": plate}])
    seen = ev("camera:anpr1", "vehicle_sighting", T0 + 40 * MIN, lat=31.36, lon=103.50, plates=[plate])
    d = score_pair(theft_v, seen, RULES)
    assert d is not None and "同一车牌" in d.reasons and d.rule == "vehicle_x_theft"
    assert score_pair(theft, seen, RULES) is None  # no plate, 13 km away
    seen2 = ev("camera:anpr2", "vehicle_sighting", T0 + 45 * MIN, lat=31.37, lon=103.50, plates=[plate])
    assert score_pair(seen, seen2, RULES) is None  # same car seen twice is not an incident


def test_disaster_reports_cluster_across_towns():
    a = ev("grid:f1", "disaster", T0, lat=31.0540, lon=103.4870, village="513221102202", severity=4)
    b = ev("alarm110:F2", "disaster", T0 + 3 * 60 * MIN, lat=30.9990, lon=103.4650, village="513221106202")
    assert 5000 < haversine_m(31.054, 103.487, 30.999, 103.465) < 8000
    links = links_for([a, b], RULES)
    assert len(links) == 1 and links[0]["rule"] == "disaster_area"


def test_different_counties_never_link():
    k = key("id", "513221198001011234")
    a = ev("grid:x1", "dispute", T0, keys=[k], county="513221")
    b = ev("grid:x2", "dispute", T0 + MIN, keys=[k], county="513222")
    assert score_pair(a, b, RULES) is None


def test_blocking_key_shapes():
    e = ev("alarm110:J40", "rescue", T0, lat=31.1, lon=103.4, keys=[key("id", "x")], related=["alarm110:J39"])
    keys = blocking_keys(e, RULES)
    assert f"p:{key('id', 'x')}" in keys and "e:alarm110:J40" in keys and "r:alarm110:J39" in keys
    g = [k for k in keys if k.startswith("g:")]
    assert len(g) == 7 * 3 and all(len(k.split(":")) == 3 for k in g)
    assert not any(k.startswith("a:") for k in keys)  # rescue is not an area kind
    assert len([k for k in index_keys(e, RULES) if k.startswith("g:")]) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["rescue", "intrusion", "disaster", "fire", "theft",
                                           "vehicle_sighting", "device", "mass_gathering"]),
                          st.floats(-2500, 2500), st.floats(-2500, 2500), st.integers(0, 180)),
                min_size=2, max_size=8))
def test_blocking_never_hides_a_linkable_pair(specs):
    events = []
    for i, (kind, n, e_, m) in enumerate(specs):
        lat, lon = offset(31.0950, 103.3550, n, e_)
        events.append(ev(f"camera:r{i}", kind, T0 + m * MIN, lat=lat, lon=lon))
    for a in events:
        for b in events:
            if a is not b and score_pair(a, b, RULES) is not None:
                assert set(probe_keys(b, RULES)) & set(index_keys(a, RULES))
    # and the index finds exactly the pairwise links, in any arrival order
    brute = {tuple(sorted((a["event_id"], b["event_id"])))
             for i, a in enumerate(events) for b in events[i + 1:] if score_pair(a, b, RULES)}
    shuffled = events[:]
    random.Random(len(events)).shuffle(shuffled)
    assert {(lk["event_a"], lk["event_b"]) for lk in links_for(shuffled, RULES)} == brute


KINDS = ["rescue", "intrusion", "disaster", "fire", "theft", "help", "medical", "dispute", "criminal",
         "traffic", "mass_gathering", "other", "public_order", "device"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KINDS), st.floats(-3000, 3000), st.floats(-3000, 3000),
                          st.integers(0, 30 * 24 * 60), st.sampled_from([(), ("a",), ("b",)]),
                          st.sampled_from([(), ("P1",)]), st.sampled_from([(), ("camera:c0",), ("camera:c1",)]),
                          st.sampled_from([None, "克枯村3组"]), st.sampled_from(["513221", "513222"])),
                min_size=2, max_size=6))
def test_quick_reject_never_turns_away_a_pair_that_links(specs):
    """`_cannot_link` (the candidate index's shortcut) is True only where `score_pair` gives None,
    for the new event against full events and against the slim entries the index stores."""
    events = []
    for i, (kind, n, e_, m, ids, plates, related, address, county) in enumerate(specs):
        lat, lon = offset(31.0950, 103.3550, n, e_)
        events.append(ev(f"camera:c{i}", kind, T0 + m * MIN, lat=lat, lon=lon, village=QISHAN[0],
                         keys=[key("id", x) for x in ids], plates=[key("plate", x) for x in plates],
                         related=related, address=address, county=county))
    for a in events:
        sa = _side(a)
        for b in events:
            for stored in (b, slim(b)):
                if _cannot_link(sa, stored, RULES):
                    assert score_pair(a, stored, RULES) is None, (a, stored)


def test_quick_reject_turns_away_a_camera_alarm_far_in_time():
    near_in_place = ev("camera:x", "intrusion", T0, lat=QISHAN[1], lon=QISHAN[2])
    call = ev("alarm110:y", "rescue", T0 + 90 * MIN, lat=QISHAN[1], lon=QISHAN[2])
    assert _cannot_link(_side(call), slim(near_in_place), RULES)
    assert score_pair(call, near_in_place, RULES) is None
    soon = ev("alarm110:z", "rescue", T0 + 5 * MIN, lat=QISHAN[1], lon=QISHAN[2])
    assert not _cannot_link(_side(soon), slim(near_in_place), RULES)
    assert score_pair(soon, near_in_place, RULES) is not None


def test_busy_town_background_events_rarely_link():
    rng = random.Random(7)
    kinds = ["dispute", "theft", "public_order", "traffic", "help", "intrusion", "vehicle_sighting",
             "person_sighting", "medical", "fire", "rescue", "other"]
    events = []
    for i in range(400):  # one busy day in 威州镇, no shared persons
        lat, lon = offset(31.48, 103.59, rng.uniform(-3000, 3000), rng.uniform(-3000, 3000))
        events.append(ev(f"grid:b{i}", rng.choice(kinds), T0 + rng.randrange(0, 1440) * MIN, lat=lat, lon=lon))
    links = links_for(events, RULES)
    # 400 events/day in 36 km2 is far busier than 威州镇; chance coincidences of compatible kinds
    # within 500 m/30 min (or 300 m for same-kind calls) are ~10 of 79,800 pairs (0.01 %)
    # (with the help-request rules of issue 13: 7.4 per seed on average over seeds 7-26, was 5.4)
    assert len(links) <= 15
    assert all(lk["rule"] in {"emergency_x_camera", "emergency_same_kind", "intrusion_same_spot",
                              "disaster_x_rescue", "vehicle_x_theft", "help_x_camera", "help_x_emergency",
                              "help_x_help"} for lk in links)


def test_index_is_bounded_and_expires():
    rules = parse_rules({**_doc(), "blocking": {**_doc()["blocking"], "max_per_key": 3}})
    index = CandidateIndex(rules)
    k = key("phone", "13800009999")
    for i in range(6):
        index.add(ev(f"grid:h{i}", "dispute", T0 + i * DAY, keys=[k]))
    assert [e["event_id"] for e in index.store[f"p:{k}"]] == ["grid:h3", "grid:h4", "grid:h5"]
    assert index.add(ev("grid:h5", "dispute", T0 + 5 * DAY, keys=[k])) != []  # idempotent re-add
    assert len(index.store[f"p:{k}"]) == 3
    removed = index.expire(T0 + 400 * DAY)
    assert removed > 0 and len(index) == 0


def test_a_flood_links_each_call_to_exactly_the_earlier_calls_score_pair_links(monkeypatch):
    """A burst of 110 calls from one spot (the index keeps each candidate's scoring side, and
    drops them all when `_SIDES_MAX` is reached): every call's links are exactly the earlier
    calls `score_pair` links it to, memo full or not, and the memo stays bounded."""
    monkeypatch.setattr(correlate, "_SIDES_MAX", 16)
    rng = random.Random(3)
    index, earlier = CandidateIndex(RULES), []
    for i in range(60):
        lat, lon = offset(QISHAN[1], QISHAN[2], rng.uniform(-250, 250), rng.uniform(-250, 250))
        call = ev(f"alarm110:f{i:03d}", rng.choice(["rescue", "fire", "help"]), T0 + i * MIN // 4,
                  lat=lat, lon=lon, village=QISHAN[0], address=rng.choice([None, "柒山村2组"]),
                  keys=[key("phone", "139%d" % rng.randrange(3))] if rng.random() < 0.3 else ())
        got = {(lk["event_a"], lk["event_b"], lk["score"], tuple(lk["reasons"])) for lk in index.add(call)}
        want = set()
        for other in earlier:
            d = score_pair(call, other, RULES)
            if d is not None:
                want.add((d.event_a, d.event_b, d.score, d.reasons))
        assert got == want, i
        earlier.append(call)
        assert len(index._sides) <= 16
    assert len(want) > 10  # a dense burst: the last call links to many


def _doc():
    import tomllib
    return tomllib.loads(Path(__file__).parents[2].joinpath("streams/domain/correlation_rules.toml").read_text())


def test_rules_reject_location_windows_blocking_cannot_cover():
    doc = _doc()
    doc["pair"] = [dict(p) for p in doc["pair"]]
    bad = next(p for p in doc["pair"] if p["name"] == "emergency_x_camera")
    bad["loc_distance_m"] = 5000
    with pytest.raises(ValueError, match="not covered"):
        parse_rules(doc)


def test_disaster_and_camera_alarms_meet_in_either_order_despite_a_burst():
    # a flood report and the camera alarms 1.8 km away: near blocking, hub (report) / partner (alarm)
    rules = parse_rules({**_doc(), "blocking": {**_doc()["blocking"], "max_per_key": 5}})
    lat, lon = 31.0540, 103.4870
    report = ev("alarm110:F1", "disaster", T0 + 5 * MIN, lat=lat, lon=lon)
    far_lat, far_lon = offset(lat, lon, north_m=1800)
    alarms = [ev(f"camera:c{i:02d}", ("intrusion", "device", "mass_gathering")[i % 3], T0 + i * 20_000,
                 lat=far_lat, lon=far_lon) for i in range(30)]
    assert all(score_pair(report, a, rules).rule == "disaster_x_camera_alarm" for a in alarms)
    assert any(k.startswith("np:") for k in index_keys(alarms[0], rules))
    assert not any(k.startswith("np:") for k in probe_keys(alarms[0], rules))  # alarms never probe alarms
    assert any(k.startswith("np:") for k in probe_keys(report, rules))
    want = {tuple(sorted((report["event_id"], a["event_id"]))) for a in alarms}
    for order in (alarms + [report], [report] + alarms, alarms[:15] + [report] + alarms[15:]):
        got = {(lk["event_a"], lk["event_b"]) for lk in links_for(order, rules)
               if report["event_id"] in (lk["event_a"], lk["event_b"])}
        # a burst of 30 alarms in one key of max_per_key=5 evicts alarms from the partner key, but
        # never the report from its hub key; the report arriving last finds the 5 newest alarms
        # per key, earlier alarms found the report themselves when it came first
        if order[0] is report:
            assert got == want
        else:
            assert got <= want and len(got) >= 5
    # too far (2.5 km) or too late (20 min): no link
    assert score_pair(report, ev("camera:z", "intrusion", T0, lat=offset(lat, lon, north_m=2500)[0], lon=lon),
                      rules) is None
    assert score_pair(report, ev("camera:z", "device", T0 + 25 * MIN, lat=far_lat, lon=far_lon), rules) is None


def test_a_shared_coarse_address_does_not_override_distance():
    a = ev("camera:a1", "intrusion", T0, lat=31.10, lon=103.34, address="灞州镇克枯村3组")
    lat2, lon2 = offset(31.10, 103.34, east_m=550)
    b = ev("camera:b1", "intrusion", T0 + 2 * MIN, lat=lat2, lon=lon2, address="灞州镇克枯村3组")
    assert score_pair(a, b, RULES) is None
    # without coordinates the same address still stands in for the distance
    a2 = ev("grid:a2", "rescue", T0, address="威州镇岷江路88号")
    b2 = ev("alarm110:b2", "rescue", T0 + 5 * MIN, address="威州镇岷江路88号")
    assert score_pair(a2, b2, RULES) is not None


def test_partner_kinds_cover_only_pairs_with_a_hub():
    doc = _doc()
    doc["pair"] = [dict(p) for p in doc["pair"]] + [{
        "name": "alarm_x_alarm_far", "a": ["intrusion"], "b": ["device"], "max_gap_minutes": 10,
        "max_distance_m": 2000, "min_score": 0.45, "location_only": True, "loc_gap_minutes": 10,
        "loc_distance_m": 2000}]
    with pytest.raises(ValueError, match="not covered"):
        parse_rules(doc)   # both are partners of the near level: they never meet there


def test_candidate_lists_equal_a_filter_and_sort_in_any_arrival_order():
    """`CandidateIndex.add` keeps each key's list by insertion into the sorted list (bisect); the
    lists must be what filtering and sorting the whole list gives: expired entries gone, a re-added
    event (even with a corrected time) replaced, a late event past the horizon not stored, the
    newest max_per_key kept."""
    rules = parse_rules({**_doc(), "blocking": {**_doc()["blocking"], "max_per_key": 4}})
    k = key("phone", "13800007777")
    rng = random.Random(7)
    for _ in range(20):
        index = CandidateIndex(rules)
        model: list[tuple[int, str]] = []
        for _ in range(30):
            eid = f"grid:m{rng.randrange(12)}"  # ids repeat: re-adds, some with another time
            t = T0 + rng.randrange(0, 3 * rules.retention_ms) // 2
            index.add(ev(eid, "dispute", t, keys=[k]))
            horizon = max([t] + [ts for ts, _ in model] + [int(index.watermark or t)]) - rules.retention_ms
            model = [(ts, e) for ts, e in model if e != eid and ts >= horizon]
            if t >= horizon:
                model = sorted(model + [(t, eid)])[-rules.max_per_key:]
            got = [(e["occurred_at"], e["event_id"]) for e in index.store.get(f"p:{k}") or ()]
            assert got == model
