"""Dead-letter reasons say what was received and how to fix it (issue 17)."""
from __future__ import annotations

from connectors.sources import registry as source_registry
from connectors.sources.spec import Payload

MS = 1_784_000_000_000


def rejected(feed: str, body: bytes, ctype: str) -> list[tuple[str, str]]:
    res = source_registry.feed(feed).translate(Payload(body, ctype, MS), source_registry.context())
    return [(r.error_type, r.reason) for r in res.rejected]


def test_json_on_an_xml_endpoint_is_named() -> None:
    [(etype, reason)] = rejected("gb28181", b'{"CmdType": "Alarm", "DeviceID": "51322100001320000001"}',
                                 "application/json")
    assert etype == "MalformedXml" and reason.startswith("JSON body on an XML endpoint")
    assert "JSON route" in reason
    [(_t, garbage)] = rejected("gb28181", b"CmdType=Alarm", "text/plain")
    assert "does not start with '<'" in garbage


def test_a_push_without_any_device_field_says_so() -> None:
    body = ('<EventNotificationAlert version="2.0"><dateTime>2026-07-14T16:25:10+08:00</dateTime>'
            "<activePostCount>1</activePostCount><eventType>AccessControllerEvent</eventType>"
            "<eventState>active</eventState><AccessControllerEvent><majorEventType>5</majorEventType>"
            "<subEventType>75</subEventType></AccessControllerEvent></EventNotificationAlert>").encode()
    for feed in ("door", "isapi"):
        reasons = rejected(feed, body, "application/xml")
        assert reasons and all("no device identifier in the body" in r for _t, r in reasons), reasons
        assert not any("None" in r for _t, r in reasons)


def test_an_unknown_device_names_only_what_was_sent_and_the_fix() -> None:
    body = ('<EventNotificationAlert version="2.0"><ipAddress>10.9.9.9</ipAddress><dateTime>2026-07-14T16:25:10+08:00'
            "</dateTime><activePostCount>1</activePostCount><eventType>VMD</eventType><eventState>active</eventState>"
            "</EventNotificationAlert>").encode()
    [(etype, reason)] = rejected("isapi", body, "application/xml")
    assert etype == "UnknownDevice" and "ip='10.9.9.9'" in reason and "mac=" not in reason
    assert "PINGAN_REGISTRY_PATH" in reason
