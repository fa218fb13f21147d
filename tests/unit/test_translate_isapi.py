"""ISAPI EventNotificationAlert translate: every form, namespace, event type; registry safety; fuzzing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sources.camera import TOPIC as CAMERA_TOPIC
from connectors.sources.common import parse_multipart
from connectors.sources.isapi.codes import EVENT_TYPES
from connectors.sources.isapi.translate import translate
from connectors.sources.devices import DeviceRegistry

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "isapi"
MANIFEST = json.loads((FIX / "manifest.json").read_text(encoding="utf-8"))
REG = DeviceRegistry.from_csv(FIX / "devices.csv")
JPEG = (FIX / "picture.jpg").read_bytes()


def run(body: bytes, ctype: str | None = "application/xml", **kw: object):
    return translate(body, content_type=ctype, registry=REG, received_at_ms=1_784_000_000_000, **kw)


def alert_xml(ns: str | None = "http://www.hikvision.com/ver20/XMLSchema", event: str = "VMD", state: str = "active",
              count: int = 1, mac: str = "44:19:b6:0a:11:02", ip: str = "10.51.32.17", extra: str = "") -> bytes:
    x = f' xmlns="{ns}"' if ns else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><EventNotificationAlert version="2.0"{x}>'
            f"<ipAddress>{ip}</ipAddress><macAddress>{mac}</macAddress><channelID>1</channelID>"
            f"<dateTime>2026-07-14T16:25:10+08:00</dateTime><activePostCount>{count}</activePostCount>"
            f"<eventType>{event}</eventType><eventState>{state}</eventState>{extra}</EventNotificationAlert>").encode()


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_fixture_outcomes(name: str) -> None:
    expect = MANIFEST[name]
    res = run((FIX / name).read_bytes(), expect["content_type"])
    assert res.topic == CAMERA_TOPIC
    assert len(res.records) == expect.get("records", 0), res.rejected
    assert res.dropped == expect.get("dropped", 0)
    assert res.attachments == expect.get("attachments", 0)
    if "rejected" in expect:
        assert len(res.rejected) == 1 and expect["rejected"] in res.rejected[0].reason
    else:
        assert res.rejected == []
    for rec in res.records:
        for key in ("event_type", "device_id", "plate", "raw_format", "longitude"):
            if key in expect:
                assert rec[key] == expect[key]
        assert rec["source_system"] == "isapi" and rec["latitude"] is None and rec["longitude"] is None


@pytest.mark.parametrize("ns", [None, "http://www.hikvision.com/ver10/XMLSchema",
                                "http://www.hikvision.com/ver20/XMLSchema", "http://www.isapi.org/ver20/XMLSchema",
                                "urn:some:future:firmware"])
def test_every_namespace_variant(ns: str | None) -> None:
    rec = run(alert_xml(ns)).records[0]
    assert rec["event_type"] == "vmd" and rec["device_id"] == "WC-HY-0017"
    assert rec["native_id"] == "WC-HY-0017:1:2026-07-14T16:25:10+08:00:VMD"


@pytest.mark.parametrize(("native", "canonical"), [
    ("VMD", "vmd"), ("linedetection", "tripwire"), ("fielddetection", "intrusion"), ("faceCapture", "face"),
    ("faceSnap", "face"), ("ANPR", "anpr"), ("AccessControllerEvent", "access"), ("videoloss", "video_loss"),
    ("shelteralarm", "tamper"), ("somethingNew", "other")])
def test_event_type_mapping(native: str, canonical: str) -> None:
    assert run(alert_xml(event=native)).records[0]["event_type"] == canonical


def test_event_table_values_are_canonical() -> None:
    canonical = {"manual", "moving_object", "left_object", "object_removed", "tripwire", "intrusion", "wrong_way",
                 "loitering", "flow_count", "density", "video_anomaly", "fast_movement", "video_loss", "tamper",
                 "device_fault", "phone_alarm", "sms_alarm", "gps_alarm", "other", "vmd", "face", "anpr", "access"}
    assert set(EVENT_TYPES.values()) <= canonical


def test_anpr_and_access_fields() -> None:
    anpr = run((FIX / "anpr_hik20.xml").read_bytes()).records[0]
    assert (anpr["plate"], anpr["plate_color"], anpr["vehicle_type"], anpr["direction"], anpr["confidence"]) == (
        "川UA1235", "blue", "vehicle", "forward", 92)
    acc = run((FIX / "access_on_camera.json").read_bytes(), "application/json").records[0]
    assert (acc["person_name"], acc["employee_no"], acc["card_no"]) == ("王德学", "1023", "3091234567")
    assert acc["raw_format"] == "isapi-json"


def test_heartbeat_only_when_inactive_and_zero_count() -> None:
    assert run(alert_xml(event="videoloss", state="inactive", count=0)).dropped == 1
    assert len(run(alert_xml(event="videoloss", state="active", count=1)).records) == 1
    inactive_vmd = run(alert_xml(event="VMD", state="inactive", count=0))
    assert inactive_vmd.dropped == 0 and inactive_vmd.records[0]["event_state"] == "inactive"


def test_forged_body_cannot_move_device_or_change_registry() -> None:
    before = [(d.device_id, d.lat, d.lon, d.admin_code, d.ip, d.mac) for d in REG]
    res = run((FIX / "forged_location.xml").read_bytes())
    rec = res.records[0]
    assert rec["device_id"] == "WC-HY-0017" and rec["longitude"] is None and rec["latitude"] is None
    assert before == [(d.device_id, d.lat, d.lon, d.admin_code, d.ip, d.mac) for d in REG]


def test_peer_ip_mismatch_rejected() -> None:
    body = alert_xml()
    assert run(body, peer_ip="10.51.32.17").records
    res = run(body, peer_ip="10.51.32.99")
    assert res.records == [] and res.rejected[0].error_type == "DeviceMismatch"
    assert "came from 10.51.32.99" in res.rejected[0].reason


def test_door_controller_rejected_on_camera_endpoint() -> None:
    res = run(alert_xml(event="AccessControllerEvent", mac="58:03:fb:12:34:56", ip="10.51.40.11"))
    assert res.records == [] and res.rejected[0].error_type == "WrongSource"


def test_multipart_counts_jpeg_parts_and_sniffs_boundary() -> None:
    data = (FIX / "anpr_multipart.bin").read_bytes()
    parts = parse_multipart(data, "MIME_boundary")
    assert [p.is_jpeg for p in parts] == [False, True, True]
    assert parts[1].data == JPEG  # picture bytes survive intact
    res = run(data, None)  # no content type: boundary sniffed from the body
    assert len(res.records) == 1 and res.attachments == 2


def test_multipart_with_two_alert_parts_and_one_bad() -> None:
    b = b"xyz"
    body = (b"--xyz\r\nContent-Type: application/xml\r\n\r\n" + alert_xml(event="VMD") + b"\r\n"
            b"--xyz\r\nContent-Type: application/xml\r\n\r\n" + alert_xml(event="linedetection") + b"\r\n"
            b"--xyz\r\nContent-Disposition: form-data; name=\"bad.xml\"\r\nContent-Type: application/xml\r\n\r\n<oops>\r\n"
            b"--xyz\r\nContent-Type: image/jpeg\r\n\r\n" + JPEG + b"\r\n--" + b + b"--\r\n")
    res = run(body, "multipart/form-data; boundary=xyz")
    assert [r["event_type"] for r in res.records] == ["vmd", "tripwire"]
    assert len(res.rejected) == 1 and res.rejected[0].reason.startswith("part bad.xml: malformed XML")
    assert res.attachments == 1


def test_json_wrapped_form() -> None:
    doc = {"EventNotificationAlert": {"ipAddress": "10.51.32.3", "dateTime": "2026-07-14T18:00:00+08:00",
                                      "eventType": "VMD", "channelID": 3}}
    rec = run(json.dumps(doc).encode(), "application/json").records[0]
    assert rec["device_id"] == "WC-TW-0003" and rec["channel_id"] == "3"


@pytest.mark.parametrize(("body", "ctype", "error_type"), [
    (b"", "application/xml", "MalformedXml"),
    (b"[1,2]", "application/json", "MalformedJson"),
    (b'{"ANPR": "x", "ipAddress": "10.51.32.17", "eventType": "ANPR", "dateTime": "2026-07-14T18:00:00+08:00"}',
     "application/json", "InvalidField"),
    (b"<Other/>", "application/xml", "UnsupportedMessage"),
    (b"--b\r\n", "multipart/form-data", "MalformedMultipart"),
    (alert_xml(ip="10.51.32.17", mac="aa:aa:aa:aa:aa:aa", extra="") .replace(b"10.51.32.17", b"1.2.3.4"),
     "application/xml", "UnknownDevice"),
])
def test_bad_inputs(body: bytes, ctype: str, error_type: str) -> None:
    res = run(body, ctype)
    assert res.records == [] and res.rejected[0].error_type == error_type, res.rejected


def test_billion_laughs_rejected_quickly() -> None:
    lol = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">' +
           b"".join(b'<!ENTITY a%d "%s">' % (i, (b"&a%d;" % (i - 1) if i > 1 else b"&a;") * 10) for i in range(1, 12)) +
           b']><EventNotificationAlert><eventDescription>&a11;</eventDescription></EventNotificationAlert>')
    res = run(lol)
    assert res.rejected[0].reason == "XML entity declarations are not allowed"


FIXTURES = [((FIX / n).read_bytes(), e["content_type"]) for n, e in sorted(MANIFEST.items())]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.sampled_from([None, "application/xml", "application/json",
                                                  "multipart/form-data; boundary=MIME_boundary", "text/plain"]))
def test_fuzz_random_bytes_never_raise(data: bytes, ctype: str | None) -> None:
    res = run(data, ctype)
    assert len(res.records) + len(res.rejected) + res.dropped >= 1
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIXTURES), st.integers(0, 10_000), st.binary(max_size=8), st.integers(0, 16))
def test_fuzz_mutated_fixtures_never_raise(fixture: tuple[bytes, str | None], pos: int, insert: bytes, cut: int) -> None:
    data, ctype = fixture
    pos %= len(data) + 1
    res = run(data[:pos] + insert + data[pos + cut:], ctype)
    assert len(res.records) + len(res.rejected) + res.dropped >= 1
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected
