"""GB/T 28181 Notify translate and the pure SIP helpers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sources.camera import SCHEMA as CAMERA_SCHEMA
from connectors.sources.camera import TOPIC as CAMERA_TOPIC
from connectors.sources.common import key_of
from connectors.sources.gb28181 import sip
from connectors.sources.gb28181.codes import ALARM_METHODS, ALARM_TYPES
from connectors.sources.gb28181.codes import event_type as event_type_for
from connectors.sources.gb28181.translate import translate

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "gb28181"
MANIFEST = json.loads((FIX / "manifest.json").read_text(encoding="utf-8"))
CAMERA_EVENT_TYPES = {
    "manual", "moving_object", "left_object", "object_removed", "tripwire", "intrusion", "wrong_way", "loitering",
    "flow_count", "density", "video_anomaly", "fast_movement", "video_loss", "tamper", "device_fault", "phone_alarm",
    "sms_alarm", "gps_alarm", "other", "vmd", "face", "anpr", "access"}


def notify(**over: str) -> bytes:
    fields = {"CmdType": "Alarm", "SN": "17430", "DeviceID": "51322110001320000123", "AlarmPriority": "1",
              "AlarmMethod": "5", "AlarmTime": "2026-07-14T16:23:32", "AlarmDescription": "岷江河堤区域入侵",
              "Longitude": "103.5912", "Latitude": "31.4788"}
    info = over.pop("Info", "<Info><AlarmType>6</AlarmType></Info>")
    fields.update(over)
    body = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items() if v is not None)
    return f'<?xml version="1.0" encoding="GB2312"?><Notify>{body}{info}</Notify>'.encode("gb18030")


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_fixture_outcomes(name: str) -> None:
    expect = MANIFEST[name]
    res = translate((FIX / name).read_bytes(), received_at_ms=1_784_000_000_000)
    assert res.topic == CAMERA_TOPIC and res.schema == CAMERA_SCHEMA
    assert len(res.records) == expect.get("records", 0)
    assert res.dropped == expect.get("dropped", 0)
    if "rejected" in expect:
        assert len(res.rejected) == 1
        assert expect["rejected"] in res.rejected[0].reason
    else:
        assert res.rejected == []
    for rec in res.records:
        assert rec["event_type"] == expect["event_type"]
        assert rec["raw_format"] == "gb28181-xml" and rec["source_system"] == "gb28181"
        if "longitude" in expect:
            assert rec["longitude"] == expect["longitude"]


def test_gb2312_record_fields_exact() -> None:
    raw = (FIX / "alarm_video_intrusion_gb2312.xml").read_bytes()
    assert "岷江".encode("gb2312") in raw  # really GB2312 on the wire
    rec = translate(raw, received_at_ms=42).records[0]
    assert rec == {
        "source_system": "gb28181", "native_id": "51322110001320000123:17430:2026-07-14T16:23:32",
        "device_id": "51322110001320000123", "channel_id": None, "alarm_priority": 1, "alarm_method": 5,
        "alarm_type": 6, "alarm_event_type": 1, "event_type": "intrusion", "event_state": None,
        "occurred_at_local": "2026-07-14T16:23:32", "description": "岷江河堤区域入侵", "longitude": 103.5912,
        "latitude": 31.4788, "plate": None, "plate_color": None, "vehicle_type": None, "direction": None,
        "confidence": None, "person_name": None, "employee_no": None, "card_no": None, "received_at": 42,
        "raw_format": "gb28181-xml", "quality": []}
    assert key_of(rec, CAMERA_TOPIC) == "51322110001320000123"


@pytest.mark.parametrize(("method", "atype", "expected"), [
    *((5, t, e) for (m, t), e in ALARM_TYPES.items() if m == 5),
    *((2, t, e) for (m, t), e in ALARM_TYPES.items() if m == 2),
    *((6, t, e) for (m, t), e in ALARM_TYPES.items() if m == 6),
    (1, None, "phone_alarm"), (3, None, "sms_alarm"), (4, None, "gps_alarm"), (7, None, "other"),
    (5, None, "other"), (5, 99, "other"), (2, 9, "device_fault"), (6, None, "device_fault"),
])
def test_every_code_maps_to_canonical_event_type(method: int, atype: int | None, expected: str) -> None:
    info = f"<Info><AlarmType>{atype}</AlarmType></Info>" if atype is not None else ""
    rec = translate(notify(AlarmMethod=str(method), Info=info), received_at_ms=1).records[0]
    assert rec["event_type"] == expected == event_type_for(method, atype)
    assert expected in CAMERA_EVENT_TYPES


def test_tables_cover_native_format_page() -> None:
    assert {t for (m, t) in ALARM_TYPES if m == 5} == set(range(1, 13))
    assert {t for (m, t) in ALARM_TYPES if m == 2} == set(range(1, 6))
    assert {t for (m, t) in ALARM_TYPES if m == 6} == {1, 2}
    assert set(ALARM_METHODS) == set(range(1, 8))
    assert set(ALARM_TYPES.values()) | {v for _, v in ALARM_METHODS.values()} <= CAMERA_EVENT_TYPES


@pytest.mark.parametrize(("over", "reason"), [
    ({"AlarmPriority": "7"}, "AlarmPriority '7' not in 1-4"),
    ({"AlarmPriority": "0"}, "AlarmPriority '0' not in 1-4"),
    ({"AlarmPriority": "high"}, "AlarmPriority 'high' is not an integer"),
    ({"AlarmMethod": "8"}, "AlarmMethod '8' not in 1-7"),
    ({"DeviceID": "1234"}, "DeviceID must be 20 digits, got '1234'"),
    ({"DeviceID": "5132211000132000012X"}, "DeviceID must be 20 digits"),
    ({"DeviceID": None}, "missing DeviceID"),
    ({"SN": "-1"}, "SN must be a non-negative integer"),
    ({"AlarmTime": "2026-07-14"}, "AlarmTime '2026-07-14' is not a valid date-time"),
    ({"Longitude": "east"}, "Longitude 'east' is not a number"),
    ({"Latitude": "95"}, "Latitude '95' out of range"),
    ({"Info": "<Info><AlarmType>six</AlarmType></Info>"}, "AlarmType 'six' is not an integer"),
])
def test_validation_reasons(over: dict[str, str | None], reason: str) -> None:
    res = translate(notify(**over), received_at_ms=1)
    assert res.records == [] and len(res.rejected) == 1
    assert reason in res.rejected[0].reason
    assert res.rejected[0].error_type in {"InvalidField", "MissingField"}


def test_utf8_declared_and_undeclared_and_bom() -> None:
    base = notify().decode("gb18030").replace('encoding="GB2312"', 'encoding="UTF-8"')
    assert translate(base.encode("utf-8"), received_at_ms=1).records[0]["description"] == "岷江河堤区域入侵"
    no_decl = base.split("?>", 1)[1]
    assert translate(no_decl.encode("utf-8"), received_at_ms=1).records
    assert translate(no_decl.encode("gbk"), received_at_ms=1).records[0]["description"] == "岷江河堤区域入侵"
    assert translate(b"\xef\xbb\xbf" + no_decl.encode("utf-8"), received_at_ms=1).records


def test_wrong_declared_encoding_is_rejected_not_crash() -> None:
    body = notify().decode("gb18030").replace("GB2312", "UTF-8").encode("gbk")
    res = translate(body, received_at_ms=1)
    assert res.records == [] and res.rejected[0].error_type in {"BadEncoding", "MalformedXml"}


@pytest.mark.parametrize("name", ["xxe_external_entity.xml", "billion_laughs.xml", "external_dtd.xml"])
def test_unsafe_xml_rejected(name: str) -> None:
    res = translate((FIX / name).read_bytes(), received_at_ms=1)
    assert res.records == [] and res.rejected[0].error_type == "UnsafeXml"


def test_parameter_entity_and_internal_subset_rejected() -> None:
    body = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://x/y">%p;]><Notify/>'
    res = translate(body, received_at_ms=1)
    assert res.rejected[0].reason == "XML entity declarations are not allowed"


FIXTURE_BYTES = [(FIX / n).read_bytes() for n in sorted(MANIFEST)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    res = translate(data, received_at_ms=1)
    assert len(res.records) + len(res.rejected) + res.dropped >= 1
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIXTURE_BYTES), st.integers(0, 4000), st.binary(min_size=0, max_size=8), st.integers(0, 8))
def test_fuzz_mutated_fixtures_never_raise(data: bytes, pos: int, insert: bytes, cut: int) -> None:
    pos = pos % (len(data) + 1)
    mutated = data[:pos] + insert + data[pos + cut:]
    res = translate(mutated, received_at_ms=1)
    assert len(res.records) + len(res.rejected) + res.dropped == 1
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


# --- SIP ------------------------------------------------------------------------------------------

def test_parse_sip_message_with_gb2312_body() -> None:
    msg = sip.parse_sip((FIX / "sip_message_alarm.bin").read_bytes())
    assert msg.is_request and msg.method == "MESSAGE"
    assert msg.uri == "sip:51322100002000000001@5132210000"
    assert msg.headers.get("call-id") == msg.headers.get("i") == "1904271234@10.51.32.200"
    assert len(msg.headers.get_all("Via")) == 2
    assert msg.cseq == (20, "MESSAGE")
    assert msg.headers["content-type"] == "Application/MANSCDP+xml"
    assert translate(msg.body, received_at_ms=1).records[0]["event_type"] == "intrusion"


def test_parse_sip_compact_forms() -> None:
    msg = sip.parse_sip((FIX / "sip_register_compact.bin").read_bytes())
    assert msg.method == "REGISTER"
    assert msg.headers.get("Via", "").startswith("SIP/2.0/UDP 10.51.32.17:5060")
    assert msg.headers.get("From", "").endswith("tag=1263584924")
    assert msg.headers.get("Contact") == "<sip:51322110001320000123@10.51.32.17:5060>"
    assert msg.headers.get("Content-Length") == "0" and msg.body == b""


def test_parse_sip_response_and_folding() -> None:
    raw = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nSubject: a,\r\n  b\r\n"
           b"CSeq: 1 MESSAGE\r\nContent-Length: 3\r\n\r\nabcdef")
    msg = sip.parse_sip(raw)
    assert not msg.is_request and msg.status == 200 and msg.reason == "OK"
    assert msg.headers.get("s") == "a, b"
    assert msg.body == b"abc"


@pytest.mark.parametrize("raw", [b"", b"HELLO\r\n\r\n", b"SIP/2.0 999 Nope\r\n\r\n",
                                 b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nabc",
                                 b"MESSAGE sip:x SIP/2.0\r\nbad header\r\n\r\n"])
def test_parse_sip_malformed(raw: bytes) -> None:
    with pytest.raises(sip.SipParseError):
        sip.parse_sip(raw)


def test_build_response_copies_mandatory_headers() -> None:
    req = sip.parse_sip((FIX / "sip_message_alarm.bin").read_bytes())
    out = sip.build_response(req, 200, "OK", {"User-Agent": "pingan-bus"})
    resp = sip.parse_sip(out)
    assert resp.status == 200 and resp.reason == "OK"
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.headers["From"] == req.headers["From"]
    assert resp.headers["Call-ID"] == req.headers["Call-ID"]
    assert resp.headers["CSeq"] == "20 MESSAGE"
    assert resp.headers["To"].startswith(req.headers["To"] + ";tag=")
    assert resp.headers["Content-Length"] == "0" and resp.headers["User-Agent"] == "pingan-bus"
    # deterministic tag, explicit tag honoured, existing tag kept
    assert out == sip.build_response(req, 200, "OK", {"User-Agent": "pingan-bus"})
    assert ";tag=abc" in sip.parse_sip(sip.build_response(req, 200, "OK", to_tag="abc")).headers["To"]
    trying = sip.parse_sip(sip.build_response(req, 100, "Trying"))
    assert "tag=" not in trying.headers["To"]
    with pytest.raises(ValueError):
        sip.build_response(req, 200, "OK", {"X-Evil": "a\r\nVia: injected"})


def test_digest_challenge_and_verify() -> None:
    challenge = sip.make_challenge("5132210000", "nonce123", qop="auth")
    assert challenge.startswith('Digest realm="5132210000", nonce="nonce123", algorithm=MD5')
    params = sip.parse_digest_params(challenge)
    assert params["realm"] == "5132210000" and params["qop"] == "auth"
    uri = "sip:51322100002000000001@5132210000"
    # RFC 2617 without qop
    resp = sip.digest_response("51322110001320000123", "5132210000", "12345678", "REGISTER", uri, "nonce123")
    auth = (f'Digest username="51322110001320000123", realm="5132210000", nonce="nonce123", uri="{uri}", '
            f'response="{resp}", algorithm=MD5')
    assert sip.verify_digest(auth, "REGISTER", "12345678", "5132210000")
    assert sip.verify_digest(auth, "REGISTER", "12345678", "5132210000", nonce="nonce123",
                             username="51322110001320000123")
    assert not sip.verify_digest(auth, "REGISTER", "wrong", "5132210000")
    assert not sip.verify_digest(auth, "REGISTER", "12345678", "other-realm")
    assert not sip.verify_digest(auth, "REGISTER", "12345678", "5132210000", nonce="stale")
    assert not sip.verify_digest(auth, "INVITE", "12345678", "5132210000")
    # with qop=auth
    resp_q = sip.digest_response("u", "r", "p", "REGISTER", uri, "n", qop="auth", nc="00000001", cnonce="c0ffee")
    auth_q = f'Digest username="u",realm="r",nonce="n",uri="{uri}",response="{resp_q}",qop=auth,nc=00000001,cnonce="c0ffee"'
    assert sip.verify_digest(auth_q, "REGISTER", "p", "r")
    assert not sip.verify_digest(auth_q.replace("nc=00000001", "nc=00000002"), "REGISTER", "p", "r")
    assert not sip.verify_digest("Basic dXNlcjpwYXNz", "REGISTER", "p", "r")
    assert not sip.verify_digest("", "REGISTER", "p", "r")


def test_rfc2617_reference_vector() -> None:
    # RFC 2617 §3.5 example (HTTP, qop=auth): expected response 6629fae49393a05397450978507c4ef1
    got = sip.digest_response("Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
                              "dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth", nc="00000001", cnonce="0a4f113b")
    assert got == "6629fae49393a05397450978507c4ef1"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_sip_parse_fuzz_only_raises_parse_error(data: bytes) -> None:
    try:
        sip.parse_sip(data)
    except sip.SipParseError:
        pass
