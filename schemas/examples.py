"""One realistic, valid example record per schema (Wenchuan County), for docs and tests.

Contract: ``example(name)`` returns a *fresh* dict for a full or short schema name every call
(callers may mutate it); ``EXAMPLE_NAMES`` lists the full names covered (every current schema).
The identifiers are invented; ID numbers carry a valid GB 11643 check digit.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

# 2026-07-14T16:23:32+08:00 == 2026-07-14T08:23:32Z
T0 = 1784017412000
MIN = 60_000


def _party() -> dict[str, Any]:
    return {"role": "party", "name": "王德学", "id_number": "513221198703150016",
            "phone": "138 8123 5678", "address": "汶川县三江镇柒山村二组"}


def _camera() -> dict[str, Any]:
    return {
        "native_id": "51322110001320000123:17430:2026-07-14T16:23:32",
        "received_at": T0 + 900,
        "raw_format": "gb28181-xml",
        "source_system": "gb28181",
        "device_id": "51322110001320000123",
        "channel_id": None,
        "alarm_priority": 1,
        "alarm_method": 5,
        "alarm_type": 6,
        "alarm_event_type": 1,
        "event_type": "intrusion",
        "event_state": None,
        "occurred_at_local": "2026-07-14T16:23:32",
        "description": "岷江河堤区域入侵",
        "longitude": 103.5912,
        "latitude": 31.4788,
        "plate": None, "plate_color": None, "vehicle_type": None, "direction": None, "confidence": None,
        "person_name": None, "employee_no": None, "card_no": None, "quality": [],
    }


def _grid() -> dict[str, Any]:
    return {
        "native_id": "GR202607140031",
        "received_at": T0 + 2 * MIN,
        "raw_format": "grid-json",
        "report_id": "GR202607140031",
        "grid_code": "513221107201-03",
        "reporter_id": "WG-SJ-017",
        "category_code": "0203",
        "category_name": "邻里纠纷",
        "description": "柒山村二组王某与李某因宅基地边界争执，双方情绪激动",
        "address": "汶川县三江镇柒山村二组",
        "longitude": 103.3581,
        "latitude": 31.0932,
        "coord_system": "GCJ02",
        "persons": [_party(), {"role": "party", "name": "李春兰", "id_number": None,
                               "phone": "13990421188", "address": None}],
        "reported_at_local": "2026-07-14 16:25:40",
        "status": "submitted",
        "quality": [],
    }


def _alarm110() -> dict[str, Any]:
    return {
        "native_id": "J5132212026071400087",
        "received_at": T0 + 3 * MIN,
        "raw_format": "alarm110-db",
        "jjdbh": "J5132212026071400087",
        "gljjdbh": "J5132212026071400085",
        "xzqhbh": "513221",
        "bjsj_local": "2026-07-14 16:26:05",
        "caller_phone": "13881235678",
        "contact_phone": None,
        "caller_name": "王德学",
        "caller_id_number": "513221198703150016",
        "address": "三江镇柒山村二组",
        "content": "报警人称与邻居因宅基地发生纠纷，对方动手推搡",
        "bjlb": "200000",
        "bjlx": "200200",
        "bjxl": None,
        "jqjb": 2,
        "longitude": 103.3577,
        "latitude": 31.0935,
        "location_source": "auto",
        "coord_system": "WGS84",
        "quality": [],
    }


def _mediation() -> dict[str, Any]:
    return {
        "native_id": "汶三调〔2026〕第031号",
        "received_at": T0 + 6 * 24 * 60 * MIN,
        "raw_format": "mediation-csv",
        "case_no": "汶三调〔2026〕第031号",
        "workstation": "三江镇无忧法治苑",
        "accepted_date_local": "2026-07-20",
        "dispute_type": "房屋宅基地",
        "summary": "王某与李某宅基地边界纠纷，经现场测量后调解",
        "address": "汶川县三江镇柒山村二组",
        "admin_code": "513221107201",
        "parties": [_party(), {"role": "party", "name": "李春兰", "id_number": None,
                               "phone": "13990421188", "address": "汶川县三江镇柒山村二组"}],
        "mediator": "张玉芬",
        "outcome": "agreement",
        "result_text": "调解成功，双方签订协议，李某一次性补偿王某1500元",
        "compensation": 1500.0,
        "performance": "已履行",
        "judicial_confirmation": False,
        "quality": [_quality_flag()],
    }


def _door() -> dict[str, Any]:
    return {
        "native_id": "DR-WZ-JZY-01:20260714162811:1",
        "received_at": T0 + 5 * MIN,
        "raw_format": "isapi-access",
        "device_id": "DR-WZ-JZY-01",
        "community": "金竹苑",
        "door": "1栋单元门",
        "person_name": "王德学",
        "card_no": "3102847719",
        "employee_no": "JZY-1-302",
        "direction": "in",
        "occurred_at_local": "2026-07-14T16:28:11+08:00",
        "event_code": "5:75",
        "quality": [],
    }


def _quality_flag() -> dict[str, Any]:
    return {"field": "履行情况", "reason": "unknown performance wording '部分履行，余款年底前付清' (kept as written)",
            "value": "部分履行，余款年底前付清"}


def _location() -> dict[str, Any]:
    return {"lat": 31.0935, "lon": 103.3577, "accuracy_m": 30.0, "admin_code": "513221107201",
            "county_code": "513221", "town_code": "513221107", "village_code": "513221107201",
            "address": "汶川县三江镇柒山村二组", "geo_cell": "8840b6c2d1fffff"}


def _person_ref() -> dict[str, Any]:
    return {"role": "caller",
            "keys": ["id:3f1c9a0e5b7d24c8a6e0f1b2c3d4e5f6", "phone:9a8b7c6d5e4f30211b2c3d4e5f6a7b8c",
                     "name_village:0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"],
            "display_name": "王某学", "display_id": "5132**********0016", "display_phone": "138****5678"}


def _vehicle_ref() -> dict[str, Any]:
    return {"key": "plate:5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b", "display_plate": "川U·A1**5"}


def _refs() -> dict[str, Any]:
    return {"native_id": "J5132212026071400087", "related_ids": ["alarm110:J5132212026071400085"],
            "device_id": None, "raw_topic": "raw.alarm110.v1", "raw_partition": 1, "raw_offset": 4711}


def _event() -> dict[str, Any]:
    return {
        "event_id": "alarm110:J5132212026071400087",
        "source": "alarm110",
        "kind": "dispute",
        "severity": 2,
        "occurred_at": T0 + 153_000,
        "received_at": T0 + 3 * MIN,
        "location": _location(),
        "persons": [_person_ref()],
        "vehicles": [_vehicle_ref()],
        "text": "报警人称与邻居因宅基地发生纠纷,对方动手推搡",
        "text_original": "报警人称与邻居因宅基地发生纠纷，对方动手推搡",
        "refs": _refs(),
        "duplicate_of": None,
        "resolution": None,
        "quality": [{"field": "ZDDWJD", "reason": "longitude 1035.77 is outside -180..180", "value": None}],
    }


def _link() -> dict[str, Any]:
    return {"link_id": "4b1d7c2e9f0a3b5c6d7e", "event_a": "alarm110:J5132212026071400087",
            "event_b": "grid:GR202607140031", "score": 0.92,
            "reasons": ["同一身份证号密钥", "相距45米、间隔1分钟"], "rule": "alarm110-grid",
            "county_code": "513221", "created_at": T0 + 4 * MIN, "rules_version": "r3f9c0a1b22aa"}


def _summary() -> dict[str, Any]:
    return {"event_id": "alarm110:J5132212026071400087", "source": "alarm110", "kind": "dispute",
            "occurred_at": T0 + 153_000, "severity": 2, "text": "报警人称与邻居因宅基地发生纠纷,对方动手推搡",
            "lat": 31.0935, "lon": 103.3577, "admin_code": "513221107201", "persons": ["王某学"],
            "quality": [{"field": "JQJB", "reason": "JQJB is not an integer", "value": None}],
            "person_keys": ["id:3f1c9a0e5b7d24c8a6e0f1b2c3d4e5f6"], "vehicle_keys": []}


def _incident() -> dict[str, Any]:
    return {
        "incident_id": "inc-6a0f3e9b1c2d4e5f",
        "status": "open",
        "merged_into": None,
        "kind": "dispute",
        "severity": 2,
        "tier": "village",
        "admin_code": "513221107201",
        "county_code": "513221",
        "town_codes": ["513221107"],
        "village_codes": ["513221107201"],
        "first_seen": T0 + 2 * MIN,
        "last_seen": T0 + 153_000,
        "event_ids": ["alarm110:J5132212026071400087", "grid:GR202607140031"],
        "events": [_summary()],
        "links": [_link()],
        "person_keys": ["id:3f1c9a0e5b7d24c8a6e0f1b2c3d4e5f6"],
        "vehicle_keys": [],
        "merged_from": [],
        "event_count": 2,
        "link_count": 1,
        "version": 3,
        "updated_at": T0 + 4 * MIN,
        "actionable": True,
        "watch_hits": [],
        "escalated": False,
        "escalation_history": [],
        "opened_at": T0 + 2 * MIN,
        "deadline_at": T0 + 2 * MIN + 72 * 60 * MIN,
        "accepted_by": "village:513221107201",
        "assignee": None,
        "resolved_at": None,
        "outcome": None,
        "dispositions": [_disposition_summary()],
        "opening_at": T0 + 2 * MIN,
        "recurrence": None,
        "rules_version": "r3f9c0a1b22aa",
    }


def _disposition() -> dict[str, Any]:
    return {"disposition_id": "5d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c", "incident_id": "inc-6a0f3e9b1c2d4e5f",
            "anchor_event_id": "alarm110:J5132212026071400087", "county_code": "513221",
            "action": "accept", "actor": "village:513221107201", "actor_admin_code": "513221107201",
            "at": T0 + 3 * MIN, "assignee": None, "outcome": None, "note": "已电话联系当事人",
            "to_tier": None, "origin": "center", "request_id": "b7e2c9a4"}


def _disposition_summary() -> dict[str, Any]:
    d = _disposition()
    return {k: d[k] for k in ("disposition_id", "action", "actor", "actor_admin_code", "at", "assignee",
                              "outcome", "note", "to_tier", "origin")}


def _escalation_step() -> dict[str, Any]:
    return {"from_tier": "village", "to_tier": "town", "reason_code": "deadline",
            "reason": "村级72小时未办结，自动上报镇级", "at": T0 + 72 * 60 * MIN}


def _escalation() -> dict[str, Any]:
    return {"escalation_id": "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b",
            "incident_id": "inc-6a0f3e9b1c2d4e5f", "from_tier": "village", "to_tier": "town",
            "reason_code": "recurrence", "reason": "同一当事人7日内再次发生纠纷", "admin_code": "513221107",
            "at": T0 + 7 * 24 * 60 * MIN}


def _dead_letter() -> dict[str, Any]:
    return {"dead_letter_id": "0f4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2", "source": "camera",
            "stage": "translate", "topic": None, "partition": None, "offset": None,
            "error_class": "dead_letter", "error_type": "XMLSyntaxError",
            "reason": "mismatched tag: line 7, column 3",
            "raw": '<?xml version="1.0" encoding="GB2312"?><Notify><CmdType>Alarm'.encode("gb2312"),
            "content_type": "Application/MANSCDP+xml", "at": T0 + 1000, "redrive_of": None}


def _audit_anchor() -> dict[str, Any]:
    return {"log_id": "5f0c9e2a7b3d4e1f8a6b2c9d0e7f1a3b", "seq": 1200,
            "mac": "3b1f0c9e2a7d4e5f8a6b2c9d0e7f1a3b5c4d6e8f0a1b2c3d4e5f60718293a4b5",
            "anchored_at": T0 + 3 * 60 * MIN,
            "anchor_mac": "a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829"}


_BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "pingan.raw.Party": _party,
    "pingan.raw.CameraAlarm": _camera,
    "pingan.raw.GridReport": _grid,
    "pingan.raw.Alarm110": _alarm110,
    "pingan.raw.MediationCase": _mediation,
    "pingan.raw.DoorAccess": _door,
    "pingan.Location": _location,
    "pingan.PersonRef": _person_ref,
    "pingan.VehicleRef": _vehicle_ref,
    "pingan.Refs": _refs,
    "pingan.Event": _event,
    "pingan.Link": _link,
    "pingan.EventSummary": _summary,
    "pingan.Incident": _incident,
    "pingan.IncidentMember": lambda: {"event_id": "grid:GR-20240701-0001", "incident_id": "inc-6a0f3e9b1c2d4e5f",
                                      "county_code": "513221", "occurred_at": T0 + 2 * MIN, "rules_version": ""},
    "pingan.Escalation": _escalation,
    "pingan.Disposition": _disposition,
    "pingan.DispositionSummary": _disposition_summary,
    "pingan.EscalationStep": _escalation_step,
    "pingan.ClockTick": lambda: {"county_code": "513221", "now_ms": T0 + 10 * MIN, "worker": "worker-0"},
    "pingan.DeadLetter": _dead_letter,
    "pingan.QualityFlag": _quality_flag,
    "pingan.AuditAnchor": _audit_anchor,
    "pingan.SchemaEntry": lambda: {
        "fingerprint": "4a1e5c0d9b2f7e36", "fingerprint_long": int.from_bytes(bytes.fromhex("4a1e5c0d9b2f7e36"),
                                                                              "little", signed=True),
        "name": "pingan.ClockTick", "release": "v2",
        "schema": '{"type":"record","name":"ClockTick","namespace":"pingan","fields":[]}'},
}
EXAMPLE_NAMES: tuple[str, ...] = tuple(sorted(_BUILDERS))


def example(name: str) -> dict[str, Any]:
    """A fresh example record for a full (``pingan.Event``) or short (``Event``) name."""
    if name in _BUILDERS:
        return _BUILDERS[name]()
    for full, build in _BUILDERS.items():
        if full.rsplit(".", 1)[-1] == name:
            return build()
    raise KeyError(f"no example for {name!r}")
