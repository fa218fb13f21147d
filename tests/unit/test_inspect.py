"""`pingan connectors inspect`: the report of connectors/ingest/inspect.py and its 80-column rendering."""
from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.ingest import inspect as insp
from connectors.sources import registry as source_registry
from connectors.sources.common import quality_flag, result, with_unmapped
from streams.cli.connectors import app as connectors_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
JJD = FIXTURES / "alarm110" / "jjd_export_utf8.csv"
NOW_MS = 1_784_500_000_000  # 2026-07-19 (after every fixture time)


def _variant_csv(tmp_path: Path, edit) -> Path:
    rows = list(csv.DictReader(io.StringIO(JJD.read_text(encoding="utf-8"))))
    for r in rows:
        r["CJDW"] = "汶川县公安局"  # a column no mapping knows
    edit(rows)
    out = tmp_path / "jjd_variant.csv"
    with open(out, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def test_alarm110_export_maps_every_column_and_accepts_every_row() -> None:
    report = insp.inspect_path(JJD, received_at_ms=NOW_MS)
    (feed,) = report.feeds
    assert feed.feed == "alarm110" and "content" in feed.detected
    assert feed.records == feed.accepted + feed.warned + feed.dead_lettered > 0
    assert feed.dead_lettered == 0
    by_name = {m.native: m for m in feed.fields}
    assert by_name["JJDBH"].maps_to is not None and by_name["BJNR"].maps_to is not None
    assert not [m for m in feed.fields if m.how == "unmapped"]


def test_unknown_column_is_reported_with_its_count(tmp_path: Path) -> None:
    path = _variant_csv(tmp_path, lambda rows: None)
    (feed,) = insp.inspect_path(path, received_at_ms=NOW_MS).feeds
    cjdw = next(m for m in feed.fields if m.native == "CJDW")
    assert cjdw.maps_to is None and cjdw.how in ("unmapped", "unused")
    assert cjdw.records == feed.records
    assert feed.fields[0].native == "CJDW"  # problems first


def test_coordinates_outside_the_county_and_future_times_are_warnings(tmp_path: Path) -> None:
    def edit(rows):
        rows[0]["ZDDWJD"] = "113.3421"             # 1000 km east of Wenchuan
        rows[1]["BJSJ"] = "2031-07-14 09:45:03"    # five years after it was received
    (feed,) = insp.inspect_path(_variant_csv(tmp_path, edit), received_at_ms=NOW_MS).feeds
    assert [f.count for f in feed.out_of_bounds] == [1]
    assert any("future" in t.reason and t.count == 1 for t in feed.times)
    assert feed.warned >= 2 and feed.dead_lettered == 0


def _unit(feed: str, records, unmapped=None, rejected=()):
    spec = source_registry.feed(feed)
    res = result(spec.topic, spec.schema, records, rejected)
    if unmapped:
        res = with_unmapped(res, unmapped)
    return insp._Unit(feed, "sample.json", res, [], "--feed")


def _grid_record(report_id: str, reported: str = "2026-07-14 10:00:00", received: int = NOW_MS, **extra):
    rec = {"native_id": report_id, "received_at": received, "raw_format": "grid-json", "report_id": report_id,
           "grid_code": "513221107201-03", "reporter_id": "WGY-1", "category_code": "0401",
           "category_name": "山洪泥石流", "description": "沟水上涨", "address": "三江镇柒山村",
           "longitude": 103.342, "latitude": 31.108, "coord_system": "WGS84", "persons": [],
           "reported_at_local": reported, "status": None, "quality": []}
    rec.update(extra)
    return rec


def _report(units):
    ctx = source_registry.context()
    return insp._report("sample", {units[0].feed: units}, ctx, b"s", "Asia/Shanghai", [])


def test_quality_flags_are_grouped_into_parse_failures_and_unknown_codes() -> None:
    flags = [quality_flag("status", "status 'xx' is not a known status", "xx"),
             quality_flag("location.lng", "lng 'abc' is not a number", "abc")]
    recs = [_grid_record(f"WG{i}", quality=list(flags)) for i in range(3)] + [_grid_record("WG9")]
    (feed,) = _report([_unit("grid", recs, unmapped={"extraField": 4})]).feeds
    assert [(f.field, f.count) for f in feed.parse_failures] == [("location.lng", 3)]
    assert feed.parse_failures[0].example is None  # values stay out of parse-failure rows
    assert ("status", 3) in [(f.field, f.count) for f in feed.unknown_codes]
    assert (feed.records, feed.warned, feed.accepted) == (4, 3, 1)
    assert [(m.native, m.records, m.how) for m in feed.fields] == [("extraField", 4, "unmapped")]


def test_offsetless_time_eight_hours_off_the_received_time() -> None:
    # received at 10:00 local (02:00Z); the source wrote the UTC time 02:00 without an offset,
    # which reads as 02:00 local: 8 h before it was received
    received = 1_783_994_400_000  # 2026-07-14T02:00:00Z
    recs = [_grid_record("WG1", "2026-07-14 02:00:00", received)]
    (feed,) = _report([_unit("grid", recs)]).feeds
    assert any("8 h" in t.reason for t in feed.times)
    (feed,) = _report([_unit("grid", [_grid_record("WG2", "2026-07-14T02:00:00+08:00", received)])]).feeds
    assert not any("8 h" in t.reason for t in feed.times)


def test_dead_letters_counted_and_share_adds_up() -> None:
    from connectors.sources.common import Rejected
    recs = [_grid_record("WG1"), _grid_record("WG2", reported="not a time")]
    (feed,) = _report([_unit("grid", recs, rejected=[Rejected("missing reportId", "MissingField")])]).feeds
    assert feed.dead_lettered == 2  # one at translate, one at normalize
    assert {d.field for d in feed.dead_letters} == {"MissingField", "normalize:NormalizeError"}
    assert feed.records == 3 and feed.accepted == 1


@pytest.mark.parametrize("path, feed", [
    ("grid/reports_list_wgs84_bd09.json", "grid"),
    ("gb28181/alarm_video_intrusion_gb2312.xml", "gb28181"),
    ("isapi/anpr_hik20.xml", "isapi"),
    ("door/gat1400_single.json", "door"),
    ("mediation/cases_gbk.csv", "mediation"),
    ("mediation/cases.xlsx", "mediation"),
    ("alarm110/jjd_export_gbk.csv", "alarm110"),
])
def test_feed_is_detected_from_the_file(path: str, feed: str) -> None:
    data = (FIXTURES / path).read_bytes()
    assert insp.detect_feed(data, path)[0] == feed


def test_folder_of_one_feed_reports_every_file(tmp_path: Path) -> None:
    report = insp.inspect_path(FIXTURES / "grid", received_at_ms=NOW_MS)
    (feed,) = report.feeds
    assert len(feed.inputs) == len(list((FIXTURES / "grid").glob("*.json")))
    assert feed.dead_lettered >= 2 and feed.accepted >= 1
    assert {d.field for d in feed.dead_letters} >= {"MissingField", "MalformedJson"}


def test_database_view_and_a_missing_table(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(JJD.read_text(encoding="utf-8"))))
    db = tmp_path / "desk.db"
    con = sqlite3.connect(db)
    cols = list(rows[0])
    con.execute(f"create table T_JJD ({','.join(cols)})")
    con.executemany(f"insert into T_JJD values ({','.join('?' * len(cols))})", [list(r.values()) for r in rows])
    con.execute("create view V_JJD as select * from T_JJD")
    con.commit()
    con.close()
    url = f"sqlite:///{db}"
    got = insp.read_database(url, "v_jjd")
    assert len(got) == len(rows)
    (feed,) = insp.inspect_rows(got, "alarm110", target="V_JJD", received_at_ms=NOW_MS).feeds
    assert feed.records == len(rows) and feed.dead_lettered == 0
    with pytest.raises(insp.InspectError, match="T_JJD, V_JJD"):
        insp.read_database(url, "JJD")


def test_cli_report_fits_80_columns(tmp_path: Path) -> None:
    path = _variant_csv(tmp_path, lambda rows: rows[0].update(ZDDWJD="113.3421"))
    out = CliRunner().invoke(connectors_app, ["inspect", str(path)], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    assert "CJDW" in out.output and "dead-lettered" in out.output and "Nothing was published" in out.output
    assert "under [aliases]" in out.output.replace("\n", " ")
    assert max(len(line) for line in out.output.splitlines()) <= 80
    js = CliRunner().invoke(connectors_app, ["inspect", str(path), "--json"])
    assert js.exit_code == 0 and '"feed": "alarm110"' in js.output


def test_cli_unknown_file_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x00\x01 nothing here")
    out = CliRunner().invoke(connectors_app, ["inspect", str(junk)])
    assert out.exit_code == 2 and "pass --feed" in out.output


def test_nested_fields_map_inside_their_object() -> None:
    (feed,) = insp.inspect_path(FIXTURES / "grid", received_at_ms=NOW_MS).feeds
    got = {m.native: m.maps_to for m in feed.fields}
    assert got["persons[].name"] == "person_name" and got["persons[].address"] == "person_address"
    assert got["location.lng"] == "longitude"
    assert got["category.name"] != "person_name"  # a category's name is not a person's


def test_an_ignored_column_and_a_second_alias_of_one_field(tmp_path: Path) -> None:
    profile_dir = tmp_path / "profiles"
    profile_dir.mkdir()
    (profile_dir / "alarm110.toml").write_text('ignore = ["CJDW"]\n', encoding="utf-8")
    path = _variant_csv(tmp_path, lambda rows: [r.update(JJSJ=r["BJSJ"]) for r in rows])
    (feed,) = insp.inspect_path(path, profile_dir=profile_dir, received_at_ms=NOW_MS).feeds
    by_name = {m.native: m for m in feed.fields}
    assert by_name["CJDW"].how == "ignored"
    assert (by_name["BJSJ"].how, by_name["JJSJ"].how, by_name["JJSJ"].after) == ("alias", "fallback", "BJSJ")
    assert str(profile_dir / "alarm110.toml") in feed.profile_files


def test_cli_shows_unknown_codes_and_parse_failures_verbatim() -> None:
    out = CliRunner().invoke(connectors_app, ["inspect", str(FIXTURES / "alarm110" / "jjd_export_bad_rows.csv")],
                             env={"COLUMNS": "100"})
    assert out.exit_code == 0, out.output
    assert "Unknown codes" in out.output and "[codes.category]" in out.output  # brackets are text, not markup
    assert "Values that failed to parse" in out.output and "Dead letters" in out.output


def test_a_capture_of_recorded_pushes(tmp_path: Path) -> None:
    import base64
    import json

    lines = [json.dumps({"content_type": "application/json",
                         "body_b64": base64.b64encode((FIXTURES / "grid" / f).read_bytes()).decode()})
             for f in ("report_gcj02.json", "report_gbk.json", "malformed.json")]
    capture = tmp_path / "requests.jsonl"
    capture.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (feed,) = insp.inspect_path(capture, received_at_ms=NOW_MS).feeds
    assert feed.feed == "grid" and "content" in feed.detected
    assert (feed.deliveries, feed.records, feed.dead_lettered) == (3, 3, 1)


def test_a_category_name_outside_the_table_is_an_unknown_code() -> None:
    variant = FIXTURES / "variants" / "grid" / "category_names"
    (feed,) = insp.inspect_path(variant, received_at_ms=NOW_MS).feeds
    assert any(f.field == "category" and f.count == 1 for f in feed.unknown_codes)
    assert not any(f.field == "category" for f in feed.parse_failures)
    got = {m.native: m.maps_to for m in feed.fields}
    assert got.get("category.name", "category") == "category"  # no persons list here: still not a person's name
