from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.sources.registry import normalizer
from streams.domain import geo
from streams.domain.identity import PersonKeyer
from streams.domain.normalize import (
    NormalizeError,
    Normalizer,
    StaticDevice,
    StaticDeviceLocator,
    parse_local_time,
)

SECRET = b"unit-test-secret"


def make_normalizer(secret: bytes = SECRET, timezone: str = "Asia/Shanghai", devices: Any = None) -> Normalizer:
    """A normalizer for every registered source."""
    return normalizer(secret, timezone, devices)


SH = ZoneInfo("Asia/Shanghai")
RECEIVED = 1_784_017_000_000

EVENT_FIELDS = {"event_id", "source", "kind", "resolution", "severity", "occurred_at", "received_at", "location",
                "persons", "vehicles", "text", "text_original", "refs", "duplicate_of", "quality"}
LOCATION_FIELDS = {"lat", "lon", "accuracy_m", "admin_code", "county_code", "town_code", "village_code",
                   "address", "geo_cell"}
PERSON_FIELDS = {"role", "keys", "display_name", "display_id", "display_phone"}
REFS_FIELDS = {"native_id", "related_ids", "device_id", "raw_topic", "raw_partition", "raw_offset"}

QISHAN_WGS = (31.1075, 103.3425)  # near 柒山村, 三江镇
CAMERA_ID = "51322110001320000123"
DOOR_ID = "DOOR-JZY-01"


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=SH).timestamp() * 1000)


@pytest.fixture()
def norm() -> Normalizer:
    devices = StaticDeviceLocator({
        CAMERA_ID: StaticDevice(lat=31.4788, lon=103.5912, admin_code="513221100203",
                                address="威州镇姜维城村岷江河堤", name="河堤天网01"),
        DOOR_ID: StaticDevice(lat=31.4801, lon=103.5905, admin_code="513221100",
                              address="汶川县威州镇金竹苑1幢", name="金竹苑东门"),
    })
    return make_normalizer(devices=devices)


def grid_record() -> dict[str, Any]:
    gcj = geo.wgs84_to_gcj02(*QISHAN_WGS)
    return {
        "received_at": RECEIVED, "native_id": "WG20260714000123", "raw_format": "grid-json",
        "report_id": "WG20260714000123", "grid_code": "513221107201-03", "reporter_id": "WGY-0231",
        "category_code": "0102", "category_name": "鄰里糾紛",
        "description": "柒山村村民王德学（電話１３８ ８８８８ １２３４）與李某因房屋拆遷補償發生爭執",
        "address": "四川省汶川县三江镇柒山村3组", "latitude": gcj[0], "longitude": gcj[1],
        "coord_system": "GCJ02",
        "persons": [
            {"role": "party", "name": "王德学", "id_number": "513221196805120310", "phone": "138 8888 1234"},
            {"role": "party", "name": "李秀英", "id_number": "130503670401001", "phone": "+86 139-0837-6222"},
        ],
        "reported_at_local": "2026-07-14 09:12:00", "status": "reported",
    }


def alarm_record() -> dict[str, Any]:
    return {
        "received_at": RECEIVED, "native_id": "J5132212026071400042", "raw_format": "jjd-row",
        "jjdbh": "J5132212026071400042", "gljjdbh": "J5132212026071400017",
        "xzqhbh": "513221100201", "bjsj_local": "2026-07-14 16:20:05",
        "caller_phone": "13512345678", "contact_phone": "0837-6222110", "caller_name": "赵小兰",
        "caller_id_number": "513221199001011235", "address": "汶川县威州镇七盘沟村5组",
        "content": "赵小兰报警称丈夫酒后家暴，丈夫电话13688886666，驾驶川U D12345离开，其身份证513221198511112349",
        "bjlb": "200000", "bjlx": "200200", "bjxl": None, "jqjb": 2,
        "longitude": 103.5725, "latitude": 31.4562, "location_source": "auto", "coord_system": "WGS84",
    }


def camera_record(**over: Any) -> dict[str, Any]:
    rec = {
        "received_at": RECEIVED, "native_id": f"{CAMERA_ID}:17430:2026-07-14T16:23:32",
        "raw_format": "gb28181-xml", "source_system": "gb28181", "device_id": CAMERA_ID,
        "alarm_priority": 1, "alarm_method": 5, "alarm_type": 6, "alarm_event_type": 1,
        "event_type": "intrusion", "occurred_at_local": "2026-07-14T16:23:32",
        "description": "岷江河堤区域入侵", "longitude": 103.70, "latitude": 31.60,
    }
    rec.update(over)
    return rec


def anpr_record() -> dict[str, Any]:
    return {
        "received_at": RECEIVED, "native_id": "CAM-ANPR-7:1:2026-07-14T16:25:10+08:00:ANPR",
        "raw_format": "isapi-xml", "source_system": "isapi", "device_id": "CAM-ANPR-7",
        "channel_id": "1", "event_type": "anpr", "event_state": "active",
        "occurred_at_local": "2026-07-14T16:25:10+08:00", "description": "ANPR",
        "plate": "川ＵＡ１２３５", "plate_color": "blue", "confidence": 92,
    }


def mediation_record() -> dict[str, Any]:
    return {
        "received_at": RECEIVED, "native_id": "WYFZY-2026-0077", "raw_format": "csv",
        "case_no": "WYFZY-2026-0077", "workstation": "三江镇无忧法治苑",
        "accepted_date_local": "2026/07/20", "dispute_type": "邻里",
        "summary": "王德学与李秀英因宅基地边界发生纠纷，经调解达成协议", "address": "三江镇柒山村",
        "admin_code": "513221107201",
        "parties": [
            {"role": "applicant", "name": "王德学", "id_number": "513221196805120310",
             "phone": "13888881234", "address": "三江镇柒山村3组"},
            {"role": "respondent", "name": "李秀英", "id_number": None, "phone": None, "address": None},
        ],
        "mediator": "陈调解", "outcome": "agreement", "compensation": 3000.0,
    }


def door_record() -> dict[str, Any]:
    return {
        "received_at": RECEIVED, "native_id": "DOOR-JZY-01:20260714162510:0012345",
        "raw_format": "gat1400", "device_id": DOOR_ID, "community": "金竹苑", "door": "东门",
        "person_name": "张三丰", "card_no": "0012345", "direction": "in",
        "occurred_at_local": "20260714162510",
    }


def assert_shape(ev: dict[str, Any]) -> None:
    assert set(ev) == EVENT_FIELDS
    assert set(ev["location"]) == LOCATION_FIELDS
    assert set(ev["refs"]) == REFS_FIELDS
    for p in ev["persons"]:
        assert set(p) == PERSON_FIELDS
        for k in p["keys"]:
            kind, _, digest = k.partition(":")
            assert kind in {"id", "phone", "name_village"} and len(digest) == 32
    for v in ev["vehicles"]:
        assert set(v) == {"key", "display_plate"} and v["key"].startswith("plate:")
    assert 1 <= ev["severity"] <= 4
    assert ev["event_id"] == f"{ev['source']}:{ev['refs']['native_id']}"


def assert_no_clear(ev: dict[str, Any], *clear: str) -> None:
    dump = repr(ev)
    for value in clear:
        assert value not in dump, f"clear value {value!r} leaked into the event"


# ------------------------------------------------------------------ grid
def test_grid_report(norm: Normalizer) -> None:
    ev = norm.normalize("grid", grid_record(), raw_topic="raw.grid.v1", raw_partition=2, raw_offset=41)
    assert_shape(ev)
    assert ev["event_id"] == "grid:WG20260714000123"
    assert (ev["kind"], ev["severity"]) == ("dispute", 2)
    assert ev["occurred_at"] == ms(2026, 7, 14, 9, 12) == 1_783_991_520_000
    assert ev["received_at"] == RECEIVED
    loc = ev["location"]
    assert geo.haversine_m(loc["lat"], loc["lon"], *QISHAN_WGS) < 1.0  # GCJ-02 undone
    assert loc["admin_code"] == loc["village_code"] == "513221107201"
    assert (loc["county_code"], loc["town_code"]) == ("513221", "513221107")
    assert loc["address"] == "三江镇柒山村3组"
    assert loc["geo_cell"] == geo.h3_cell(loc["lat"], loc["lon"])
    assert loc["accuracy_m"] == 30.0
    assert ev["refs"] == {"native_id": "WG20260714000123", "related_ids": [], "device_id": None,
                          "raw_topic": "raw.grid.v1", "raw_partition": 2, "raw_offset": 41}
    wang, li = ev["persons"]
    keyer = PersonKeyer(SECRET)
    assert wang["keys"] == [keyer.id_key("513221196805120310"), keyer.phone_key("13888881234"),
                            keyer.name_village_key("王德学", "513221107201")]
    assert (wang["display_name"], wang["display_id"], wang["display_phone"]) == (
        "王某学", "5132**********0310", "138****1234")
    assert li["keys"][0] == keyer.id_key("130503196704010016")  # 15-digit upgraded
    assert li["display_phone"] == "139****6222"
    # simplified, half-width text with the phone and the name masked
    assert ev["text"] == "柒山村村民王某学(电话138****1234)与李某因房屋拆迁补偿发生争执"
    assert ev["text_original"].startswith("柒山村村民王某学（電話138****1234）與")
    assert_no_clear(ev, "王德学", "李秀英", "513221196805120310", "130503670401001", "130503196704010016",
                    "13888881234", "138 8888 1234", "１３８ ８８８８ １２３４", "13908376222")


def test_grid_bd09_and_wgs84(norm: Normalizer) -> None:
    rec = grid_record()
    rec["latitude"], rec["longitude"] = geo.wgs84_to_bd09(*QISHAN_WGS)
    rec["coord_system"] = "BD09"
    loc = norm.normalize("grid", rec)["location"]
    assert geo.haversine_m(loc["lat"], loc["lon"], *QISHAN_WGS) < 1.0
    rec["latitude"], rec["longitude"], rec["coord_system"] = *QISHAN_WGS, "WGS84"
    loc = norm.normalize("grid", rec)["location"]
    assert (loc["lat"], loc["lon"]) == QISHAN_WGS


def test_grid_without_coordinates_uses_grid_code_village(norm: Normalizer) -> None:
    rec = grid_record()
    del rec["latitude"], rec["longitude"]
    loc = norm.normalize("grid", rec)["location"]
    assert loc["village_code"] == "513221107201"
    assert loc["accuracy_m"] == 2000.0  # gazetteer reference point, approximate
    assert loc["geo_cell"] is not None


# ------------------------------------------------------------------ 110
def test_alarm110(norm: Normalizer) -> None:
    ev = norm.normalize("alarm110", alarm_record())
    assert_shape(ev)
    assert ev["event_id"] == "alarm110:J5132212026071400042"
    assert ev["kind"] == "domestic_violence"  # 200200 dispute refined by 家暴 in the content
    assert ev["severity"] == 3  # JQJB 2
    assert ev["occurred_at"] == ms(2026, 7, 14, 16, 20, 5)
    assert ev["occurred_at"] == int(datetime(2026, 7, 14, 8, 20, 5, tzinfo=timezone.utc).timestamp() * 1000)
    assert ev["refs"]["related_ids"] == ["alarm110:J5132212026071400017"]
    loc = ev["location"]
    assert (loc["lat"], loc["lon"]) == (31.4562, 103.5725)
    assert loc["admin_code"] == "513221100201" and loc["accuracy_m"] == 500.0
    assert loc["address"] == "威州镇七盘沟村5组"
    caller = ev["persons"][0]
    keyer = PersonKeyer(SECRET)
    assert caller["role"] == "caller"
    assert caller["keys"] == [keyer.id_key("513221199001011235"), keyer.phone_key("13512345678"),
                              keyer.phone_key("08376222110"), keyer.name_village_key("赵小兰", "513221100201")]
    assert caller["display_phone"] == "135****5678"
    mentioned = [p for p in ev["persons"] if p["role"] == "mentioned"]
    assert [p["keys"] for p in mentioned] == [[keyer.phone_key("13688886666")], [keyer.id_key("513221198511112349")]]
    assert ev["vehicles"] == [{"key": keyer.plate_key("川UD12345"), "display_plate": "川U·D1***5"}]
    assert "赵某兰报警称" in ev["text"] and "136****6666" in ev["text"] and "5132**********2349" in ev["text"]
    assert_no_clear(ev, "赵小兰", "13512345678", "0837-6222110", "08376222110", "513221199001011235",
                    "13688886666", "513221198511112349", "川U D12345", "川UD12345")


def test_alarm110_nearest_village_and_padded_code(norm: Normalizer) -> None:
    rec = alarm_record()
    rec["xzqhbh"] = "513221100000"  # zero-padded town code
    loc = norm.normalize("alarm110", rec)["location"]
    assert loc["village_code"] == "513221100201"  # 七盘沟村 is ~30 m from the point
    rec["xzqhbh"] = "513221107"  # a different town: the point's village is inconsistent with it
    loc = norm.normalize("alarm110", rec)["location"]
    assert loc["admin_code"] == "513221107"
    rec["xzqhbh"], rec["latitude"], rec["longitude"] = None, 30.66, 104.06  # far away (Chengdu)
    rec["address"] = None
    loc = norm.normalize("alarm110", rec)["location"]
    assert loc["admin_code"] is None and loc["lat"] == 30.66


def test_alarm110_gcj_coordinates(norm: Normalizer) -> None:
    rec = alarm_record()
    rec["latitude"], rec["longitude"] = geo.wgs84_to_gcj02(31.4562, 103.5725)
    rec["coord_system"] = "GCJ02"
    loc = norm.normalize("alarm110", rec)["location"]
    assert geo.haversine_m(loc["lat"], loc["lon"], 31.4562, 103.5725) < 1.0


# ------------------------------------------------------------------ camera
def test_camera_registry_position_wins_over_payload(norm: Normalizer) -> None:
    ev = norm.normalize("camera", camera_record())
    assert_shape(ev)
    assert ev["event_id"] == f"camera:{CAMERA_ID}:17430:2026-07-14T16:23:32"
    assert (ev["kind"], ev["severity"]) == ("intrusion", 4)  # AlarmPriority 1
    loc = ev["location"]
    assert (loc["lat"], loc["lon"], loc["accuracy_m"]) == (31.4788, 103.5912, 10.0)
    assert loc["admin_code"] == "513221100203"
    assert loc["address"] == "威州镇姜维城村岷江河堤"
    assert ev["refs"]["device_id"] == CAMERA_ID
    assert ev["text"] == "岷江河堤区域入侵"


def test_camera_unknown_device_payload_then_gb_prefix(norm: Normalizer) -> None:
    other = "51322110001320000999"
    ev = norm.normalize("camera", camera_record(device_id=other, latitude=31.0625, longitude=103.4655))
    assert ev["location"]["village_code"] == "513221102201"  # 渔子溪村, 映秀镇
    assert ev["location"]["accuracy_m"] == 50.0
    ev = norm.normalize("camera", camera_record(device_id=other, latitude=None, longitude=None))
    assert ev["location"]["admin_code"] == "513221"
    assert ev["location"]["lat"] is None and ev["location"]["geo_cell"] is None


def test_camera_native_type_fallback(norm: Normalizer) -> None:
    ev = norm.normalize("camera", camera_record(event_type="shelteralarm"))
    assert ev["kind"] == "device"
    ev = norm.normalize("camera", camera_record(event_type="gb-unknown", alarm_method=2, alarm_type=1,
                                                alarm_priority=None))
    assert (ev["kind"], ev["severity"]) == ("device", 1)


def test_camera_anpr_with_offset(norm: Normalizer) -> None:
    ev = norm.normalize("camera", anpr_record())
    assert_shape(ev)
    assert (ev["kind"], ev["severity"]) == ("vehicle_sighting", 1)
    assert ev["occurred_at"] == ms(2026, 7, 14, 16, 25, 10)
    assert ev["vehicles"] == [{"key": PersonKeyer(SECRET).plate_key("川UA1235"), "display_plate": "川U·A1**5"}]
    assert ev["persons"] == []
    assert_no_clear(ev, "川UA1235", "川ＵＡ１２３５")


# ------------------------------------------------------------------ mediation
def test_mediation_case(norm: Normalizer) -> None:
    ev = norm.normalize("mediation", mediation_record())
    assert_shape(ev)
    assert ev["event_id"] == "mediation:WYFZY-2026-0077"
    assert (ev["kind"], ev["severity"]) == ("dispute", 2)
    assert ev["occurred_at"] == ms(2026, 7, 20)
    loc = ev["location"]
    assert loc["village_code"] == "513221107201"
    assert loc["accuracy_m"] == 2000.0 and loc["lat"] is not None
    wang, li = ev["persons"]
    keyer = PersonKeyer(SECRET)
    assert keyer.name_village_key("王德学", "513221107201") in wang["keys"]
    assert li["keys"] == [keyer.name_village_key("李秀英", "513221107201")]
    assert li["display_name"] == "李某英" and li["display_id"] is None
    assert ev["text"] == "王某学与李某英因宅基地边界发生纠纷,经调解达成协议"
    assert_no_clear(ev, "王德学", "李秀英", "513221196805120310", "13888881234")


def test_traditional_name_in_text_is_masked(norm: Normalizer) -> None:
    rec = grid_record()
    rec["description"] = "王德學與李秀英發生爭執"
    ev = norm.normalize("grid", rec)
    assert ev["text"] == "王某学与李某英发生争执"
    assert ev["text_original"] == "王某学與李某英發生爭執"
    assert_no_clear(ev, "王德學", "王德学", "李秀英")


def test_mediation_domestic_violence(norm: Normalizer) -> None:
    rec = mediation_record()
    rec["dispute_type"] = "婚姻家庭"
    rec["summary"] = "女方称长期遭受家暴，要求离婚"
    assert norm.normalize("mediation", rec)["kind"] == "domestic_violence"


# ------------------------------------------------------------------ door
def test_door_access(norm: Normalizer) -> None:
    ev = norm.normalize("door", door_record())
    assert_shape(ev)
    assert (ev["kind"], ev["severity"]) == ("person_sighting", 1)
    assert ev["occurred_at"] == ms(2026, 7, 14, 16, 25, 10)
    loc = ev["location"]
    assert (loc["lat"], loc["lon"]) == (31.4801, 103.5905)
    assert loc["town_code"] == "513221100"
    assert loc["address"] == "威州镇金竹苑1栋"
    assert ev["persons"][0]["display_name"] == "张某丰"
    assert ev["text"] == "门禁通行 金竹苑 东门 进"
    assert ev["refs"]["device_id"] == DOOR_ID
    assert_no_clear(ev, "张三丰")


# ------------------------------------------------------------------ determinism and errors
@pytest.mark.parametrize("source, factory", [("grid", grid_record), ("alarm110", alarm_record),
                                             ("camera", camera_record), ("mediation", mediation_record),
                                             ("door", door_record)])
def test_duplicate_delivery_gives_identical_event(norm: Normalizer, source: str, factory: Any) -> None:
    rec = factory()
    first = norm.normalize(source, rec)
    second = make_normalizer(devices=norm._devices).normalize(source, copy.deepcopy(rec))
    assert first == second
    assert rec == factory()  # input not mutated


def test_other_secret_gives_other_keys(norm: Normalizer) -> None:
    a = norm.normalize("grid", grid_record())["persons"][0]["keys"]
    b = make_normalizer(b"another").normalize("grid", grid_record())["persons"][0]["keys"]
    assert set(a).isdisjoint(b)


@pytest.mark.parametrize(
    "source, factory, field",
    [("grid", grid_record, "reported_at_local"), ("grid", grid_record, "received_at"),
     ("alarm110", alarm_record, "bjsj_local"), ("alarm110", alarm_record, "content"),
     ("camera", camera_record, "device_id"), ("camera", camera_record, "event_type"),
     ("camera", camera_record, "native_id"), ("mediation", mediation_record, "dispute_type"),
     ("door", door_record, "occurred_at_local")],
)
def test_missing_required_field(norm: Normalizer, source: str, factory: Any, field: str) -> None:
    rec = factory()
    del rec[field]
    with pytest.raises(NormalizeError, match=field):
        norm.normalize(source, rec)


def test_missing_native_id_falls_back_to_natural_id(norm: Normalizer) -> None:
    rec = grid_record()
    del rec["native_id"]
    assert norm.normalize("grid", rec)["event_id"] == "grid:WG20260714000123"
    del rec["report_id"]
    with pytest.raises(NormalizeError, match="native_id"):
        norm.normalize("grid", rec)


def test_bad_inputs(norm: Normalizer) -> None:
    rec = grid_record()
    rec["reported_at_local"] = "yesterday afternoon"
    with pytest.raises(NormalizeError, match="reported_at_local"):
        norm.normalize("grid", rec)
    rec = grid_record()
    rec["reported_at_local"] = "2026-02-30 10:00:00"
    with pytest.raises(NormalizeError, match="reported_at_local"):
        norm.normalize("grid", rec)
    with pytest.raises(NormalizeError, match="source"):
        norm.normalize("weibo", grid_record())
    rec = grid_record()
    rec["persons"] = "王德学"
    with pytest.raises(NormalizeError, match="persons"):
        norm.normalize("grid", rec)
    rec = grid_record()
    rec["coord_system"] = "UTM"
    with pytest.raises(NormalizeError, match="coord_system"):
        norm.normalize("grid", rec)
    rec = grid_record()
    rec["received_at"] = "soon"
    with pytest.raises(NormalizeError, match="received_at"):
        norm.normalize("grid", rec)
    assert issubclass(NormalizeError, ValueError)
    with pytest.raises(ValueError):
        make_normalizer(timezone="Mars/Olympus")


def test_invalid_coordinates_ignored(norm: Normalizer) -> None:
    rec = grid_record()
    rec["latitude"], rec["longitude"] = 0, 0
    loc = norm.normalize("grid", rec)["location"]
    assert loc["accuracy_m"] == 2000.0  # fell back to the grid-code village point
    rec["latitude"], rec["longitude"], rec["coord_system"] = QISHAN_WGS[1], QISHAN_WGS[0], "WGS84"
    loc = norm.normalize("grid", rec)["location"]  # swapped lat/lon repaired
    assert (loc["lat"], loc["lon"]) == QISHAN_WGS


@pytest.mark.parametrize(
    "text, expected",
    [("2026-07-14T16:23:32", ms(2026, 7, 14, 16, 23, 32)),
     ("2026-07-14T16:23:32+08:00", ms(2026, 7, 14, 16, 23, 32)),
     ("2026-07-14T08:23:32Z", ms(2026, 7, 14, 16, 23, 32)),
     ("2026-07-14T16:23:32.250", ms(2026, 7, 14, 16, 23, 32) + 250),
     ("2026-07-14 16:23:32", ms(2026, 7, 14, 16, 23, 32)),
     ("2026/07/14", ms(2026, 7, 14)),
     ("2026/7/4 9:05:00", ms(2026, 7, 4, 9, 5)),
     ("2026-07-14", ms(2026, 7, 14)),
     ("20260714162332", ms(2026, 7, 14, 16, 23, 32)),
     ("２０２６-０７-１４", ms(2026, 7, 14)),
     ("2026年07月14日", ms(2026, 7, 14))],
)
def test_time_formats(text: str, expected: int) -> None:
    assert parse_local_time(text, SH) == expected


def test_time_other_zone() -> None:
    n = make_normalizer(timezone="UTC")
    rec = grid_record()
    assert n.normalize("grid", rec)["occurred_at"] == ms(2026, 7, 14, 17, 12)
