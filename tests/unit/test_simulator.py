"""The simulator: deterministic, parseable native payloads, consistent truth, real noise."""
from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import json
import random
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from aiohttp import web
from typer.testing import CliRunner

from streams.cli.simulate import app
from simulator.formats import ALARM110_COLUMNS, MEDIATION_COLUMNS
from simulator.noise import haversine_m, id_check_digit, wgs84_to_bd09, wgs84_to_gcj02
from simulator.sender import send
from simulator.writer import generate


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "out"
    generate(out, days=1, seed=1)
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, name: str) -> str | None:
    for el in root.iter():
        if _local(el.tag) == name:
            return el.text
    return None


def _registry(run: Path) -> list[dict[str, str]]:
    with (run / "registry.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _split_multipart(ctype: str, body: bytes) -> list[tuple[str, bytes]]:
    boundary = re.search(r"boundary=([^;]+)", ctype).group(1).encode()  # type: ignore[union-attr]
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        ptype = re.search(rb"Content-Type: ([^;\r\n]+)", head).group(1).decode()  # type: ignore[union-attr]
        parts.append((ptype, data[:-2] if data.endswith(b"\r\n") else data))
    return parts


def _isapi_fields(ctype: str, body: bytes) -> dict[str, Any]:
    if ctype == "application/json":
        d = json.loads(body)
        return {"ip": d["ipAddress"], "channel": str(d["channelID"]), "dt": d["dateTime"], "et": d["eventType"],
                "state": d["eventState"], "plate": (d.get("ANPR") or {}).get("licensePlate")}
    if ctype.startswith("multipart/form-data"):
        parts = _split_multipart(ctype, body)
        xmls = [b for t, b in parts if t == "application/xml"]
        assert len(xmls) == 1
        assert all(b.startswith(b"\xff\xd8") and b.endswith(b"\xff\xd9") for t, b in parts if t == "image/jpeg")
        body = xmls[0]
    root = ET.fromstring(body)
    assert _local(root.tag) == "EventNotificationAlert"
    return {"ip": _find(root, "ipAddress"), "channel": _find(root, "channelID"), "dt": _find(root, "dateTime"),
            "et": _find(root, "eventType"), "state": _find(root, "eventState"), "plate": _find(root, "licensePlate")}


def _payload_ids(run: Path) -> dict[str, str]:
    """Recompute every payload's canonical event id, keyed by a locator string."""
    by_ip = {r["ip"]: r["device_id"] for r in _registry(run)}
    ids: dict[str, str] = {}
    for p in sorted((run / "gb28181").glob("*.xml")):
        raw = p.read_bytes()
        enc = re.match(rb'<\?xml[^>]*encoding="([^"]+)"', raw).group(1).decode()  # type: ignore[union-attr]
        # expat cannot read multi-byte encodings: decode with the prolog's encoding, drop the prolog
        text = raw.decode(enc)
        root = ET.fromstring(re.sub(r"^<\?xml[^>]*\?>", "", text))
        assert root.tag == "Notify" and _find(root, "CmdType") == "Alarm"
        dev = _find(root, "DeviceID")
        assert dev and len(dev) == 20 and dev.startswith("51322110")
        ids[f"gb28181/{p.name}"] = f"camera:{dev}:{_find(root, 'SN')}:{_find(root, 'AlarmTime')}"
    for n, line in enumerate((run / "isapi/requests.jsonl").read_text("utf-8").splitlines(), 1):
        req = json.loads(line)
        f = _isapi_fields(req["content_type"], base64.b64decode(req["body_b64"]))
        assert f["ip"] == req["device_ip"]
        if f["state"] == "inactive":
            continue  # heartbeat
        ids[f"isapi/requests.jsonl:{n}"] = f"camera:{by_ip[f['ip']]}:{f['channel']}:{f['dt']}:{f['et']}"
    for n, line in enumerate((run / "grid/reports.jsonl").read_text("utf-8").splitlines(), 1):
        ids[f"grid/reports.jsonl:{n}"] = "grid:" + json.loads(line)["reportId"]
    for n, line in enumerate((run / "door/events.jsonl").read_text("utf-8").splitlines(), 1):
        d = json.loads(line)
        if "AccessControllerEvent" in d:
            nid = f"{by_ip[d['ipAddress']]}:{d['dateTime']}:{d['AccessControllerEvent']['serialNo']}"
        else:
            nid = d["RecordID"]
        ids[f"door/events.jsonl:{n}"] = "door:" + nid
    with (run / "alarm110/jjd.csv").open(encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), 1):
            ids[f"alarm110/jjd.csv:{n}"] = "alarm110:" + row["JJDBH"]
    for rel, enc in (("mediation/cases.csv", "utf-8-sig"), ("mediation/cases_gbk.csv", "gbk")):
        with (run / rel).open(encoding=enc, newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh), 1):
                ids[f"{rel}:{n}"] = "mediation:" + row["案件编号"]
    ws = openpyxl.load_workbook(run / "mediation/cases.xlsx", read_only=True).active
    rows = list(ws.iter_rows(values_only=True))
    assert tuple(rows[0]) == MEDIATION_COLUMNS
    for n, row in enumerate(rows[1:], 2):
        ids[f"mediation/cases.xlsx:{n}"] = "mediation:" + str(row[0])
    return ids


def _locators(loc: dict[str, Any]) -> list[str]:
    if "line" in loc:
        return [f"{loc['file']}:{loc['line']}"]
    if "row" in loc:
        return [f"{loc['file']}:{loc['row']}"]
    if "rows" in loc:
        return [f"{loc['file']}:{r}" for r in loc["rows"]]
    return [loc["file"]]


def test_same_seed_gives_identical_files(run: Path, tmp_path: Path) -> None:
    generate(tmp_path / "again", days=1, seed=1)
    assert _hashes(run) == _hashes(tmp_path / "again")
    generate(tmp_path / "other", days=1, seed=2)
    other = _hashes(tmp_path / "other")
    assert other["truth.json"] != _hashes(run)["truth.json"]
    assert other["registry.csv"] == _hashes(run)["registry.csv"]  # the registry is configuration


def test_registry_has_the_county_cameras(run: Path) -> None:
    rows = _registry(run)
    kinds = Counter(r["kind"] for r in rows)
    assert (kinds["camera_tianwang"], kinds["camera_xueliang"], kinds["camera_huiyan"]) == (408, 654, 2000)
    assert kinds["door"] >= 5
    for key in ("device_id", "ip", "mac", "uuid"):
        assert len({r[key] for r in rows}) == len(rows)
    assert all(re.fullmatch(r"51322110\d{12}", r["device_id"]) for r in rows)
    assert all(r["ip"].startswith("10.51.") and re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", r["mac"])
               for r in rows)
    assert all(30.9 < float(r["lat"]) < 31.7 and 103.1 < float(r["lon"]) < 103.7 for r in rows)
    names = " ".join(r["name"] for r in rows if r["kind"] == "door")
    assert "金竹苑" in names and "新街小区" in names
    towns = Counter(r["admin_code"][:9] for r in rows if r["kind"] != "door")
    assert towns.most_common(1)[0][0] == "513221100"  # 威州 densest


def test_every_payload_parses_and_truth_matches_it(run: Path) -> None:
    payload_ids = _payload_ids(run)
    truth = json.loads((run / "truth.json").read_text("utf-8"))
    assert truth["seed"] == 1 and truth["days"] == 1
    used: set[str] = set()
    for ev in truth["events"]:
        locs = _locators(ev["payload"])
        for loc in locs:
            assert loc not in used, f"two truth events share payload {loc}"
            used.add(loc)
            assert payload_ids[loc] == ev["event_id"]
        assert ev["event_id"].startswith(ev["source"] + ":")
        assert set(ev["persons"]) <= set(truth["persons"])
    assert used == set(payload_ids), "payloads without a truth event"
    # duplicates: same id as a delivered original, same bytes
    originals = {e["event_id"]: e for e in truth["events"] if not e["duplicate"]}
    assert len(originals) == sum(1 for e in truth["events"] if not e["duplicate"])
    dups = [e for e in truth["events"] if e["duplicate"]]
    assert dups
    for d in dups:
        o = originals[d["event_id"]]
        assert d["incident"] == o["incident"] and d["delivered_offset_s"] >= o["delivered_offset_s"]
        if "line" not in d["payload"] and "row" not in d["payload"]:
            assert (run / d["payload"]["file"]).read_bytes() == (run / o["payload"]["file"]).read_bytes()
    counts = Counter(e["feed"] for e in originals.values())
    for feed in ("gb28181", "isapi", "grid", "alarm110", "mediation", "door"):
        assert truth["counts"][feed] == counts[feed] > 0


def test_scenario_incidents_and_background_singletons(run: Path) -> None:
    truth = json.loads((run / "truth.json").read_text("utf-8"))
    events = [e for e in truth["events"] if not e["duplicate"]]
    by_inc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_inc[e["incident"]].append(e)
    scen = {e["scenario"] for e in events} - {"background"}
    assert scen == {"dispute_demolition", "river_rescue", "tourist_medical", "theft_vehicle",
                    "crowd_gathering", "flood"}
    for inc, evs in by_inc.items():
        if inc.startswith("bg-"):
            assert len(evs) == 1 and evs[0]["scenario"] == "background"
        else:
            assert len(evs) >= 2
    flood = by_inc["S6-flood"]
    assert len(flood) >= 200 and {e["feed"] for e in flood} >= {"gb28181", "isapi", "alarm110", "grid"}
    s1 = sorted(by_inc["S1-qishan-demolition"], key=lambda e: e["occurred_at"])
    assert [e["feed"] for e in s1] == ["grid", "alarm110", "mediation"]
    assert s1[2]["occurred_at"][:10] == "2026-07-24"
    # daily background volumes are realistic
    bg = Counter(e["feed"] for e in events if e["scenario"] == "background")
    assert 1 <= bg["grid"] <= 15 and 15 <= bg["alarm110"] <= 50 and bg["door"] >= 150
    assert bg["gb28181"] + bg["isapi"] >= 200 and 1 <= bg["mediation"] <= 3


def test_river_and_theft_scenarios_are_close_in_space_and_time(run: Path) -> None:
    truth = json.loads((run / "truth.json").read_text("utf-8"))
    reg = {r["device_id"]: r for r in _registry(run)}
    rows = {r["JJDBH"]: r for r in csv.DictReader((run / "alarm110/jjd.csv").open(encoding="utf-8", newline=""))}
    river = [e for e in truth["events"] if e["incident"] == "S2-river-weizhou" and not e["duplicate"]]
    call = next(e for e in river if e["feed"] == "alarm110")
    row = rows[call["event_id"].split(":", 1)[1]]
    assert row["BJLX"] == "400300"
    cams = [e for e in river if e["source"] == "camera"]
    assert 2 <= len(cams) <= 3
    for c in cams:
        dev = reg[c["event_id"].split(":")[1]]
        d = haversine_m(float(row["ZDDWWD"]), float(row["ZDDWJD"]), float(dev["lat"]), float(dev["lon"]))
        assert d < 1000
    lats = [float(reg[c["event_id"].split(":")[1]]["lat"]) for c in cams]
    lons = [float(reg[c["event_id"].split(":")[1]]["lon"]) for c in cams]
    spread = haversine_m(lats[0], lons[0], lats[-1], lons[-1])
    assert 100 <= spread <= 400
    theft = [e for e in truth["events"] if e["incident"] == "S4-theft-plate" and not e["duplicate"]]
    call = next(e for e in theft if e["feed"] == "alarm110")
    assert "川U·A7K35" in rows[call["event_id"].split(":", 1)[1]]["BJNR"]
    anpr = [e for e in theft if e["feed"] == "isapi"]
    assert len(anpr) >= 2 and all(e["vehicles"] == ["川UA7K35"] for e in anpr)


def test_noise_is_present(run: Path) -> None:
    grid = [json.loads(x) for x in (run / "grid/reports.jsonl").read_text("utf-8").splitlines()]
    coord = Counter(g["location"].get("coordType", "absent") for g in grid)
    assert coord["gcj02"] >= 1 and coord["bd09"] >= 1
    texts = [g["description"] for g in grid]
    texts += [r["BJNR"] for r in csv.DictReader((run / "alarm110/jjd.csv").open(encoding="utf-8", newline=""))]
    assert any(ch in t for t in texts for ch in "網報區鄰醫")          # traditional characters
    ids = [p["idCard"] for g in grid for p in g["persons"]]
    ids += [r["S_IDENTITYCARDNO"] for r in csv.DictReader((run / "alarm110/jjd.csv").open(encoding="utf-8"))]
    ws = openpyxl.load_workbook(run / "mediation/cases.xlsx", read_only=True).active
    ids += [str(r[9]) for r in list(ws.iter_rows(values_only=True))[1:]]
    assert any(re.fullmatch(r"\d{15}", i) for i in ids)                 # legacy 15-digit
    assert "" in ids                                                     # missing
    assert any(len(i) == 18 and i[-1] != id_check_digit(i[:17]) for i in ids if re.fullmatch(r"\d{17}[\dX]", i))
    phones = [p["phone"] for g in grid for p in g["persons"]]
    assert any(p.startswith("+86") for p in phones) and any(" " in p for p in phones)
    names = Counter((p["name"], p["admin_code"]) for p in json.loads((run / "truth.json").read_text("utf-8"))
                    ["persons"].values())
    same_name = Counter(n for n, _ in names)
    assert any(v >= 2 for v in same_name.values())                       # 王伟 in two villages
    # the GCJ-02 / BD-09 shifts are the published ones (hundreds of metres here)
    lat, lon = 31.48, 103.59
    assert 100 < haversine_m(lat, lon, *wgs84_to_gcj02(lat, lon)) < 800
    assert haversine_m(lat, lon, *wgs84_to_bd09(lat, lon)) > haversine_m(lat, lon, *wgs84_to_gcj02(lat, lon))


def test_files_open_with_their_readers(run: Path) -> None:
    gbk = list(csv.reader((run / "mediation/cases_gbk.csv").open(encoding="gbk", newline="")))
    bom = (run / "mediation/cases.csv").read_bytes()
    assert bom.startswith(b"\xef\xbb\xbf") and tuple(gbk[0]) == MEDIATION_COLUMNS
    assert any(p.read_bytes().startswith(b'<?xml version="1.0" encoding="GB2312"?>')
               for p in (run / "gb28181").glob("*.xml"))
    db = sqlite3.connect(run / "alarm110/jjd.sqlite")
    rows = db.execute(f"SELECT {', '.join(ALARM110_COLUMNS)} FROM JJD ORDER BY GXSJ, JJDBH").fetchall()
    db.close()
    csv_rows = list(csv.reader((run / "alarm110/jjd.csv").open(encoding="utf-8", newline="")))[1:]
    assert sorted(map(tuple, csv_rows)) == sorted(rows)
    manifest = json.loads((run / "manifest.json").read_text("utf-8"))
    lines = [json.loads(x) for x in (run / "delivery.jsonl").read_text("utf-8").splitlines()]
    assert manifest["delivery"]["count"] == len(lines)
    offsets = [x["offset_s"] for x in lines]
    assert offsets == sorted(offsets)
    assert any(x["occurred_offset_s"] > y["occurred_offset_s"] for x, y in zip(lines, lines[1:]))  # out of order
    assert any(x["late"] for x in lines)


def test_cli_default_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--out", str(tmp_path / "o"), "--days", "1", "--seed", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Simulated event mix" in result.output and (tmp_path / "o/truth.json").exists()


def test_scale_multiplies_background(tmp_path: Path) -> None:
    small = generate(tmp_path / "a", days=1, seed=5, scale=1.0)
    big = generate(tmp_path / "b", days=1, seed=5, scale=3.0)
    assert big["counts"]["door"] > 2.5 * small["counts"]["door"]


def test_sender_posts_and_inserts(tmp_path: Path) -> None:
    seen: Counter[str] = Counter()

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        assert body
        seen[request.path] += 1
        return web.Response(status=202 if request.path != "/door/events" else 200)

    async def main() -> Counter[tuple[str, str]]:
        webapp = web.Application()
        webapp.router.add_post("/{tail:.*}", handler)
        runner = web.AppRunner(webapp)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            return await send(f"http://127.0.0.1:{port}", rate=600.0, minutes=0.02,
                              alarm110_db=f"sqlite:///{tmp_path / 'desk.db'}", progress=False)
        finally:
            await runner.cleanup()

    counts = asyncio.run(main())
    assert sum(counts.values()) == 720
    http = {ep: n for (ep, status), n in counts.items() if ep.startswith("/")}
    assert http == dict(seen) and set(http) >= {"/gb28181/alarm", "/isapi/alert", "/door/events"}
    inserted = counts[("db:JJD", "inserted")]
    assert inserted > 0
    n = sqlite3.connect(tmp_path / "desk.db").execute("SELECT COUNT(*) FROM JJD").fetchone()[0]
    assert n == inserted


def test_background_camera_alarms_inside_the_flood_footprint_belong_to_the_flood() -> None:
    from simulator.model import build_world
    from simulator.scenarios import Builder, absorb, background_hour, build_scenarios

    b = Builder(build_world(1))
    flood = next(fp for fp in build_scenarios(b).footprints if fp.scenario == "flood")
    devices = {d.device_id: d for d in b.world.devices}
    lat, lon, t = flood.reports[0]
    cam = min((d for d in b.world.devices if d.kind != "door"),
              key=lambda d: (d.lat - lat) ** 2 + (d.lon - lon) ** 2)
    rng = random.Random(0)
    inside = b.gb(rng, cam, t + 60, 5, 2, "移动侦测报警", "intrusion")
    assert absorb(inside, [flood], devices).incident == flood.incident
    assert absorb(inside, [flood], devices).scenario == "flood"
    later = b.gb(rng, cam, t + 16 * 60 + 3600, 5, 2, "移动侦测报警", "intrusion")
    assert absorb(later, [flood], devices) == later                      # an hour later: its own
    left = b.gb(rng, cam, t + 60, 5, 3, "物品遗留", "other")
    assert absorb(left, [flood], devices) == left                        # not a flood-tripped kind
    # the run's truth: every absorbed alarm lies in the footprint
    absorbed = [e for day in range(1) for h in range(24) for e in background_hour(b, day, h, 1.0)
                if absorb(e, [flood], devices) is not e]
    assert all(flood.covers(devices[e.native_id.split(":")[0]].lat, devices[e.native_id.split(":")[0]].lon, e.t)
               for e in absorbed)


def test_grid_followups_settle_the_same_report(run: Path) -> None:
    """Some dispute/help grid reports are delivered again later, same reportId, status 已化解/已办结."""
    from simulator.scenarios import grid_followup

    truth = json.loads((run / "truth.json").read_text("utf-8"))
    follow = [e for e in truth["events"] if e.get("followup")]
    assert follow and truth["counts"]["followups"] == len(follow)
    originals = {e["event_id"]: e for e in truth["events"] if not e["duplicate"]}
    lines = (run / "grid" / "reports.jsonl").read_text("utf-8").splitlines()
    for f in follow:
        o = originals[f["event_id"]]
        assert f["duplicate"] and f["delivered_offset_s"] > o["delivered_offset_s"] and o["kind"] in ("dispute", "help")
        body = json.loads(lines[f["payload"]["line"] - 1])
        assert body["reportId"] == f["event_id"].split(":", 1)[1] and body["status"] in ("已化解", "已办结")
        assert json.loads(lines[o["payload"]["line"] - 1])["status"] == "reported"
    assert grid_followup("WG1", "dispute") == grid_followup("WG1", "dispute")
    assert grid_followup("WG1", "intrusion") is None
    shares = [grid_followup(f"WG{i}", "dispute") is not None for i in range(2000)]
    assert 0.5 < sum(shares) / len(shares) < 0.7
