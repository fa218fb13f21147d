"""The simulated county: device registry, population, grid workers, and the event record.

The device registry is independent of the seed (a fixed configuration, like the real one), so
receivers configured with one `registry.csv` accept every simulated run. The population depends
on the seed.
"""
from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from connectors.sources.registry import source_of_feed
from streams.domain import gazetteer as gz

from .noise import haversine_m, make_id_number, offset_m

CST = timezone(timedelta(hours=8))
BASE_DATE = datetime(2026, 7, 14, tzinfo=CST)
REGISTRY_SEED = "pingan-registry-v1"

CAMERA_SPLIT = {"camera_tianwang": 408, "camera_xueliang": 654, "camera_huiyan": 2000}
KIND_LABEL = {"camera_tianwang": "天网高清", "camera_xueliang": "雪亮工程", "camera_huiyan": "慧眼", "door": "门禁"}
# digits 9–10 of the GB id, per device family
_INDUSTRY = {"camera_tianwang": "00", "camera_xueliang": "01", "camera_huiyan": "05", "door": "07"}
# relative camera density per town (威州, the county seat, is densest)
TOWN_WEIGHT = {
    "513221100": 0.34, "513221102": 0.12, "513221103": 0.06, "513221105": 0.08, "513221106": 0.08,
    "513221107": 0.08, "513221108": 0.06, "513221109": 0.10, "513221111": 0.08,
}
TOWN_STREETS = {
    "513221100": ("岷江路", "姜维路", "雁门街", "威州大道", "新桥街", "桃坪路", "羌锋路"),
    "513221102": ("映秀街", "渔子溪路", "震中路", "中滩堡街"),
    "513221103": ("卧龙大道", "熊猫路"),
    "513221105": ("禅寿老街", "水磨大道", "春风路"),
    "513221106": ("漩口街", "蒲溪路"),
    "513221107": ("三江街", "草坪路"),
    "513221108": ("耿达街", "正河路"),
    "513221109": ("绵虒街", "羌锋路"),
    "513221111": ("灞州街", "克枯路"),
}
# The Min river (岷江) through the county, north to south (WGS-84, approximate).
MIN_RIVER: tuple[tuple[float, float], ...] = (
    (31.600, 103.628), (31.540, 103.612), (31.500, 103.597), (31.480, 103.594), (31.460, 103.585),
    (31.420, 103.552), (31.362, 103.502), (31.250, 103.490), (31.150, 103.482), (31.070, 103.492),
    (31.054, 103.490), (31.020, 103.478), (31.000, 103.468), (30.985, 103.460),
)
# riverside camera chains: (town code, chain length, start lat) — ~100–150 m apart along the river
RIVER_CHAINS = (("513221100", 26, 31.497), ("513221109", 14, 31.372), ("513221102", 26, 31.066),
                ("513221106", 16, 31.012))
# road checkpoints with ANPR cameras (town code, lat, lon, name)
ANPR_SITES = (
    ("513221111", 31.592, 103.624, "G213国道灞州卡口"), ("513221100", 31.505, 103.600, "G213国道威州北卡口"),
    ("513221100", 31.470, 103.588, "G213国道威州南卡口"), ("513221109", 31.366, 103.503, "G213国道绵虒卡口"),
    ("513221102", 31.060, 103.493, "G213国道映秀卡口"), ("513221102", 31.050, 103.480, "G350国道映秀西卡口"),
    ("513221105", 31.034, 103.405, "水磨卡口"), ("513221106", 31.004, 103.469, "都汶高速漩口出口"),
    ("513221103", 31.040, 103.195, "G350国道卧龙卡口"), ("513221107", 31.097, 103.358, "三江卡口"),
)
# smart communities with door controllers: (town, name, lat, lon, doors, residents)
COMMUNITIES = (
    ("513221100", "金竹苑", 31.4785, 103.5885, ("东门", "西门", "1栋单元门", "2栋单元门", "地下车库"), 140),
    ("513221100", "阳光家园", 31.4832, 103.5931, ("南门", "北门", "3栋单元门"), 90),
    ("513221102", "新街小区", 31.0562, 103.4881, ("大门", "1栋单元门", "2栋单元门"), 80),
    ("513221105", "禅寿新居", 31.0310, 103.4010, ("大门", "侧门"), 50),
)
COMMON_NAMES = ("王伟", "李娜", "张伟", "王芳", "刘洋", "李强", "杨秀英")
_SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭",
             "何", "高", "罗", "郑", "梁", "谢", "宋", "唐", "余", "韩", "邓", "蒋", "冯", "曾", "袁", "苟",
             "王", "李", "杨", "陈", "张")
_GIVEN_M = ("德学", "建国", "志强", "明", "勇", "军", "国华", "海", "文斌", "永福", "俊杰", "泽让", "小龙",
            "成林", "光荣", "大华", "红兵", "宇", "浩", "涛", "家旺", "仕林", "尔甲", "金山", "朝贵", "学文")
_GIVEN_F = ("春梅", "秀英", "桂兰", "丽", "娟", "敏", "玉珍", "卓玛", "小燕", "晓琴", "红梅", "秀兰", "婷",
            "雪梅", "淑芬", "兰英", "静", "燕", "志芳", "琼", "拉姆", "玉兰", "莉", "欣怡", "思琪")
_OTHER_REGIONS = ("510104", "510107", "510124", "513222", "513223", "500103", "440305")


@dataclass(frozen=True, slots=True)
class Device:
    """One registry row plus the simulator's knowledge of its protocol and placement."""

    device_id: str
    kind: str
    name: str
    ip: str
    mac: str
    uuid: str
    lat: float
    lon: float
    admin_code: str
    address: str
    protocol: str            # gb28181 | isapi | gat1400 (door platform)
    town: str
    tags: tuple[str, ...] = ()
    community: str = ""
    door: str = ""

    def row(self) -> dict[str, str]:
        """The registry.csv row (contracts.md columns)."""
        return {"device_id": self.device_id, "kind": self.kind, "name": self.name, "ip": self.ip,
                "mac": self.mac, "uuid": self.uuid, "lat": f"{self.lat:.6f}", "lon": f"{self.lon:.6f}",
                "admin_code": self.admin_code, "address": self.address}


REGISTRY_COLUMNS = ("device_id", "kind", "name", "ip", "mac", "uuid", "lat", "lon", "admin_code", "address")


@dataclass(frozen=True, slots=True)
class Person:
    """A resident (or visitor) with true identifiers."""

    pid: str
    name: str
    gender: str
    birth: str            # YYYYMMDD
    id_number: str        # valid 18-digit
    phone: str            # 11-digit mobile
    admin_code: str       # village (12) or town (9) code of the home
    address: str
    community: str = ""
    card_no: str = ""

    def truth(self) -> dict[str, str]:
        """The truth.json view."""
        return {"name": self.name, "gender": self.gender, "birth": self.birth, "id_number": self.id_number,
                "phone": self.phone, "admin_code": self.admin_code, "address": self.address}


@dataclass(frozen=True, slots=True)
class GridWorker:
    """A grid worker (网格员) and the grid they cover."""

    worker_id: str
    name: str
    full_time: bool
    grid_code: str
    admin_code: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One native event: its feed, time (seconds after the base date), truth and final payload."""

    feed: str                    # gb28181 | isapi | grid | alarm110 | mediation | door
    t: int
    native_id: str
    kind: str
    scenario: str                # scenario name or "background"
    incident: str
    persons: tuple[str, ...]
    payload: dict[str, Any]
    form: str                    # rendering variant per feed
    delay: int = 0               # delivery delay (seconds)
    late: bool = False
    dup_delay: int | None = None  # when set, delivered a second time this much later
    vehicles: tuple[str, ...] = ()
    #: (seconds after the first delivery, payload changes): the source delivers the same record
    #: again, updated (a grid report re-sent with status 已化解 when the matter is settled)
    followup: tuple[int, tuple[tuple[str, str], ...]] | None = None

    @property
    def source(self) -> str:
        """The canonical source name."""
        return source_of_feed(self.feed)

    @property
    def event_id(self) -> str:
        """The id the bus computes: source:native_id."""
        return f"{self.source}:{self.native_id}"


@dataclass
class Counters:
    """Per-run id sequences (instance state, never global)."""

    sn: int = 10000
    grid: int = 0
    jjd: int = 0
    case: int = 0
    bg_incident: int = 0
    order: int = 0
    door_serial: int = 0
    person: int = 0

    def next(self, name: str) -> int:
        """Increment and return a named counter."""
        value = getattr(self, name) + 1
        setattr(self, name, value)
        return value


@dataclass(frozen=True)
class World:
    """Everything static in a run."""

    seed: int
    base: datetime
    devices: tuple[Device, ...]
    persons: tuple[Person, ...]
    workers: tuple[GridWorker, ...]
    by_kind: dict[str, tuple[Device, ...]]
    chains: dict[str, tuple[Device, ...]]
    anpr: tuple[Device, ...]
    doors: tuple[Device, ...]
    residents: dict[str, tuple[Person, ...]]
    bg_people: tuple[Person, ...]
    workers_by_admin: dict[str, tuple[GridWorker, ...]]

    def at(self, t: int) -> datetime:
        """Local time of an offset."""
        return self.base + timedelta(seconds=t)


def river_point(lat: float) -> tuple[float, float]:
    """The point of the Min river at a latitude (linear between polyline vertices)."""
    pts = MIN_RIVER
    for (la1, lo1), (la2, lo2) in zip(pts, pts[1:]):
        if la2 <= lat <= la1:
            f = (la1 - lat) / (la1 - la2) if la1 != la2 else 0.0
            return lat, lo1 + f * (lo2 - lo1)
    return (lat, pts[0][1]) if lat > pts[0][0] else (lat, pts[-1][1])


def nearest_admin(lat: float, lon: float, town: str) -> str:
    """The village code within 2.5 km of a point in a town, else the town code."""
    best, best_d = town, 2500.0
    for v in gz.villages_of(town):
        d = haversine_m(lat, lon, v.lat, v.lon)
        if d < best_d:
            best, best_d = v.code, d
    return best


def _place_name(code: str) -> str:
    p = gz.place(code)
    if p is None:
        return ""
    if len(code) == 12:
        town = gz.place(p.parent)
        return f"{town.name if town else ''}{p.name}"
    return p.name


def _gb_id(kind: str, type_code: str, serial: int) -> str:
    return f"51322110{_INDUSTRY[kind]}{type_code}{serial:07d}"


def build_registry() -> tuple[Device, ...]:
    """~3,000 cameras (408 天网, 654 雪亮, 2,000 慧眼) and the community door controllers."""
    rng = random.Random(REGISTRY_SEED)
    towns = [t.code for t in gz.TOWNS]
    weights = [TOWN_WEIGHT[t] for t in towns]
    placements: list[tuple[str, float, float, tuple[str, ...], str]] = []  # kind,lat,lon,tags,label
    out: list[Device] = []
    # riverside chains (天网 + 雪亮), then ANPR checkpoints (天网), then the rest
    special: dict[str, list[tuple[str, float, float, tuple[str, ...], str]]] = {k: [] for k in CAMERA_SPLIT}
    for town, n, lat0 in RIVER_CHAINS:
        for i in range(n):
            lat = lat0 - i * 100.0 / 111_320.0
            rlat, rlon = river_point(lat)
            lat, lon = offset_m(rlat, rlon, 0.0, rng.choice((-35.0, 35.0)))
            kind = "camera_tianwang" if i % 3 == 0 else "camera_xueliang"
            special[kind].append((kind, lat, lon, ("riverside",), f"岷江河堤{i + 1:02d}号"))
    for town, lat, lon, name in ANPR_SITES:
        for lane in range(6):
            la, lo = offset_m(lat, lon, rng.uniform(-20, 20), rng.uniform(-20, 20))
            special["camera_tianwang"].append(("camera_tianwang", la, lo, ("anpr", town), f"{name}{lane + 1}车道"))
    serial = 0
    for kind, total in CAMERA_SPLIT.items():
        items = list(special[kind])
        while len(items) < total:
            town = rng.choices(towns, weights)[0]
            tp = gz.place(town)
            assert tp is not None
            villages = gz.villages_of(town)
            if villages and rng.random() < (0.35 if town == "513221100" else 0.55):
                v = rng.choice(villages)
                lat, lon = offset_m(v.lat, v.lon, rng.gauss(0, 450), rng.gauss(0, 450))
                label = f"{v.name}{rng.randint(1, 8)}组"
            else:
                lat, lon = offset_m(tp.lat, tp.lon, rng.gauss(0, 700), rng.gauss(0, 700))
                label = f"{rng.choice(TOWN_STREETS[town])}{rng.randint(1, 199)}号"
            items.append((kind, lat, lon, (), label))
        for kind_, lat, lon, tags, label in items[:total]:
            town = _nearest_town(lat, lon) if "anpr" not in tags else tags[1]
            serial += 1
            protocol = _camera_protocol(kind_, tags, serial)
            admin = nearest_admin(lat, lon, town)
            tname = gz.name_of(town) or ""
            address = f"{gz.COUNTY_NAME}{tname}{label}"
            type_code = "132" if protocol == "isapi" or kind_ == "camera_huiyan" else "131"
            out.append(_device(rng, len(out), _gb_id(kind_, type_code, serial), kind_,
                               f"{tname}{label}-{KIND_LABEL[kind_]}", lat, lon, admin, address, protocol,
                               town, tuple(t for t in tags if not t.isdigit())))
    for ci, (town, cname, lat, lon, doors, _n) in enumerate(COMMUNITIES):
        tname = gz.name_of(town) or ""
        for di, door in enumerate(doors):
            serial += 1
            la, lo = offset_m(lat, lon, rng.uniform(-60, 60), rng.uniform(-60, 60))
            protocol = "isapi" if ci % 2 == 0 else "gat1400"
            out.append(_device(rng, len(out), _gb_id("door", "139", serial), "door", f"{cname}{door}门禁",
                               la, lo, town, f"{gz.COUNTY_NAME}{tname}{cname}{door}", protocol, town,
                               ("door",), cname, door))
    return tuple(out)


def _camera_protocol(kind: str, tags: tuple[str, ...], serial: int) -> str:
    if "anpr" in tags:
        return "isapi"
    if kind == "camera_tianwang":
        return "gb28181"
    if kind == "camera_xueliang":
        return "gb28181" if serial % 2 else "isapi"
    return "isapi" if serial % 5 else "gb28181"


def _nearest_town(lat: float, lon: float) -> str:
    return min(gz.TOWNS, key=lambda t: haversine_m(lat, lon, t.lat, t.lon)).code


def _device(rng: random.Random, index: int, device_id: str, kind: str, name: str, lat: float, lon: float,
            admin: str, address: str, protocol: str, town: str, tags: tuple[str, ...],
            community: str = "", door: str = "") -> Device:
    ip = f"10.51.{1 + index // 250}.{1 + index % 250}"
    oui = {"isapi": "44:19:b6", "gb28181": "3c:ef:8c", "gat1400": "e0:ca:3c"}[protocol]
    n = 0x0A0000 + index * 7
    mac = f"{oui}:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"
    uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return Device(device_id, kind, name, ip, mac, uid, round(lat, 6), round(lon, 6), admin, address,
                  protocol, town, tags, community, door)


def _person_name(rng: random.Random, gender: str) -> str:
    return rng.choice(_SURNAMES) + rng.choice(_GIVEN_M if gender == "M" else _GIVEN_F)


def _birth(rng: random.Random, lo: int = 1945, hi: int = 2004) -> str:
    y = rng.randint(lo, hi)
    return f"{y}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"


def make_person(rng: random.Random, pid: str, admin: str, *, name: str | None = None, gender: str | None = None,
                region: str = "513221", address: str | None = None, birth: str | None = None,
                community: str = "", card_no: str = "") -> Person:
    """One person with a valid ID number (sequence parity follows the gender)."""
    g = gender or rng.choice("MF")
    nm = name or _person_name(rng, g)
    b = birth or _birth(rng)
    seq = rng.randrange(0, 500) * 2 + (1 if g == "M" else 0)
    idn = make_id_number(region, b, seq)
    phone = rng.choice(("138", "139", "135", "136", "137", "150", "151", "152", "157", "158", "159", "182",
                        "183", "187", "188", "133", "153", "180", "181", "189", "177", "199", "130", "131",
                        "132", "155", "156", "186", "176")) + f"{rng.randrange(0, 10**8):08d}"
    if address is None:
        address = home_address(rng, admin)
    return Person(pid, nm, g, b, idn, phone, admin, address, community, card_no)


def home_address(rng: random.Random, admin: str) -> str:
    """镇/村/组 address for a village code, street address for a town code."""
    if len(admin) == 12:
        return f"{gz.COUNTY_NAME}{_place_name(admin)}{rng.randint(1, 8)}组{rng.randint(1, 60)}号"
    town = gz.name_of(admin) or ""
    return f"{gz.COUNTY_NAME}{town}{rng.choice(TOWN_STREETS.get(admin, ('正街',)))}{rng.randint(1, 199)}号"


def build_population(seed: int) -> tuple[tuple[Person, ...], dict[str, tuple[Person, ...]], tuple[Person, ...]]:
    """(all persons, residents per community, background draw order) for a seed."""
    rng = random.Random(f"population:{seed}")
    places = [t.code for t in gz.TOWNS] + [v.code for v in gz.VILLAGES]
    persons: list[Person] = []
    common: list[Person] = []
    for name in COMMON_NAMES:
        gender = "F" if name in ("李娜", "王芳", "杨秀英") else "M"
        for village in rng.sample([v.code for v in gz.VILLAGES], 3):
            p = make_person(rng, f"P{len(persons) + 1:05d}", village, name=name, gender=gender)
            persons.append(p)
            common.append(p)
    while len(persons) < 3000:
        admin = rng.choice(places)
        region = "513221" if rng.random() < 0.93 else rng.choice(_OTHER_REGIONS)
        persons.append(make_person(rng, f"P{len(persons) + 1:05d}", admin, region=region))
    residents: dict[str, tuple[Person, ...]] = {}
    for town, cname, _lat, _lon, _doors, n in COMMUNITIES:
        tname = gz.name_of(town) or ""
        members = []
        for _ in range(n):
            addr = (f"{gz.COUNTY_NAME}{tname}{cname}{rng.randint(1, 6)}栋{rng.randint(1, 3)}单元"
                    f"{rng.randint(1, 6)}{rng.randint(1, 4):02d}室")
            card = f"{rng.randrange(10**9, 4 * 10**9)}"
            p = make_person(rng, f"P{len(persons) + 1:05d}", town, address=addr, community=cname, card_no=card)
            persons.append(p)
            members.append(p)
        residents[cname] = tuple(members)
    pool = [p for p in persons[: 3000] if p not in common]
    rng.shuffle(pool)
    order = tuple(common) + tuple(pool)
    return tuple(persons), residents, order


def build_workers(seed: int) -> tuple[GridWorker, ...]:
    """118 grid workers (34 full-time, 84 part-time) over the villages and town centres."""
    rng = random.Random(f"workers:{seed}")
    areas = [v for v in gz.VILLAGES] + list(gz.TOWNS)
    out = []
    for i in range(118):
        area = areas[i % len(areas)]
        n = i // len(areas) + 1
        lat, lon = offset_m(area.lat, area.lon, rng.gauss(0, 300), rng.gauss(0, 300))
        name = _person_name(rng, rng.choice("MF"))
        out.append(GridWorker(f"WGY-{i + 1:04d}", name, i < 34, f"{area.code}-{n:02d}", area.code,
                              lat, lon))
    return tuple(out)


def build_world(seed: int, base: datetime = BASE_DATE) -> World:
    """The static world of a run."""
    devices = build_registry()
    persons, residents, order = build_population(seed)
    workers = build_workers(seed)
    by_kind: dict[str, list[Device]] = {}
    chains: dict[str, list[Device]] = {}
    for d in devices:
        by_kind.setdefault(d.kind, []).append(d)
        if "riverside" in d.tags:
            chains.setdefault(d.town, []).append(d)
    wba: dict[str, list[GridWorker]] = {}
    for w in workers:
        wba.setdefault(w.admin_code, []).append(w)
    for code in [t.code for t in gz.TOWNS] + [v.code for v in gz.VILLAGES]:
        wba.setdefault(code, [])
    return World(
        seed=seed, base=base, devices=devices, persons=persons, workers=workers,
        by_kind={k: tuple(v) for k, v in by_kind.items()},
        chains={k: tuple(v) for k, v in chains.items()},
        anpr=tuple(d for d in devices if "anpr" in d.tags),
        doors=tuple(d for d in devices if d.kind == "door"),
        residents=residents, bg_people=order,
        workers_by_admin={k: tuple(v) for k, v in wba.items()},
    )


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson sample (Knuth for small means, rounded normal for large)."""
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
