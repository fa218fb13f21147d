"""Ground-truth scenarios and the background day model.

Every event is built with its final native payload (noise decided here, from seeded
`random.Random` instances), so rendering is pure and duplicates are byte-identical.
"""
from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from streams.domain import gazetteer as gz

from .model import (
    COMMUNITIES, Counters, Device, GridWorker, Person, SimEvent, World, make_person, offset_m, poisson,
)
from .noise import (
    PHONE_STYLES, NoiseRates, TextNoise, format_phone, haversine_m, id_to_legacy15, id_wrong_check, noisy_id, noisy_text,
    to_fullwidth,
    wgs84_to_bd09, wgs84_to_gcj02,
)

DAY = 86400
# background volumes per day at scale 1
DAILY = {"gb28181": 220.0, "isapi": 280.0, "grid": 5.0, "alarm110": 30.0, "door": 320.0}
HUMAN_HOURS = (1, 1, 0.6, 0.4, 0.4, 0.6, 1.5, 3, 5, 6, 6, 5.5, 5, 5, 5.5, 6, 6, 5.5, 5, 5, 4.5, 3.5, 2.5, 1.5)
CAMERA_HOURS = (4, 4, 3.5, 3.5, 3.5, 3.5, 4, 4.5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 4.5, 4.5)
DOOR_HOURS = (0.5, 0.3, 0.2, 0.2, 0.3, 1, 4, 8, 7, 4, 3, 4, 6, 4, 3, 3, 4, 6, 8, 6, 5, 4, 2, 1)

GRID_CATS: dict[str, tuple[str, str, int]] = {  # code: (name, kind, background weight)
    "0101": ("婚姻家庭", "dispute", 10), "0102": ("邻里纠纷", "dispute", 18), "0103": ("房屋宅基地/拆迁", "dispute", 8),
    "0104": ("山林土地", "dispute", 8), "0105": ("劳动争议", "dispute", 5), "0201": ("治安隐患", "public_order", 10),
    "0301": ("安全生产/消防", "fire", 10), "0401": ("山洪泥石流", "disaster", 1), "0402": ("地质灾害", "disaster", 4),
    "0501": ("求助/就医", "medical", 8), "0502": ("民生服务", "help", 5), "0601": ("特殊人群", "other", 6),
    "0701": ("群体性事件", "mass_gathering", 0), "9901": ("其他", "other", 7),
}
GRID_TEXT: dict[str, tuple[str, ...]] = {
    "0101": ("{place}村民{a}与妻子{b}因家庭琐事多次争吵，近日矛盾升级，网格员上门了解情况并劝解。",
             "{a}反映其儿子{b}长期不赡养老人，双方关系紧张，网格员已联系村委会协调。"),
    "0102": ("{place}{a}与邻居{b}因排水沟堵塞、污水流入对方院坝发生口角，网格员到场劝解，双方暂时平息。",
             "{a}反映邻居{b}家养的狗多次咬死其家禽，双方协商未果。"),
    "0103": ("{place}{a}与{b}因宅基地界址不清、新建房屋占用通道发生纠纷，需进一步调处。",),
    "0104": ("{place}{a}与{b}因承包林地边界及核桃树归属发生争执。", "{a}与{b}因土地流转租金支付问题产生矛盾。"),
    "0105": ("{place}务工人员{a}等{n}人反映包工头{b}拖欠工资约{m}元。",),
    "0201": ("{place}一出租屋人员流动频繁，疑似存在治安隐患，网格员已登记并上报派出所。",
             "{place}路段夜间路灯损坏多日，存在治安隐患。"),
    "0301": ("{place}一沿街商铺私拉乱接电线、楼道堆放杂物堵塞消防通道，已督促整改。",
             "{place}农家乐厨房液化气罐存放不规范，已现场告知整改。"),
    "0401": ("{place}沟道水位上涨，网格员已组织沿河住户转移。",),
    "0402": ("{place}后山出现裂缝，雨后有小规模落石，已设置警示标志并上报。",),
    "0501": ("{place}独居老人{a}突发疾病，网格员协助送医。",),
    "0502": ("{place}村民{a}咨询低保及医保缴费事宜，网格员协助办理。",),
    "0601": ("{place}社区矫正对象{a}按时报到，近期表现稳定，网格员走访。",),
    "9901": ("{place}路面破损积水，影响群众出行。", "{place}垃圾清运不及时，群众反映强烈。"),
}
# (BJLB, BJLX, BJXL, kind, weight, templates)
ALARM_CATS: tuple[tuple[str, str, str, str, int, tuple[str, ...]], ...] = (
    ("200000", "200200", "200201", "dispute", 18, ("报警人称与邻居{b}因{reason}发生纠纷，要求民警到场处理。",)),
    ("200000", "200600", "200601", "domestic_violence", 5, ("报警人称被丈夫殴打，现在{addr}，要求出警。",)),
    ("200000", "200100", "200101", "public_order", 12, ("报警人称{addr}附近有人酒后打架，有人受轻伤。",)),
    ("100000", "100200", "100201", "theft", 10, ("报警人称其停放在{addr}的电瓶车被盗。", "报警人称家中现金被盗约{m}元。")),
    ("100000", "100300", "100301", "criminal", 6, ("报警人称接到冒充公检法的电话，被骗{m}元。",)),
    ("300000", "300100", "300101", "traffic", 18, ("报警人称在G213国道{place}路段发生两车追尾事故，无人员受伤。",
                                                  "报警人称{addr}有一辆货车侧翻，占用车道。")),
    ("400000", "400100", "400101", "fire", 4, ("报警人称{addr}有柴草堆起火。",)),
    ("400000", "400200", "400201", "rescue", 3, ("报警人称有游客在{place}后山迷路，天色已晚。",)),
    ("500000", "500300", "500301", "help", 14, ("报警人称其老人走失，身穿蓝色外套，最后出现在{addr}。",
                                               "报警人称钥匙锁在车内，需要帮助。")),
    ("500000", "500100", "500101", "medical", 10, ("报警人称家中老人突发疾病，需要帮助送医。",)),
)
REASONS = ("排水沟", "占道堆放杂物", "噪音扰民", "停车位", "宅基地边界", "借款", "果树遮挡采光")
MEDIATION_TYPES = ("婚姻家庭", "邻里", "房屋宅基地", "合同", "损害赔偿", "山林土地", "征地拆迁", "劳动争议", "物业")
MEDIATORS = ("刘德明", "杨春华", "王秀芳", "陈国强", "何玉兰", "苟建平", "余志华")
GB_VIDEO = {2: ("移动侦测报警", "intrusion", 40), 6: ("区域入侵", "intrusion", 20), 5: ("绊线入侵", "intrusion", 10),
            8: ("徘徊检测", "intrusion", 5), 3: ("物品遗留", "other", 3), 11: ("视频异常", "device", 5)}
GB_DEVICE = {1: ("视频丢失", "device", 8), 2: ("视频遮挡", "device", 4)}
GB_FAULT = {1: ("存储空间满", "device", 3), 2: ("硬盘故障", "device", 2)}
ISAPI_TYPES = (("VMD", "intrusion", 35, "Motion alarm"), ("linedetection", "intrusion", 10, "Line Crossing"),
               ("fielddetection", "intrusion", 10, "Intrusion"), ("faceCapture", "person_sighting", 15, "faceCapture"),
               ("ANPR", "vehicle_sighting", 25, "ANPR"), ("shelteralarm", "device", 2, "Shelter Alarm"),
               ("videoloss", "device", 3, "videoloss alarm"))
NAMESPACES = ("http://www.hikvision.com/ver10/XMLSchema", "http://www.hikvision.com/ver20/XMLSchema",
              "http://www.isapi.org/ver20/XMLSchema", "")
_PLATE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


#: Grid reports the grid worker settles and re-sends with a final status: kind → (share, status,
#: hours after the first delivery (min, max)). Decided from the report id (not the run's random
#: stream), so adding follow-ups changed no other simulated event.
GRID_FOLLOWUPS: dict[str, tuple[float, str, tuple[int, int]]] = {
    "dispute": (0.6, "已化解", (4, 72)),
    "help": (0.75, "已办结", (1, 24)),
}


def grid_followup(report_id: str, kind: str) -> tuple[int, tuple[tuple[str, str], ...]] | None:
    """The follow-up delivery of a grid report, if its worker settles it: (delay s, status change)."""
    rule = GRID_FOLLOWUPS.get(kind)
    if rule is None:
        return None
    share, status, (lo, hi) = rule
    h = int.from_bytes(hashlib.sha1(f"followup|{report_id}".encode()).digest()[:8], "big")
    if (h % 10_000) / 10_000 >= share:
        return None
    hours = lo + (h // 10_000) % (hi - lo + 1)
    minutes = (h // 1_000_000) % 60
    return hours * 3600 + minutes * 60, (("status", status),)


def gb_time(w: World, t: int) -> str:
    """GB/T 28181 local time text."""
    return w.at(t).strftime("%Y-%m-%dT%H:%M:%S")


def iso_time(w: World, t: int) -> str:
    """ISAPI time text with offset."""
    return w.at(t).strftime("%Y-%m-%dT%H:%M:%S+08:00")


def sql_time(w: World, t: int) -> str:
    """'YYYY-MM-DD HH:MM:SS' local."""
    return w.at(t).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Builder:
    """Builds events with final payloads; holds the run's counters and noise settings."""

    world: World
    counters: Counters = field(default_factory=Counters)
    rates: NoiseRates = field(default_factory=NoiseRates)
    text: TextNoise = field(default_factory=TextNoise)
    loop_tag: str = ""

    # ---- delivery ------------------------------------------------------------------------
    def _delivery(self, rng: random.Random, feed: str, late: bool | None = None,
                  dup: bool | None = None) -> tuple[int, bool, int | None]:
        base = {"gb28181": (0, 3), "isapi": (0, 2), "grid": (5, 180), "alarm110": (60, 900), "door": (0, 2),
                "mediation": (0, 0)}[feed]
        delay = rng.randint(*base)
        is_late = rng.random() < self.rates.late if late is None else late
        if is_late:
            delay += rng.randint(600, 7200)
        can_dup = feed in ("gb28181", "isapi", "grid", "door")
        is_dup = (rng.random() < self.rates.duplicate if dup is None else dup) and can_dup
        return delay, is_late, (rng.randint(1, 30) if is_dup else None)

    def _event(self, rng: random.Random, feed: str, t: int, native_id: str, kind: str, scenario: str,
               incident: str | None, persons: tuple[str, ...], payload: dict[str, Any], form: str,
               vehicles: tuple[str, ...] = (), late: bool | None = None, dup: bool | None = None) -> SimEvent:
        delay, is_late, dup_delay = self._delivery(rng, feed, late, dup)
        if incident is None:
            incident = f"bg-{self.loop_tag}{self.counters.next('bg_incident'):07d}"
        return SimEvent(feed, t, native_id, kind, scenario, incident, persons, payload, form, delay, is_late,
                        dup_delay, vehicles)

    # ---- cameras ---------------------------------------------------------------------------
    def gb(self, rng: random.Random, dev: Device, t: int, method: int, atype: int, desc: str, kind: str, *,
           scenario: str = "background", incident: str | None = None, priority: int = 3,
           event_type: int | None = None, late: bool | None = None, dup: bool | None = None) -> SimEvent:
        """A GB/T 28181 alarm Notify."""
        sn = str(self.counters.next("sn"))
        at = gb_time(self.world, t)
        payload = {"SN": sn, "DeviceID": dev.device_id, "AlarmPriority": str(priority),
                   "AlarmMethod": str(method), "AlarmTime": at, "AlarmDescription": desc,
                   "Longitude": f"{dev.lon:.6f}", "Latitude": f"{dev.lat:.6f}", "AlarmType": str(atype),
                   "EventType": None if event_type is None else str(event_type)}
        form = "gb2312" if int(dev.device_id[-4:]) % 3 else "utf-8"
        return self._event(rng, "gb28181", t, f"{dev.device_id}:{sn}:{at}", kind, scenario, incident, (),
                           payload, form, late=late, dup=dup)

    def isapi(self, rng: random.Random, dev: Device, t: int, event_type: str, kind: str, desc: str, *,
              scenario: str = "background", incident: str | None = None, anpr: dict[str, str] | None = None,
              state: str = "active", post_count: int = 1, form: str | None = None,
              late: bool | None = None, dup: bool | None = None) -> SimEvent:
        """A Hikvision EventNotificationAlert push."""
        serial = int(dev.device_id[-7:])
        dt = iso_time(self.world, t)
        channel = "1" if "anpr" in dev.tags else str(1 + serial % 2)
        payload: dict[str, Any] = {
            "ipAddress": dev.ip, "portNo": 80, "protocol": "HTTP", "macAddress": dev.mac, "channelID": channel,
            "dateTime": dt, "activePostCount": post_count, "eventType": event_type, "eventState": state,
            "eventDescription": desc, "ns": NAMESPACES[serial % 4],
        }
        if anpr is not None:
            payload["ANPR"] = anpr
        if form is None:
            if event_type in ("ANPR", "faceCapture"):
                form = "multipart" if serial % 4 else "xml"
            else:
                form = ("xml", "json", "multipart")[serial % 3]
        vehicles = (anpr["licensePlate"],) if anpr else ()
        return self._event(rng, "isapi", t, f"{dev.device_id}:{channel}:{dt}:{event_type}", kind, scenario,
                           incident, (), payload, form, vehicles, late=late, dup=dup)

    # ---- people-facing sources -----------------------------------------------------------------
    def party(self, rng: random.Random, p: Person, role: str, *, id_mode: str | None = None,
              phone_style: str | None = None, with_address: bool = False) -> dict[str, str]:
        """A party entry with noisy identifiers (id_mode: full/missing/legacy15/wrong/lower/noisy)."""
        idn = self.id_text(rng, p, id_mode)
        phone = format_phone(p.phone, phone_style or rng.choice(PHONE_STYLES))
        d = {"role": role, "name": p.name, "idCard": idn, "phone": phone}
        if with_address:
            d["address"] = p.address
        return d

    def id_text(self, rng: random.Random, p: Person, mode: str | None) -> str:
        """The ID number as recorded."""
        if mode is None or mode == "noisy":
            return noisy_id(rng, p.id_number, self.rates)
        return {"full": p.id_number, "missing": "", "legacy15": id_to_legacy15(p.id_number),
                "wrong": id_wrong_check(p.id_number), "lower": p.id_number.lower()}[mode]

    def grid(self, rng: random.Random, worker: GridWorker, t: int, cat: str, desc: str, address: str,
             lat: float, lon: float, parties: list[dict[str, str]], persons: tuple[str, ...], *,
             scenario: str = "background", incident: str | None = None, coord: str | None = None,
             late: bool | None = None, dup: bool | None = None, status: str = "reported") -> SimEvent:
        """A grid-app report; coordinates converted from true WGS-84 to the app's system."""
        n = self.counters.next("grid")
        rid = f"WG{self.world.at(t):%Y%m%d}{self.loop_tag}{n:06d}"
        if coord is None:
            coord = rng.choices(("gcj02", "", "bd09", "wgs84"), (50, 20, 15, 15))[0]
        if coord in ("gcj02", ""):
            la, lo = wgs84_to_gcj02(lat, lon)
        elif coord == "bd09":
            la, lo = wgs84_to_bd09(lat, lon)
        else:
            la, lo = lat, lon
        loc: dict[str, Any] = {"lng": round(lo, 6), "lat": round(la, 6)}
        if coord:
            loc["coordType"] = coord
        name, kind, _w = GRID_CATS[cat]
        followup = grid_followup(rid, kind) if status == "reported" else None
        payload = {"reportId": rid, "gridCode": worker.grid_code, "reporterId": worker.worker_id,
                   "category": {"code": cat, "name": name}, "description": desc, "address": address,
                   "location": loc, "persons": parties, "reportTime": sql_time(self.world, t), "status": status}
        ev = self._event(rng, "grid", t, rid, kind, scenario, incident, persons, payload, "json",
                         late=late, dup=dup)
        return replace(ev, followup=followup) if followup else ev

    def jjdbh(self, t: int) -> str:
        """A fresh call-sheet number."""
        return f"J513221{self.world.at(t):%Y%m%d}{self.loop_tag}{self.counters.next('jjd'):05d}"

    def alarm110(self, rng: random.Random, t: int, cat: tuple[str, str, str], kind: str, text: str,
                 caller: Person | None, address: str, lat: float, lon: float, persons: tuple[str, ...], *,
                 scenario: str = "background", incident: str | None = None, jjdbh: str | None = None,
                 related: str = "", level: int = 3, xzqh: str = "513221", id_mode: str | None = None,
                 phone_style: str | None = None, late: bool | None = None) -> SimEvent:
        """A 110 call sheet (JJD row)."""
        no = jjdbh or self.jjdbh(t)
        delay, is_late, _ = self._delivery(rng, "alarm110", late, False)
        zd = offset_m(lat, lon, rng.gauss(0, 150), rng.gauss(0, 150))
        manual = rng.random() < 0.4
        phone = format_phone(caller.phone, phone_style or rng.choice(PHONE_STYLES)) if caller else ""
        row = {
            "JJDBH": no, "GLJJDBH": related, "XZQHBH": xzqh, "BJSJ": sql_time(self.world, t),
            "BJDH": phone, "LXDH": phone if rng.random() < 0.5 else (format_phone(caller.phone, "plain") if caller else ""),
            "BJRXM": caller.name if caller else "", "S_IDENTITYCARDNO": self.id_text(rng, caller, id_mode) if caller else "",
            "SFDZ": address, "BJNR": text, "BJLB": cat[0], "BJLX": cat[1], "BJXL": cat[2], "JQJB": str(level),
            "ZDDWJD": f"{zd[1]:.6f}", "ZDDWWD": f"{zd[0]:.6f}",
            "SDDWJD": f"{lon:.6f}" if manual else "", "SDDWWD": f"{lat:.6f}" if manual else "",
            "GXSJ": sql_time(self.world, t + delay),
        }
        if incident is None:
            incident = f"bg-{self.loop_tag}{self.counters.next('bg_incident'):07d}"
        return SimEvent("alarm110", t, no, kind, scenario, incident, persons, row, "row", delay, is_late)

    def mediation(self, rng: random.Random, t: int, town: str, dtype: str, summary: str, address: str,
                  admin: str, parties: list[dict[str, str]], persons: tuple[str, ...], *, scenario: str = "background",
                  incident: str | None = None, workstation: str | None = None, result: str = "调解成功",
                  amount: str = "", form: str | None = None) -> SimEvent:
        """A mediation case (one export row per party)."""
        no = f"TJ{town}{self.world.at(t):%Y}{self.loop_tag}{self.counters.next('case'):04d}"
        tname = gz.name_of(town) or ""
        date = self.world.at(t)
        case = {"案件编号": no, "调解组织": workstation or f"{tname}人民调解委员会",
                "受理日期": date.strftime("%Y-%m-%d") if rng.random() < 0.6 else date.strftime("%Y/%m/%d"),
                "纠纷类型": dtype, "纠纷简要情况": summary, "纠纷发生地": address, "行政区划代码": admin,
                "parties": parties, "调解员": rng.choice(MEDIATORS), "调解结果": result, "协议金额": amount,
                "履行情况": "已履行" if result == "调解成功" else "", "司法确认": "是" if amount else "否"}
        f = form or ("gbk", "xlsx", "csv")[self.counters.case % 3]
        ev = self._event(rng, "mediation", t, no, "dispute", scenario, incident, persons, case, f, late=False,
                         dup=False)
        end_of_day = (t // DAY) * DAY + 21 * 3600 + rng.randint(0, 3600)
        return replace(ev, delay=max(0, end_of_day - t))

    def door(self, rng: random.Random, dev: Device, t: int, person: Person, direction: str, *,
             scenario: str = "background", incident: str | None = None) -> SimEvent:
        """A door pass, ISAPI AccessControllerEvent or GA/T 1400 record depending on the device."""
        # native ids as docs/contracts.md (DoorAccess) defines them: the source's own record identity,
        # which every re-delivery of the same pass carries unchanged
        if dev.protocol == "isapi":
            dt = iso_time(self.world, t)
            serial = self.counters.next("door_serial")
            payload: dict[str, Any] = {
                "ipAddress": dev.ip, "macAddress": dev.mac, "dateTime": dt, "eventType": "AccessControllerEvent",
                "eventState": "active", "AccessControllerEvent": {
                    "deviceName": dev.name, "majorEventType": 5, "subEventType": 75, "name": person.name,
                    "employeeNoString": person.pid[1:], "cardNo": person.card_no, "doorNo": 1,
                    "serialNo": serial, "attendanceStatus": "checkIn" if direction == "in" else "checkOut"}}
            native = f"{dev.device_id}:{dt}:{serial}"
            form = "isapi"
        else:
            pt = self.world.at(t).strftime("%Y%m%d%H%M%S")
            native = f"{dev.device_id}{pt}{self.loop_tag}{self.counters.next('order') % 10000:04d}"
            payload = {"RecordID": native,
                       "DeviceID": dev.device_id, "CommunityName": dev.community, "DoorName": dev.door,
                       "PersonName": person.name, "CardNo": person.card_no, "Direction": 1 if direction == "in" else 2,
                       "PassTime": pt}
            form = "gat1400"
        return self._event(rng, "door", t, native, "person_sighting", scenario, incident, (person.pid,), payload,
                           form)

    def next_person(self) -> Person:
        """The next background person (common names come first)."""
        pool = self.world.bg_people
        p = pool[self.counters.person % len(pool)]
        self.counters.person += 1
        return p


def _plate(rng: random.Random, prefix: str = "川U") -> str:
    return prefix + rng.choice("ABCDEFGH") + "".join(rng.choice(_PLATE_CHARS) for _ in range(4))


def _place_label(code: str) -> str:
    p = gz.place(code)
    if p is None:
        return gz.COUNTY_NAME
    if len(code) == 12:
        t = gz.place(p.parent)
        return f"{t.name if t else ''}{p.name}"
    return p.name


def _worker_for(w: World, admin: str, rng: random.Random) -> GridWorker:
    ws = w.workers_by_admin.get(admin) or w.workers_by_admin.get(admin[:9]) or w.workers
    return rng.choice(ws)


# ============================================================================================
# Ground-truth scenarios
# ============================================================================================

@dataclass(frozen=True)
class Footprint:
    """The space-time footprint of an area scenario (a flood): background camera alarms inside it
    belong to the scenario's incident in the ground truth.

    A background generator places alarms independently of the scenarios, so some land on the
    flooded river bank while the flood is being reported - on the very cameras the flood trips.
    Nothing distinguishes them from the flood's own alarms, and a governance center wants them on
    the flood incident (water, debris and evacuees trip motion detection; power cuts drop video),
    so the truth says so: an alarm of one of ``kinds`` from a camera within ``radius_m`` of one of
    the scenario's reports and within ``gap_s`` of it is the scenario's.
    """

    incident: str
    scenario: str
    reports: tuple[tuple[float, float, int], ...]   # (lat, lon, t) of the scenario's reports
    radius_m: float
    gap_s: int
    kinds: frozenset[str]

    def covers(self, lat: float, lon: float, t: int) -> bool:
        """Whether a point at time t lies inside the footprint."""
        return any(abs(t - rt) <= self.gap_s and haversine_m(lat, lon, rl, ro) <= self.radius_m
                   for rl, ro, rt in self.reports)


@dataclass
class ScenarioSet:
    """Scenario events (sorted by time), the persons they introduce and area footprints."""

    events: list[SimEvent]
    persons: dict[str, Person]
    footprints: list[Footprint] = field(default_factory=list)


CAMERA_FEEDS = ("gb28181", "isapi")


def absorb(ev: SimEvent, footprints: list[Footprint], devices: dict[str, Device]) -> SimEvent:
    """A background camera alarm inside a scenario footprint, relabelled to that scenario."""
    if ev.scenario != "background" or ev.feed not in CAMERA_FEEDS or not footprints:
        return ev
    dev = devices.get(ev.native_id.split(":", 1)[0])
    if dev is None:
        return ev
    for fp in footprints:
        if ev.kind in fp.kinds and fp.covers(dev.lat, dev.lon, ev.t):
            return replace(ev, scenario=fp.scenario, incident=fp.incident)
    return ev


def build_scenarios(b: Builder) -> ScenarioSet:
    """The six ground-truth scenarios of DESIGN.md and the issue."""
    w = b.world
    rng = random.Random(f"scenarios:{w.seed}:{b.loop_tag}")
    persons: dict[str, Person] = {}
    ev: list[SimEvent] = []
    tag = b.loop_tag

    def person(pid: str, admin: str, **kw: Any) -> Person:
        p = make_person(rng, f"{pid}{tag}", admin, **kw)
        persons[p.pid] = p
        return p

    H = 3600
    # (1) neighbour dispute over house demolition in 三江镇柒山村
    qishan = "513221107201"
    vq = gz.place(qishan)
    assert vq is not None
    inc = f"S1-qishan-demolition{tag}"
    a = person("PS1A", qishan, name="王德学", gender="M", birth="19680512", address="汶川县三江镇柒山村3组12号")
    while not a.id_number.endswith("X"):
        a = person("PS1A", qishan, name="王德学", gender="M", birth="19680512", address="汶川县三江镇柒山村3组12号")
    bb = person("PS1B", qishan, name="李春梅", gender="F", birth="19720303", address="汶川县三江镇柒山村3组14号")
    lat, lon = offset_m(vq.lat, vq.lon, 120, -80)
    worker = _worker_for(w, qishan, rng)
    ev.append(b.grid(rng, worker, 9 * H + 12 * 60, "0103",
                     "柒山村3组村民王德学拆除自家旧房时损坏邻居李春梅家院墙，双方又因拆迁补偿款分配发生争执，"
                     "情绪激动，网格员已现场劝解并上报。", "三江镇柒山村3组", lat, lon,
                     [b.party(rng, a, "party", id_mode="full", phone_style="spaced"),
                      b.party(rng, bb, "party", id_mode="missing", phone_style="plain")],
                     (a.pid, bb.pid), scenario="dispute_demolition", incident=inc, coord="gcj02", late=False,
                     dup=True))
    ev.append(b.alarm110(rng, 2 * DAY + 20 * H + 41 * 60, ("200000", "200200", "200201"), "dispute",
                         "报警人王德学称邻居李春梅一家在其拆除的老房子地基上堆放杂物，并与其发生推搡，要求民警到场处理。",
                         a, "汶川县三江镇柒山村3组", lat, lon, (a.pid, bb.pid), scenario="dispute_demolition",
                         incident=inc, level=2, xzqh=qishan, id_mode="lower", phone_style="plus86_dashed",
                         late=False))
    ev.append(b.mediation(rng, 10 * DAY + 10 * H, "513221107", "征地拆迁",
                          "王德学与李春梅系柒山村3组邻居，因王家拆除旧房损坏李家院墙及拆迁补偿分配发生纠纷，经110出警后"
                          "申请调解。经调解，王德学赔偿李春梅院墙修复费用8000元，双方和解。",
                          "三江镇柒山村3组", qishan,
                          [b.party(rng, a, "申请人", id_mode="legacy15", phone_style="0086", with_address=True),
                           b.party(rng, bb, "被申请人", id_mode="full", phone_style="dashed", with_address=True)],
                          (a.pid, bb.pid), scenario="dispute_demolition", incident=inc,
                          workstation="三江镇无忧法治苑人民调解工作室", amount="8000", form="xlsx"))

    # (2) person in the river (岷江) at 威州: a 110 call and 3 riverside cameras
    inc = f"S2-river-weizhou{tag}"
    chain = w.chains["513221100"]
    k = 9
    cam = chain[k]
    c = person("PS2C", "513221100203")
    t0 = 18 * H + 37 * 60 + 10
    ev.append(b.gb(rng, chain[k], t0 - 120, 5, 6, "岷江河堤区域入侵", "intrusion", scenario="river_rescue",
                   incident=inc, priority=1, event_type=1, late=False, dup=False))
    ev.append(b.gb(rng, chain[k + 1], t0 + 60, 5, 5, "岷江河堤绊线入侵", "intrusion", scenario="river_rescue",
                   incident=inc, priority=1, event_type=1, late=False, dup=False))
    third = chain[k + 2]
    if third.protocol == "isapi":
        ev.append(b.isapi(rng, third, t0 + 180, "linedetection", "intrusion", "Line Crossing",
                          scenario="river_rescue", incident=inc, late=False, dup=False))
    else:
        ev.append(b.gb(rng, third, t0 + 180, 5, 6, "岷江河堤区域入侵", "intrusion", scenario="river_rescue",
                       incident=inc, priority=1, event_type=1, late=False, dup=False))
    rl, ro = offset_m(cam.lat, cam.lon, -60, 30)
    ev.append(b.alarm110(rng, t0, ("400000", "400300", "400301"), "rescue",
                         "报警人称在威州镇姜维城段岷江河堤看到有人落水，被水冲往下游，请求救援。", c,
                         "汶川县威州镇岷江河堤姜维城段", rl, ro, (c.pid,), scenario="river_rescue", incident=inc,
                         level=1, xzqh="513221100", late=False))

    # (3) a tourist's medical emergency: grid 0501 and 110 500100
    inc = f"S3-tourist-medical{tag}"
    tourist = person("PS3T", "513221105", region="510104", name="周淑芬", gender="F", birth="19590821",
                     address="四川省成都市锦江区东大街100号")
    son = person("PS3S", "513221105", region="510104", name="周浩", gender="M", birth="19860214",
                 address="四川省成都市锦江区东大街100号")
    sl, so = 31.0318, 103.4025
    worker = _worker_for(w, "513221105", rng)
    ev.append(b.grid(rng, worker, 14 * H + 5 * 60, "0501",
                     b.text.traditional("水磨古镇禅寿老街一名成都游客（女，67岁）突发胸闷晕倒，同行家属求助，"
                                        "网格员已协助拨打120并联系派出所。"),
                     "水磨镇禅寿老街", sl, so,
                     [b.party(rng, tourist, "victim", id_mode="missing", phone_style="spaced"),
                      b.party(rng, son, "reporter", id_mode="missing", phone_style="plus86_dashed")],
                     (tourist.pid, son.pid), scenario="tourist_medical", incident=inc, coord="bd09", late=False,
                     dup=False))
    ev.append(b.alarm110(rng, 14 * H + 9 * 60, ("500000", "500100", "500101"), "medical",
                         "报警人称其母亲在水磨古镇禅寿老街游玩时突发疾病晕倒，需要救护。", son, "汶川县水磨镇禅寿老街",
                         sl, so, (son.pid, tourist.pid), scenario="tourist_medical", incident=inc, level=2,
                         xzqh="513221105", id_mode="full", phone_style="0086", late=False))

    # (4) theft with a vehicle: 110 call naming the plate, ANPR sightings within the hour
    inc = f"S4-theft-plate{tag}"
    plate = "川UA7K35"
    victim = person("PS4V", "513221100")
    ev.append(b.alarm110(rng, 3 * H + 20 * 60, ("100000", "100200", "100201"), "theft",
                         "报警人称其位于威州镇岷江路的五金店凌晨被盗，监控看到一辆车牌号为川U·A7K35的白色面包车停在"
                         "店门口，嫌疑人搬走电缆若干后驾车往映秀方向逃离，损失约两万元。", victim,
                         "汶川县威州镇岷江路88号", 31.4791, 103.5899, (victim.pid,), scenario="theft_vehicle",
                         incident=inc, level=2, xzqh="513221100", late=False))
    route = (("威州镇G213国道威州南卡口", 3 * H + 2 * 60), ("绵虒镇G213国道绵虒卡口", 3 * H + 24 * 60),
             ("映秀镇G213国道映秀卡口", 3 * H + 51 * 60))
    for name, t in route:
        dev = next(d for d in w.anpr if d.name.startswith(name))
        ev.append(b.isapi(rng, dev, t, "ANPR", "vehicle_sighting", "ANPR", scenario="theft_vehicle",
                          incident=inc, anpr={"licensePlate": plate, "plateColor": "blue", "vehicleType": "vehicle",
                                              "direction": "forward", "confidenceLevel": str(rng.randint(85, 98))},
                          form="multipart", late=False, dup=False))

    # (5) crowd gathering across 布瓦村 and 姜维城村 (威州镇)
    inc = f"S5-crowd-buwa{tag}"
    buwa, jwc = "513221100202", "513221100203"
    pb, pj = gz.place(buwa), gz.place(jwc)
    assert pb and pj
    mlat, mlon = (pb.lat + pj.lat) / 2, (pb.lon + pj.lon) / 2
    leader = person("PS5L", buwa, name="杨成林", gender="M", birth="19700910")
    others = [person(f"PS5{i}", (buwa, jwc)[i % 2]) for i in range(4)]
    t5 = 10 * H
    for i, (vill, dt) in enumerate(((buwa, 4 * 60), (jwc, 17 * 60), (buwa, 38 * 60))):
        la, lo = offset_m(mlat, mlon, rng.uniform(-120, 120), rng.uniform(-120, 120))
        parties = [b.party(rng, leader, "party", id_mode="full" if i == 0 else "noisy")] if i != 1 else []
        ev.append(b.grid(rng, _worker_for(w, vill, rng), t5 + dt, "0701",
                         f"布瓦村与姜维城村交界处安置点施工现场聚集村民约{30 + 15 * i}人，因征地补偿款发放问题"
                         "阻挠施工，现场情绪激动，请求派出所及镇综治中心到场。",
                         f"威州镇{_place_label(vill)[3:]}与{'姜维城村' if vill == buwa else '布瓦村'}交界处安置点工地",
                         la, lo, parties, (leader.pid,) if parties else (), scenario="crowd_gathering", incident=inc,
                         late=False, dup=False))
    first = b.jjdbh(t5 + 9 * 60)
    callers = [leader, others[0], others[1]]
    for i, (caller, dt) in enumerate(zip(callers, (9 * 60, 22 * 60, 51 * 60))):
        la, lo = offset_m(mlat, mlon, rng.uniform(-150, 150), rng.uniform(-150, 150))
        txt = ("报警人称威州镇布瓦村与姜维城村交界的安置点工地有数十名村民聚集，因征地补偿问题与施工方对峙。",
               "报警人称姜维城村工地门口聚集了很多人，有人推搡施工人员。",
               "报警人称布瓦村安置点工地聚集人员增多至近百人，道路堵塞。")[i]
        ev.append(b.alarm110(rng, t5 + dt, ("700000", "700100", "700101"), "mass_gathering", txt, caller,
                             "汶川县威州镇布瓦村安置点工地", la, lo, (caller.pid,), scenario="crowd_gathering",
                             incident=inc, jjdbh=first if i == 0 else None, related="" if i == 0 else first,
                             level=1, xzqh=(buwa, jwc, buwa)[i], late=False))

    # (6) flood burst along the river in 映秀 and 漩口: hundreds of events in minutes
    inc = f"S6-flood{tag}"
    t6 = 16 * H
    river_cams = list(w.chains["513221102"]) + list(w.chains["513221106"])
    near = [d for d in w.devices if d.kind != "door" and d.town in ("513221102", "513221106")
            and "anpr" not in d.tags and "riverside" not in d.tags]
    cams = river_cams + rng.sample(near, 40)
    for i in range(200):
        dev = cams[i % len(cams)] if i < 120 else rng.choice(cams)
        t = t6 + rng.randint(0, 25 * 60)
        if dev.protocol == "gb28181":
            atype, (desc, kind) = rng.choice(((11, ("视频异常", "device")), (10, ("人员密度过高", "other")),
                                              (6, ("区域入侵", "intrusion")), (2, ("移动侦测报警", "intrusion"))))
            if rng.random() < 0.2:
                ev.append(b.gb(rng, dev, t, 2, 1, "视频丢失", "device", scenario="flood", incident=inc,
                               priority=1))
            else:
                ev.append(b.gb(rng, dev, t, 5, atype, f"岷江沿岸{desc}", kind, scenario="flood", incident=inc,
                               priority=1 if atype in (6, 10) else 2))
        else:
            et, kind, d = rng.choice((("VMD", "intrusion", "Motion alarm"), ("fielddetection", "intrusion", "Intrusion"),
                                      ("videoloss", "device", "videoloss alarm")))
            ev.append(b.isapi(rng, dev, t, et, kind, d, scenario="flood", incident=inc))
    flood_places = [v for v in gz.VILLAGES if v.parent in ("513221102", "513221106")]
    reports: list[tuple[float, float, int]] = []
    for i in range(40):
        v = rng.choice(flood_places)
        p = person(f"PS6{i:02d}", v.code)
        la, lo = offset_m(v.lat, v.lon, rng.gauss(0, 200), rng.gauss(0, 200))
        t = t6 + rng.randint(60, 30 * 60)
        reports.append((la, lo, t))
        txt = rng.choice(("报警人称{p}河水暴涨，山洪冲毁道路，有房屋进水，请求救援。", "报警人称{p}沟里发生泥石流，有车辆被困。",
                          "报警人称{p}岷江水位上涨很快，河边还有人，请求疏散。"))
        ev.append(b.alarm110(rng, t, ("800000", "800100", "800101"), "disaster",
                             noisy_text(rng, txt.format(p=_place_label(v.code)), b.rates, b.text), p,
                             f"汶川县{_place_label(v.code)}", la, lo, (p.pid,), scenario="flood", incident=inc,
                             level=1, xzqh=v.code))
    for i in range(22):
        v = rng.choice(flood_places)
        la, lo = offset_m(v.lat, v.lon, rng.gauss(0, 200), rng.gauss(0, 200))
        t = t6 + rng.randint(60, 30 * 60)
        reports.append((la, lo, t))
        ev.append(b.grid(rng, _worker_for(w, v.code, rng), t, "0401",
                         f"{_place_label(v.code)}山洪暴发，沟道水位急涨，网格员正组织沿河{rng.randint(5, 40)}户群众转移。",
                         _place_label(v.code), la, lo, [], (), scenario="flood", incident=inc))
    ev.sort(key=lambda e: e.t)
    # 2 km / 15 min: the reach of a flood report along a valley road while it is being reported
    flood = Footprint(inc, "flood", tuple(reports), 2000.0, 15 * 60, frozenset({"intrusion", "device"}))
    return ScenarioSet(ev, persons, [flood])


# ============================================================================================
# Background
# ============================================================================================

def _pick(rng: random.Random, table: dict[Any, tuple[str, str, int]]) -> tuple[Any, tuple[str, str, int]]:
    keys = list(table)
    return (k := rng.choices(keys, [table[x][2] for x in keys])[0]), table[k]


def background_hour(b: Builder, day: int, hour: int, scale: float) -> list[SimEvent]:
    """Unrelated events of one hour (each its own incident), sorted by time."""
    w = b.world
    rng = random.Random(f"bg:{w.seed}:{b.loop_tag}:{day}:{hour}:{scale}")
    t0 = day * DAY + hour * 3600
    out: list[SimEvent] = []
    hs, cs, ds = sum(HUMAN_HOURS), sum(CAMERA_HOURS), sum(DOOR_HOURS)
    n_gb = poisson(rng, DAILY["gb28181"] * scale * CAMERA_HOURS[hour] / cs)
    n_is = poisson(rng, DAILY["isapi"] * scale * CAMERA_HOURS[hour] / cs)
    n_grid = poisson(rng, DAILY["grid"] * scale * HUMAN_HOURS[hour] / hs)
    n_110 = poisson(rng, DAILY["alarm110"] * scale * HUMAN_HOURS[hour] / hs)
    n_door = poisson(rng, DAILY["door"] * scale * DOOR_HOURS[hour] / ds)
    n_med = 0
    if hour == 10:   # a few per week in reality; one or two a day here so a 1-day run has some
        n_med = max(1, poisson(rng, scale))
    elif hour == 15:
        n_med = max(1, poisson(rng, 0.5 * scale))
    gb_devs = [d for d in w.devices if d.protocol == "gb28181"]
    is_devs = [d for d in w.devices if d.protocol == "isapi" and d.kind != "door" and "anpr" not in d.tags]
    table_v = {(5, k): v for k, v in GB_VIDEO.items()} | {(2, k): v for k, v in GB_DEVICE.items()} \
        | {(6, k): v for k, v in GB_FAULT.items()}
    for _ in range(n_gb):
        dev = rng.choice(gb_devs)
        (method, atype), (desc, kind, _w) = _pick(rng, table_v)
        place = dev.name.split("-")[0]
        out.append(b.gb(rng, dev, t0 + rng.randrange(3600), method, atype, f"{place}{desc}", kind,
                        priority=rng.choice((2, 3, 3, 4)), event_type=1 if atype in (5, 6) else None))
    for _ in range(n_is):
        et, kind, _wt, desc = rng.choices(ISAPI_TYPES, [x[2] for x in ISAPI_TYPES])[0]
        t = t0 + rng.randrange(3600)
        if et == "ANPR":
            dev = rng.choice(w.anpr)
            plate = _plate(rng, "川U" if rng.random() < 0.7 else rng.choice(("川A", "川A", "川K", "川T", "渝A")))
            anpr = {"licensePlate": plate, "plateColor": rng.choice(("blue", "blue", "blue", "green", "yellow")),
                    "vehicleType": rng.choice(("vehicle", "vehicle", "SUV", "truck", "bus")),
                    "direction": rng.choice(("forward", "reverse")), "confidenceLevel": str(rng.randint(70, 99))}
            out.append(b.isapi(rng, dev, t, et, kind, desc, anpr=anpr))
        else:
            out.append(b.isapi(rng, rng.choice(is_devs), t, et, kind, desc))
    if rng.random() < 0.5 * min(1.0, scale):   # heartbeat: dropped by the receiver, not an event
        hb = b.isapi(rng, rng.choice(is_devs), t0 + rng.randrange(3600), "videoloss", "heartbeat",
                     "videoloss alarm", state="inactive", post_count=0, incident="", late=False, dup=False)
        out.append(hb)
    for _ in range(n_grid):
        out.append(_bg_grid(b, rng, t0 + rng.randrange(3600)))
    for _ in range(n_110):
        out.append(_bg_110(b, rng, t0 + rng.randrange(3600)))
    for _ in range(n_med):
        out.append(_bg_mediation(b, rng, t0 + rng.randrange(3600)))
    comms = [c[1] for c in COMMUNITIES]
    cweights = [c[5] for c in COMMUNITIES]
    doors_by_c = {c: [d for d in w.doors if d.community == c] for c in comms}
    for _ in range(n_door):
        cname = rng.choices(comms, cweights)[0]
        p = rng.choice(w.residents[cname])
        direction = "out" if (hour < 12) == (rng.random() < 0.7) else "in"
        out.append(b.door(rng, rng.choice(doors_by_c[cname]), t0 + rng.randrange(3600), p, direction))
    # drop same-second collisions of the same native id (possible for ISAPI and door)
    seen: set[str] = set()
    uniq = []
    for e in sorted(out, key=lambda e: e.t):
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        uniq.append(e)
    return uniq


def _bg_grid(b: Builder, rng: random.Random, t: int) -> SimEvent:
    w = b.world
    worker = rng.choice(w.workers)
    cat, (_n, _k, _w) = _pick(rng, {k: v for k, v in GRID_CATS.items() if v[2] > 0})
    pa, pb = b.next_person(), b.next_person()
    admin = worker.admin_code
    place = _place_label(admin)
    text = rng.choice(GRID_TEXT[cat]).format(place=place, a=pa.name, b=pb.name, n=rng.randint(3, 12),
                                            m=rng.randint(8, 90) * 1000)
    text = noisy_text(rng, text, b.rates, b.text)
    involved = "{a}" in " ".join(GRID_TEXT[cat])
    two = "{b}" in " ".join(GRID_TEXT[cat])
    people = [pa, pb][: (2 if two else 1)] if involved else []
    parties = [b.party(rng, p, "party") for p in people]
    la, lo = offset_m(worker.lat, worker.lon, rng.gauss(0, 250), rng.gauss(0, 250))
    addr = f"{place}{rng.randint(1, 8)}组" if len(admin) == 12 else f"{place}{rng.choice(('正街', '新街', '老街'))}"
    return b.grid(rng, worker, t, cat, text, addr, la, lo, parties, tuple(p.pid for p in people))


def _bg_110(b: Builder, rng: random.Random, t: int) -> SimEvent:
    cat = rng.choices(ALARM_CATS, [c[4] for c in ALARM_CATS])[0]
    caller, other = b.next_person(), b.next_person()
    admin = caller.admin_code
    p = gz.place(admin)
    assert p is not None
    la, lo = offset_m(p.lat, p.lon, rng.gauss(0, 400), rng.gauss(0, 400))
    addr = caller.address
    text = rng.choice(cat[5]).format(b=other.name, reason=rng.choice(REASONS), addr=addr, m=rng.randint(2, 300) * 100,
                                     place=_place_label(admin))
    text = noisy_text(rng, text, b.rates, b.text)
    persons = (caller.pid, other.pid) if "{b}" in cat[5][0] else (caller.pid,)
    if rng.random() < 0.1:   # landline callers
        caller = replace(caller, phone=f"0837-62{rng.randrange(10**5):05d}")
    return b.alarm110(rng, t, cat[:3], cat[3], text, caller, addr, la, lo, persons,
                      level=rng.choice((2, 3, 3, 4)), xzqh=admin if rng.random() < 0.6 else admin[:6])


def _bg_mediation(b: Builder, rng: random.Random, t: int) -> SimEvent:
    pa, pb = b.next_person(), b.next_person()
    dtype = rng.choice(MEDIATION_TYPES)
    town = pa.admin_code[:9]
    place = _place_label(pa.admin_code)
    summary = f"{pa.name}与{pb.name}因{dtype}纠纷申请调解，经调解员释法说理，双方达成一致。"
    result = rng.choices(("调解成功", "调解不成功", "调解中"), (7, 1, 2))[0]
    amount = str(rng.randint(5, 300) * 100) if result == "调解成功" and rng.random() < 0.6 else ""
    parties = [b.party(rng, pa, "申请人", with_address=True), b.party(rng, pb, "被申请人", with_address=True)]
    return b.mediation(rng, t, town, dtype, summary, place, pa.admin_code, parties, (pa.pid, pb.pid),
                       result=result, amount=amount)


def event_stream(b: Builder, days: int, scale: float, scenarios: bool = True) -> Iterator[SimEvent]:
    """All events in occurrence order: the scenarios merged with `days` of background hours."""
    built = build_scenarios(b) if scenarios else ScenarioSet([], {})
    sc = built.events
    devices = {d.device_id: d for d in b.world.devices}

    def bg() -> Iterator[SimEvent]:
        for day in range(days):
            for hour in range(24):
                for e in background_hour(b, day, hour, scale):
                    yield absorb(e, built.footprints, devices)

    yield from heapq.merge(sc, bg(), key=lambda e: e.t)


def local_date(w: World, t: int) -> str:
    """Date text of an offset (for logs)."""
    return (w.base + timedelta(seconds=t)).strftime("%Y-%m-%d")


__all__ = ["Builder", "Footprint", "ScenarioSet", "absorb", "build_scenarios", "background_hour", "event_stream", "to_fullwidth"]
