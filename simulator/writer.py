"""Stream simulated deliveries to disk: native payload files, truth.json, manifest.json, delivery.jsonl.

Events are produced in occurrence order and pass through a small heap that releases them in
delivery order (delivery = occurrence + delay; late events are held longer, duplicates are a second
delivery of the same bytes). Only the not-yet-delivered events are in memory, so millions of
events stream to disk. Every payload file is written in delivery order.
"""
from __future__ import annotations

import base64
import csv
import heapq
import io
import json
import re
import sqlite3
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from .formats import (
    ALARM110_COLUMNS, ENDPOINTS, MEDIATION_COLUMNS, alarm110_row, gb28181_xml, isapi_request, json_body,
    mediation_rows,
)
from .model import BASE_DATE, REGISTRY_COLUMNS, Person, SimEvent, World, build_world
from .scenarios import Builder, build_scenarios, event_stream

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of an event (the original, or a duplicate of the same payload)."""

    at: int
    event: SimEvent
    duplicate: bool
    followup: bool = False  # a later, updated delivery of the same record (same native id)


def followup_event(ev: SimEvent) -> SimEvent:
    """The event as its follow-up delivery carries it (payload with the follow-up's changes)."""
    assert ev.followup is not None
    return replace(ev, payload={**ev.payload, **dict(ev.followup[1])}, dup_delay=None, followup=None)


def deliveries(events: Iterator[SimEvent]) -> Iterator[Delivery]:
    """Re-order events (occurrence order) into delivery order, duplicates and follow-ups included."""
    heap: list[tuple[int, int, Delivery]] = []
    order = 0
    for ev in events:
        while heap and heap[0][0] <= ev.t:
            yield heapq.heappop(heap)[2]
        at = ev.t + ev.delay
        order += 1
        heapq.heappush(heap, (at, order, Delivery(at, ev, False)))
        if ev.dup_delay is not None:
            order += 1
            heapq.heappush(heap, (at + ev.dup_delay, order, Delivery(at + ev.dup_delay, ev, True)))
        if ev.followup is not None:
            order += 1
            later = at + ev.followup[0]
            heapq.heappush(heap, (later, order, Delivery(later, followup_event(ev), True, True)))
    while heap:
        yield heapq.heappop(heap)[2]


def write_registry(world: World, path: Path) -> None:
    """registry.csv with the contract columns."""
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=REGISTRY_COLUMNS)
        w.writeheader()
        for d in world.devices:
            w.writerow(d.row())


def normalize_zip(data: bytes, stamp: str = "2026-07-14T00:00:00Z") -> bytes:
    """Rewrite a zip (xlsx) with fixed entry timestamps and a fixed `modified` property (openpyxl
    stamps the wall clock on save) so output is byte-identical."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, ZIP_EPOCH)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o600 << 16
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                                 rb"\g<1>" + stamp.encode() + rb"\g<2>", content)
            dst.writestr(zi, content)
    return out.getvalue()


@dataclass
class OutputWriter:
    """Writes deliveries incrementally under `out`."""

    out: Path
    world: World
    days: int
    scale: float
    counts: Counter[str] = field(default_factory=Counter)
    mix: Counter[tuple[str, str]] = field(default_factory=Counter)
    extra: Counter[str] = field(default_factory=Counter)
    person_ids: set[str] = field(default_factory=set)
    _files: dict[str, Any] = field(default_factory=dict)
    _lines: Counter[str] = field(default_factory=Counter)
    _first_truth: bool = True

    def open(self) -> None:
        """Create the directory tree and open every stream."""
        for sub in ("gb28181", "isapi", "grid", "alarm110", "mediation", "door"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        write_registry(self.world, self.out / "registry.csv")
        o = self.out

        def text(rel: str, enc: str = "utf-8") -> TextIO:
            f = (o / rel).open("w", encoding=enc, newline="")
            self._files[rel] = f
            return f

        for rel in ("isapi/requests.jsonl", "grid/reports.jsonl", "door/events.jsonl", "delivery.jsonl"):
            text(rel)
        self._jjd = csv.writer(text("alarm110/jjd.csv"))
        self._jjd.writerow(ALARM110_COLUMNS)
        self._med = {"csv": csv.writer(text("mediation/cases.csv", "utf-8-sig")),
                     "gbk": csv.writer(text("mediation/cases_gbk.csv", "gbk"))}
        for w in self._med.values():
            w.writerow(MEDIATION_COLUMNS)
        from openpyxl import Workbook

        self._wb = Workbook(write_only=True)
        fixed = self.world.base.astimezone(timezone.utc).replace(tzinfo=None)
        self._wb.properties.created = fixed
        self._wb.properties.modified = fixed
        self._ws = self._wb.create_sheet("调解案件")
        self._ws.append(list(MEDIATION_COLUMNS))
        self._xlsx_rows = 1
        db = o / "alarm110" / "jjd.sqlite"
        if db.exists():
            db.unlink()
        self._db = sqlite3.connect(db)
        cols = ", ".join(f"{c} TEXT" + (" PRIMARY KEY" if c == "JJDBH" else "") for c in ALARM110_COLUMNS)
        self._db.execute(f"CREATE TABLE JJD ({cols})")
        self._db.execute("CREATE INDEX idx_jjd_cursor ON JJD (GXSJ, JJDBH)")
        self._truth = text("truth.json")
        self._truth.write(f'{{"seed": {self.world.seed}, "days": {self.days}, "scale": {self.scale}, '
                          f'"base_date": "{self.world.base.isoformat()}", "events": [\n')

    def _line(self, rel: str, obj: dict[str, Any] | str) -> int:
        line = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        self._files[rel].write(line + "\n")
        self._lines[rel] += 1
        return self._lines[rel]

    def write(self, d: Delivery) -> None:
        """Render one delivery, append it to its file, and record truth and manifest lines."""
        ev = d.event
        feed = ev.feed
        seq = self.counts["deliveries"] + 1
        self.counts["deliveries"] = seq
        if feed == "gb28181":
            rel = f"gb28181/{seq:08d}_{ev.payload['DeviceID']}_{ev.payload['SN']}{'_dup' if d.duplicate else ''}.xml"
            (self.out / rel).write_bytes(gb28181_xml(ev.payload, ev.form))
            loc: dict[str, Any] = {"file": rel}
        elif feed == "isapi":
            ct, body = isapi_request(ev.payload, ev.form)
            n = self._line("isapi/requests.jsonl", {"content_type": ct, "body_b64": base64.b64encode(body).decode(),
                                                     "device_ip": ev.payload["ipAddress"]})
            loc = {"file": "isapi/requests.jsonl", "line": n}
        elif feed in ("grid", "door"):
            rel = "grid/reports.jsonl" if feed == "grid" else "door/events.jsonl"
            loc = {"file": rel, "line": self._line(rel, json_body(ev.payload).decode("utf-8"))}
        elif feed == "alarm110":
            row = alarm110_row(ev.payload)
            self._jjd.writerow(row)
            self._lines["alarm110/jjd.csv"] += 1
            self._db.execute(f"INSERT INTO JJD VALUES ({', '.join('?' * len(row))})", row)
            loc = {"file": "alarm110/jjd.csv", "row": self._lines["alarm110/jjd.csv"], "table": "JJD"}
        elif feed == "mediation":
            rows = mediation_rows(ev.payload)
            if ev.form == "xlsx":
                for r in rows:
                    self._ws.append(r)
                first = self._xlsx_rows + 1
                self._xlsx_rows += len(rows)
                loc = {"file": "mediation/cases.xlsx", "rows": list(range(first, first + len(rows)))}
            else:
                rel = "mediation/cases.csv" if ev.form == "csv" else "mediation/cases_gbk.csv"
                for r in rows:
                    self._med[ev.form].writerow(r)
                first = self._lines[rel] + 1
                self._lines[rel] += len(rows)
                loc = {"file": rel, "rows": list(range(first, first + len(rows)))}
        else:
            raise ValueError(feed)
        heartbeat = ev.kind == "heartbeat"
        self._line("delivery.jsonl", {
            "seq": seq, "offset_s": d.at, "occurred_offset_s": ev.t, "feed": feed,
            "endpoint": ENDPOINTS.get(feed, "db:JJD"), "event_id": None if heartbeat else ev.event_id,
            "duplicate": d.duplicate, "late": ev.late, "payload": loc,
            **({"followup": True} if d.followup else {})})
        if heartbeat:
            self.extra["heartbeats"] += 1
            return
        truth = {"event_id": ev.event_id, "source": ev.source, "feed": feed, "kind": ev.kind,
                 "scenario": ev.scenario, "incident": ev.incident, "persons": list(ev.persons),
                 "vehicles": list(ev.vehicles), "occurred_at": self.world.at(ev.t).isoformat(),
                 "delivered_offset_s": d.at, "duplicate": d.duplicate, "late": ev.late, "payload": loc,
                 **({"followup": True} if d.followup else {})}
        self._truth.write(("" if self._first_truth else ",\n")
                          + json.dumps(truth, ensure_ascii=False, separators=(",", ":")))
        self._first_truth = False
        self.person_ids.update(ev.persons)
        if d.followup:
            self.extra["followups"] += 1
        elif d.duplicate:
            self.extra["duplicates"] += 1
        else:
            self.counts[feed] += 1
            self.mix[(feed, ev.kind)] += 1
            if ev.late:
                self.extra["late"] += 1

    def close(self, persons: dict[str, Person]) -> dict[str, Any]:
        """Finish truth.json, the xlsx, the sqlite file and manifest.json; return the summary."""
        counts = {k: self.counts[k] for k in ("gb28181", "isapi", "grid", "alarm110", "mediation", "door")}
        by_source = Counter({"camera": counts["gb28181"] + counts["isapi"]})
        for k in ("grid", "alarm110", "mediation", "door"):
            by_source[k] = counts[k]
        pmap = {pid: persons[pid].truth() for pid in sorted(self.person_ids)}
        self._truth.write("\n],\n" + f'"persons": {json.dumps(pmap, ensure_ascii=False)},\n'
                          + f'"counts": {json.dumps({**counts, **dict(self.extra)}, ensure_ascii=False)},\n'
                          + f'"counts_by_source": {json.dumps(dict(by_source))}}}\n')
        for f in self._files.values():
            f.close()
        self._db.commit()
        self._db.close()
        buf = io.BytesIO()
        self._wb.save(buf)
        stamp = self.world.base.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        (self.out / "mediation" / "cases.xlsx").write_bytes(normalize_zip(buf.getvalue(), stamp))
        manifest = {
            "seed": self.world.seed, "days": self.days, "scale": self.scale,
            "base_date": self.world.base.isoformat(),
            "files": {
                "registry": "registry.csv", "truth": "truth.json", "delivery": "delivery.jsonl",
                "gb28181": "gb28181/*.xml (one Notify per file; name = delivery seq, DeviceID, SN)",
                "isapi": "isapi/requests.jsonl", "grid": "grid/reports.jsonl",
                "alarm110": ["alarm110/jjd.csv", "alarm110/jjd.sqlite#JJD"],
                "mediation": ["mediation/cases.csv", "mediation/cases_gbk.csv", "mediation/cases.xlsx"],
                "door": "door/events.jsonl",
            },
            "endpoints": ENDPOINTS,
            "formats": {
                "isapi/requests.jsonl": "one push per line: {content_type, body_b64, device_ip}; for multipart the "
                                        "boundary is in content_type, exactly as the HTTP header",
                "grid/reports.jsonl": "one POST /grid/reports body per line",
                "door/events.jsonl": "one POST /door/events body per line (ISAPI AccessControllerEvent or GA/T 1400)",
                "alarm110": "JJD rows; poll with the cursor (GXSJ, JJDBH)",
                "mediation": "one row per party; each case is in exactly one of the three files",
            },
            "delivery": {
                "file": "delivery.jsonl",
                "order": "lines are in delivery order; every payload file is also written in delivery order",
                "fields": {"seq": "delivery sequence", "offset_s": "delivery time, seconds after base_date",
                           "occurred_offset_s": "event time, seconds after base_date", "feed": "native feed",
                           "endpoint": "receiver path (db:JJD = insert into the 110 table)",
                           "event_id": "canonical id (null for ISAPI heartbeats, which are not events)",
                           "duplicate": "a further delivery of an event already delivered (the same payload, "
                                        "or with followup the same record updated)",
                           "followup": "present (true) on a later delivery of the same record with a "
                                       "changed status (a grid report settled: 已化解/已办结)",
                           "late": "delivered late",
                           "payload": "where the bytes are"},
                "count": self.counts["deliveries"],
            },
            "counts": {**counts, **dict(self.extra)},
        }
        (self.out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n",
                                                encoding="utf-8")
        return {"counts": counts, "extra": dict(self.extra), "mix": dict(self.mix),
                "deliveries": self.counts["deliveries"]}


def generate(out: Path, days: int = 1, seed: int = 1, scale: float = 1.0,
             base: datetime = BASE_DATE) -> dict[str, Any]:
    """Simulate `days` of the county into `out` (deterministic for the same arguments)."""
    world = build_world(seed, base)
    builder = Builder(world)
    scen_persons = build_scenarios(Builder(world)).persons   # same ids: scenario persons are seed-derived
    persons = {p.pid: p for p in world.persons} | scen_persons
    writer = OutputWriter(Path(out), world, days, scale)
    writer.open()
    for d in deliveries(event_stream(builder, days, scale)):
        writer.write(d)
    return writer.close(persons)
