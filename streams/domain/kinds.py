"""Source codes → canonical event kind and severity (1 low … 4 critical).

Contract: every function returns a `Classification(kind, severity)` with `kind` in `KINDS`
(contracts.md) and severity 1–4. Mapping tables are plain data:
- cameras: GB/T 28181 (AlarmMethod, AlarmType) and ISAPI eventType → the canonical camera
  `event_type` string (`gb28181_event_type`, `isapi_event_type`), and event_type → kind;
  GB AlarmPriority 1 (一级, most serious) … 4 gives severity 5 − priority.
- grid: category code (4-digit, then its 2-digit class), then keywords in name/description.
- 110: the most specific of BJXL, BJLX, BJLB that the table knows (exact code, then its
  4-digit group), else the 1-digit class of the most specific code; a criminal call whose code
  or text says 盗/偷/扒窃 is `theft`; JQJB 1 (most serious) … 4 gives severity 5 − JQJB.
- mediation: every dispute type is `dispute`; 家暴/家庭暴力 → `domestic_violence`.
- door access: `person_sighting`.
Keyword refinements (e.g. 家暴 in a dispute narrative) apply to text as well as names.
"""
from __future__ import annotations

from typing import NamedTuple

KINDS: tuple[str, ...] = (
    "dispute", "domestic_violence", "criminal", "theft", "public_order", "traffic", "fire",
    "rescue", "medical", "help", "mass_gathering", "disaster", "intrusion", "vehicle_sighting",
    "person_sighting", "device", "other",
)

DEFAULT_SEVERITY: dict[str, int] = {
    "dispute": 2, "domestic_violence": 3, "criminal": 3, "theft": 2, "public_order": 2,
    "traffic": 2, "fire": 4, "rescue": 4, "medical": 3, "help": 2, "mass_gathering": 4,
    "disaster": 4, "intrusion": 3, "vehicle_sighting": 1, "person_sighting": 1, "device": 1,
    "other": 1,
}


class Classification(NamedTuple):
    """A canonical kind and its severity (1 low … 4 critical)."""

    kind: str
    severity: int


# ---------------------------------------------------------------- cameras
CAMERA_EVENT_TYPES: tuple[str, ...] = (
    "manual", "moving_object", "left_object", "object_removed", "tripwire", "intrusion",
    "wrong_way", "loitering", "flow_count", "density", "video_anomaly", "fast_movement",
    "video_loss", "tamper", "device_fault", "phone_alarm", "sms_alarm", "gps_alarm", "other",
    "vmd", "face", "anpr", "access",
)

# GB/T 28181 AlarmMethod → event_type when the method alone decides it.
GB_METHOD_EVENT: dict[int, str] = {
    1: "phone_alarm", 3: "sms_alarm", 4: "gps_alarm", 6: "device_fault", 7: "other",
}
# (AlarmMethod, AlarmType) → event_type.
GB_METHOD_TYPE_EVENT: dict[tuple[int, int], str] = {
    (5, 1): "manual", (5, 2): "moving_object", (5, 3): "left_object", (5, 4): "object_removed",
    (5, 5): "tripwire", (5, 6): "intrusion", (5, 7): "wrong_way", (5, 8): "loitering",
    (5, 9): "flow_count", (5, 10): "density", (5, 11): "video_anomaly", (5, 12): "fast_movement",
    (2, 1): "video_loss", (2, 2): "tamper", (2, 3): "device_fault", (2, 4): "device_fault",
    (2, 5): "device_fault",
}
# Fallback when the AlarmType is missing or unknown.
GB_METHOD_DEFAULT_EVENT: dict[int, str] = {5: "video_anomaly", 2: "device_fault"}

# ISAPI eventType (lower-cased) → event_type.
ISAPI_EVENT: dict[str, str] = {
    "vmd": "vmd", "motiondetection": "vmd",
    "linedetection": "tripwire", "fielddetection": "intrusion",
    "regionentrance": "intrusion", "regionexiting": "intrusion",
    "loitering": "loitering", "unattendedbaggage": "left_object", "attendedbaggage": "object_removed",
    "facecapture": "face", "facesnap": "face", "facedetection": "face",
    "anpr": "anpr", "vehicledetection": "anpr",
    "accesscontrollerevent": "access",
    "videoloss": "video_loss", "shelteralarm": "tamper", "tamperdetection": "tamper",
    "hdderror": "device_fault", "hddfull": "device_fault", "diskfull": "device_fault",
    "peoplegathering": "density", "crowddetection": "density",
}

CAMERA_KIND: dict[str, Classification] = {
    "manual": Classification("help", 3),
    "moving_object": Classification("intrusion", 1),
    "vmd": Classification("intrusion", 1),
    "left_object": Classification("public_order", 2),
    "object_removed": Classification("theft", 2),
    "tripwire": Classification("intrusion", 3),
    "intrusion": Classification("intrusion", 3),
    "wrong_way": Classification("traffic", 2),
    "loitering": Classification("intrusion", 2),
    "flow_count": Classification("mass_gathering", 1),
    "density": Classification("mass_gathering", 3),
    "video_anomaly": Classification("device", 1),
    "fast_movement": Classification("public_order", 2),
    "video_loss": Classification("device", 1),
    "tamper": Classification("device", 2),
    "device_fault": Classification("device", 1),
    "phone_alarm": Classification("help", 3),
    "sms_alarm": Classification("help", 3),
    "gps_alarm": Classification("other", 2),
    "other": Classification("other", 1),
    "face": Classification("person_sighting", 1),
    "anpr": Classification("vehicle_sighting", 1),
    "access": Classification("person_sighting", 1),
}

# ---------------------------------------------------------------- grid (local 网格事件分类)
GRID_CATEGORY: dict[str, Classification] = {
    "0101": Classification("dispute", 2),           # 婚姻家庭
    "0102": Classification("dispute", 2),           # 邻里纠纷
    "0103": Classification("dispute", 2),           # 房屋宅基地/拆迁
    "0104": Classification("dispute", 2),           # 山林土地
    "0105": Classification("dispute", 2),           # 劳动争议
    "01": Classification("dispute", 2),             # 矛盾纠纷
    "02": Classification("public_order", 2),        # 治安隐患
    "03": Classification("fire", 2),                # 安全生产/消防 (a hazard, not a fire)
    "0401": Classification("disaster", 3),          # 山洪泥石流
    "0402": Classification("disaster", 3),          # 地质灾害
    "04": Classification("disaster", 3),            # 自然灾害
    "0501": Classification("help", 2),              # 求助/就医
    "05": Classification("help", 1),                # 民生服务
    "06": Classification("public_order", 2),        # 特殊人群
    "07": Classification("mass_gathering", 3),      # 群体性事件
    "99": Classification("other", 1),               # 其他
}

# ---------------------------------------------------------------- 110 (BJLB/BJLX/BJXL)
ALARM110_CODE: dict[str, Classification] = {
    # exact code or 4-digit group (code[:4]); looked up most specific first
    "2002": Classification("dispute", 2),
    "2006": Classification("domestic_violence", 3),
    "1003": Classification("theft", 2),             # 盗窃 group (local code table)
    "4003": Classification("rescue", 4),            # 人员落水
    "5001": Classification("medical", 3),
}
ALARM110_CLASS: dict[str, Classification] = {
    "1": Classification("criminal", 3),
    "2": Classification("public_order", 2),
    "3": Classification("traffic", 2),
    "4": Classification("fire", 4),
    "5": Classification("help", 2),
    "7": Classification("mass_gathering", 4),
    "8": Classification("disaster", 4),
}

# ---------------------------------------------------------------- keyword refinements
# (applies to kinds, keywords, result): the first matching row wins.
KEYWORD_REFINEMENTS: tuple[tuple[frozenset[str], tuple[str, ...], Classification], ...] = (
    (frozenset({"dispute", "public_order", "criminal", "help", "other"}),
     ("家暴", "家庭暴力"), Classification("domestic_violence", 3)),
    (frozenset({"criminal"}), ("盗", "偷", "扒窃"), Classification("theft", 2)),
    (frozenset({"fire", "help", "other"}), ("落水", "溺水", "被困", "坠崖", "走失"), Classification("rescue", 4)),
)

# Keywords for grid categories the table does not know (name or description).
GRID_KEYWORDS: tuple[tuple[tuple[str, ...], Classification], ...] = (
    (("家暴", "家庭暴力"), Classification("domestic_violence", 3)),
    (("纠纷", "矛盾", "争执", "调解"), Classification("dispute", 2)),
    (("盗", "偷"), Classification("theft", 2)),
    (("山洪", "泥石流", "滑坡", "洪水", "塌方", "地质灾害"), Classification("disaster", 3)),
    (("火灾", "起火", "消防"), Classification("fire", 2)),
    (("聚集", "上访", "群体"), Classification("mass_gathering", 3)),
)

MEDIATION_KEYWORDS: tuple[tuple[tuple[str, ...], Classification], ...] = (
    (("家暴", "家庭暴力"), Classification("domestic_violence", 3)),
)


def _refine(c: Classification, *texts: str | None) -> Classification:
    blob = " ".join(t for t in texts if t)
    if not blob:
        return c
    for kinds, words, result in KEYWORD_REFINEMENTS:
        if c.kind in kinds and any(w in blob for w in words):
            return result
    return c


def _with_level(c: Classification, level: int | None) -> Classification:
    """Apply a source level where 1 is the most serious (GB AlarmPriority, 110 JQJB)."""
    if level is not None and 1 <= int(level) <= 4:
        return Classification(c.kind, 5 - int(level))
    return c


def gb28181_event_type(alarm_method: int | None, alarm_type: int | None) -> str:
    """Canonical camera event_type for a GB/T 28181 AlarmMethod/AlarmType pair."""
    if alarm_method is None:
        return "other"
    if alarm_type is not None and (alarm_method, alarm_type) in GB_METHOD_TYPE_EVENT:
        return GB_METHOD_TYPE_EVENT[(alarm_method, alarm_type)]
    return GB_METHOD_EVENT.get(alarm_method) or GB_METHOD_DEFAULT_EVENT.get(alarm_method, "other")


def isapi_event_type(event_type: str | None) -> str:
    """Canonical camera event_type for an ISAPI eventType (case-insensitive)."""
    return ISAPI_EVENT.get((event_type or "").strip().lower(), "other")


def camera_kind(event_type: str | None, alarm_priority: int | None = None) -> Classification:
    """Kind/severity of a camera event from its canonical event_type (and GB AlarmPriority)."""
    c = CAMERA_KIND.get((event_type or "").strip().lower(), CAMERA_KIND["other"])
    return _with_level(c, alarm_priority)


def grid_kind(category_code: str | None, category_name: str | None = None,
              description: str | None = None) -> Classification:
    """Kind/severity of a grid report from its category code, then keywords."""
    code = (category_code or "").strip()
    c = GRID_CATEGORY.get(code) or GRID_CATEGORY.get(code[:2]) if code else None
    if c is None or c.kind == "other":
        for words, result in GRID_KEYWORDS:
            if any(w in (category_name or "") or w in (description or "") for w in words):
                c = result
                break
    return _refine(c or Classification("other", 1), category_name, description)


def _alarm110_code(code: str | None) -> str | None:
    s = (code or "").strip()
    return s if len(s) == 6 and s.isdigit() else None


def alarm110_kind(bjlb: str | None, bjlx: str | None = None, bjxl: str | None = None,
                  content: str | None = None, jqjb: int | None = None) -> Classification:
    """Kind/severity of a 110 call from its most specific known category code, text and JQJB."""
    codes = [c for c in (_alarm110_code(bjxl), _alarm110_code(bjlx), _alarm110_code(bjlb)) if c]
    found: Classification | None = None
    for code in codes:
        found = ALARM110_CODE.get(code) or ALARM110_CODE.get(code[:4])
        if found:
            break
    if found is None:
        found = ALARM110_CLASS.get(codes[0][0]) if codes else None
    return _with_level(_refine(found or Classification("other", 1), content), jqjb)


def mediation_kind(dispute_type: str | None, summary: str | None = None) -> Classification:
    """Mediation cases are disputes; 家暴 in the type or summary makes it domestic violence."""
    for words, result in MEDIATION_KEYWORDS:
        if any(w in (dispute_type or "") or w in (summary or "") for w in words):
            return result
    return Classification("dispute", DEFAULT_SEVERITY["dispute"])


def door_kind() -> Classification:
    """Door access is a person sighting."""
    return Classification("person_sighting", DEFAULT_SEVERITY["person_sighting"])
