from __future__ import annotations

import pytest

from connectors.sources import camera
from connectors.sources.alarm110 import codes as alarm110_codes
from connectors.sources.gb28181 import codes as gb28181_codes
from connectors.sources.grid import codes as grid_codes
from connectors.sources.isapi import codes as isapi_codes
from connectors.sources.mediation import codes as mediation_codes
from streams.domain import kinds
from streams.domain.kinds import Classification

alarm110_kind = alarm110_codes.kind
camera_kind = camera.camera_kind
gb28181_event_type = gb28181_codes.event_type
grid_kind = grid_codes.kind
isapi_event_type = isapi_codes.event_type
mediation_kind = mediation_codes.kind


def door_kind() -> Classification:
    return kinds.default("person_sighting")


def test_tables_only_use_canonical_kinds_and_severities() -> None:
    tables = [camera.KIND, grid_codes.CATEGORY, alarm110_codes.CODE, alarm110_codes.CLASS]
    for table in tables:
        for c in table.values():
            assert c.kind in kinds.KINDS and 1 <= c.severity <= 4
    assert set(kinds.DEFAULT_SEVERITY) == set(kinds.KINDS)


def test_native_camera_tables_map_into_the_canonical_vocabulary() -> None:
    assert set(isapi_codes.EVENT_TYPES.values()) <= set(camera.EVENT_TYPES)
    assert set(gb28181_codes.ALARM_TYPES.values()) <= set(camera.EVENT_TYPES)
    assert {e for _, e in gb28181_codes.ALARM_METHODS.values()} <= set(camera.EVENT_TYPES)


@pytest.mark.parametrize(
    "method, atype, expected",
    [(5, 6, "intrusion"), (5, 5, "tripwire"), (5, 8, "loitering"), (5, 10, "density"),
     (2, 1, "video_loss"), (2, 2, "tamper"), (2, 4, "device_fault"), (1, None, "phone_alarm"),
     (3, None, "sms_alarm"), (6, 1, "device_fault"), (7, None, "other"), (None, None, "other")],
)
def test_gb28181_event_types(method: int | None, atype: int | None, expected: str) -> None:
    assert gb28181_event_type(method, atype) == expected


@pytest.mark.parametrize(
    "native, expected_type, expected_kind",
    [("ANPR", "anpr", "vehicle_sighting"), ("faceCapture", "face", "person_sighting"),
     ("faceSnap", "face", "person_sighting"), ("linedetection", "tripwire", "intrusion"),
     ("fielddetection", "intrusion", "intrusion"), ("videoloss", "video_loss", "device"),
     ("shelteralarm", "tamper", "device"), ("VMD", "vmd", "intrusion"),
     ("AccessControllerEvent", "access", "person_sighting"), ("somethingNew", "other", "other")],
)
def test_isapi_types(native: str, expected_type: str, expected_kind: str) -> None:
    et = isapi_event_type(native)
    assert et == expected_type
    assert camera_kind(et).kind == expected_kind


def test_camera_priority_sets_severity() -> None:
    assert camera_kind("intrusion", 1) == Classification("intrusion", 4)
    assert camera_kind("intrusion", 4) == Classification("intrusion", 1)
    assert camera_kind("intrusion") == Classification("intrusion", 3)
    assert camera_kind("nonsense").kind == "other"


@pytest.mark.parametrize(
    "code, name, desc, kind",
    [("0102", "邻里纠纷", None, "dispute"), ("0103", None, None, "dispute"), ("0199", None, None, "dispute"),
     ("0203", None, None, "public_order"), ("0401", "山洪泥石流", None, "disaster"),
     ("0701", None, None, "mass_gathering"), ("0101", "婚姻家庭", "丈夫家暴妻子", "domestic_violence"),
     ("99", "其他", "村口发生山体滑坡", "disaster"), (None, None, None, "other")],
)
def test_grid_categories(code: str | None, name: str | None, desc: str | None, kind: str) -> None:
    assert grid_kind(code, name, desc).kind == kind


@pytest.mark.parametrize(
    "bjlb, bjlx, bjxl, content, kind",
    [("200000", "200200", "200201", "邻居吵架", "dispute"),
     ("200000", "200600", None, "丈夫打人", "domestic_violence"),
     ("200000", "200200", None, "夫妻吵架，丈夫家暴", "domestic_violence"),
     ("100000", "100100", None, "有人持刀伤人", "criminal"),
     ("100000", None, None, "家中财物被盗", "theft"),
     ("100000", "100300", None, "", "theft"),
     ("300000", "300100", None, "两车相撞", "traffic"),
     ("400000", "400100", None, "民房起火", "fire"),
     ("400000", "400300", None, "有人落入岷江", "rescue"),
     ("500000", "500100", None, "老人晕倒", "medical"),
     ("500000", "500900", None, "钥匙丢失", "help"),
     ("700000", None, None, "村民聚集", "mass_gathering"),
     ("800000", "800100", None, "山洪", "disaster"),
     (None, None, None, "", "other"),
     ("abc", None, None, "", "other")],
)
def test_alarm110_codes(bjlb: str | None, bjlx: str | None, bjxl: str | None, content: str, kind: str) -> None:
    assert alarm110_kind(bjlb, bjlx, bjxl, content).kind == kind


def test_alarm110_most_specific_code_wins() -> None:
    # category says public order, subtype says domestic violence
    assert alarm110_kind("200000", "200100", "200601").kind == "domestic_violence"


def test_alarm110_level() -> None:
    assert alarm110_kind("200000", "200200", jqjb=1).severity == 4
    assert alarm110_kind("200000", "200200", jqjb=None).severity == 2
    assert alarm110_kind("200000", "200200", jqjb=9).severity == 2


def test_mediation_and_door() -> None:
    for t in ("婚姻家庭", "邻里", "房屋宅基地", "合同", "损害赔偿", "山林土地", "征地拆迁", "劳动争议", "物业"):
        assert mediation_kind(t).kind == "dispute"
    assert mediation_kind("家暴").kind == "domestic_violence"
    assert mediation_kind("婚姻家庭", "女方称长期遭受家庭暴力").kind == "domestic_violence"
    assert door_kind() == Classification("person_sighting", 1)
