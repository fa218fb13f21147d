"""Door access translate: ISAPI AccessControllerEvent and GA/T 1400 records."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sources.common import key_of
from connectors.sources.door.translate import TOPIC as DOOR_TOPIC
from connectors.sources.door.translate import translate
from connectors.sources.devices import DeviceRegistry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIX = FIXTURES / "door"
MANIFEST = json.loads((FIX / "manifest.json").read_text(encoding="utf-8"))
REG = DeviceRegistry.from_csv(FIXTURES / "isapi" / "devices.csv")


def run(body: object, ctype: str | None = "application/json", **kw: object):
    return translate(body, content_type=ctype, registry=REG, received_at_ms=3, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_fixture_outcomes(name: str) -> None:
    expect = MANIFEST[name]
    res = run((FIX / name).read_bytes(), expect["content_type"])
    assert res.topic == DOOR_TOPIC
    assert len(res.records) == expect.get("records", 0), res.rejected
    assert res.dropped == expect.get("dropped", 0)
    assert res.attachments == expect.get("attachments", 0)
    if "rejected" in expect:
        assert len(res.rejected) == 1 and expect["rejected"] in res.rejected[0].reason
    else:
        assert res.rejected == []
    if res.records:
        rec = res.records[0]
        for key in ("device_id", "direction", "occurred_at_local", "raw_format"):
            if key in expect:
                assert rec[key] == expect[key]


def test_isapi_exact_record() -> None:
    rec = run((FIX / "isapi_access_checkin.json").read_bytes()).records[0]
    assert rec == {"device_id": "51322110001190000011", "native_id": "51322110001190000011:2026-07-14T16:25:10+08:00:4521",
                   "community": None, "door": "1", "person_name": "王德学", "card_no": "3091234567",
                   "employee_no": "1023", "direction": "in", "occurred_at_local": "2026-07-14T16:25:10+08:00",
                   "event_code": "5-75", "received_at": 3, "raw_format": "isapi-access", "quality": []}
    assert key_of(rec, DOOR_TOPIC) == "51322110001190000011"


def test_gat1400_exact_record_and_dict_input() -> None:
    doc = json.loads((FIX / "gat1400_single.json").read_text(encoding="utf-8"))
    rec = run(doc).records[0]
    assert rec == {"device_id": "51322110001190000011", "native_id": "513221100011900000112026071416251000001",
                   "community": "金竹苑小区", "door": "东门", "person_name": "王德学", "card_no": "3091234567",
                   "employee_no": None, "direction": "in", "occurred_at_local": "2026-07-14T16:25:10",
                   "event_code": None, "received_at": 3, "raw_format": "gat1400", "quality": []}


def test_gat1400_list_names_bad_index() -> None:
    res = run((FIX / "gat1400_list.json").read_bytes())
    assert [r["direction"] for r in res.records] == ["out", "in"]
    assert res.rejected[0].reason.startswith("record[2]: unknown device")


def test_peer_ip_guard() -> None:
    body = (FIX / "isapi_access_checkin.json").read_bytes()
    assert run(body, peer_ip="10.51.40.11").records
    assert run(body, peer_ip="10.51.40.99").rejected[0].error_type == "DeviceMismatch"


def test_unknown_isapi_door() -> None:
    doc = json.loads((FIX / "isapi_access_checkin.json").read_text(encoding="utf-8"))
    doc.update(ipAddress="192.168.0.9", macAddress="00:11:22:33:44:55")
    assert run(doc).rejected[0].error_type == "UnknownDevice"


@pytest.mark.parametrize(("change", "reason"), [
    ({"AccessControllerEvent": "x"}, "missing AccessControllerEvent object"),
    ({"eventType": "VMD"}, "eventType 'VMD' is not AccessControllerEvent"),
    ({"dateTime": "soon"}, "dateTime 'soon' is not a valid date-time"),
])
def test_isapi_bad_fields(change: dict, reason: str) -> None:
    doc = json.loads((FIX / "isapi_access_checkin.json").read_text(encoding="utf-8"))
    res = run({**doc, **change})
    assert res.records == [] and res.rejected[0].reason == reason


BASE = json.loads((FIX / "isapi_access_checkin.json").read_text(encoding="utf-8"))
GAT = json.loads((FIX / "gat1400_single.json").read_text(encoding="utf-8"))
VALUES = st.none() | st.text(max_size=20) | st.integers() | st.floats() | st.lists(st.integers(), max_size=2) | \
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([BASE, BASE["AccessControllerEvent"], GAT]), st.dictionaries(st.text(max_size=25), VALUES, max_size=6),
       st.booleans())
def test_fuzz_mutated_documents_never_raise(base: dict, change: dict, nested: bool) -> None:
    doc = {**BASE, "AccessControllerEvent": {**BASE["AccessControllerEvent"], **change}} if nested and base is BASE \
        else {**base, **change}
    res = run(json.dumps(doc, ensure_ascii=False).encode())
    assert res.records or res.rejected or res.dropped
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


FILES = [((FIX / n).read_bytes(), e["content_type"]) for n, e in sorted(MANIFEST.items())]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FILES), st.integers(0, 5000), st.binary(max_size=8), st.integers(0, 12))
def test_fuzz_mutated_fixtures_never_raise(fixture: tuple[bytes, str | None], pos: int, insert: bytes, cut: int) -> None:
    data, ctype = fixture
    pos %= len(data) + 1
    res = run(data[:pos] + insert + data[pos + cut:], ctype)
    assert res.records or res.rejected or res.dropped
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=1024), st.sampled_from([None, "application/json", "application/xml", "multipart/form-data; boundary=x"]))
def test_fuzz_random_bytes_never_raise(data: bytes, ctype: str | None) -> None:
    res = run(data, ctype)
    assert res.records or res.rejected or res.dropped
    assert all(r.error_type != "InternalError" for r in res.rejected), res.rejected
