"""Native payload writers (docs/native-formats.md): pure functions from an event payload to bytes."""
from __future__ import annotations

import hashlib
import json
from typing import Any
from xml.sax.saxutils import escape

from .model import SimEvent

ALARM110_COLUMNS = ("JJDBH", "GLJJDBH", "XZQHBH", "BJSJ", "BJDH", "LXDH", "BJRXM", "S_IDENTITYCARDNO", "SFDZ",
                    "BJNR", "BJLB", "BJLX", "BJXL", "JQJB", "ZDDWJD", "ZDDWWD", "SDDWJD", "SDDWWD", "GXSJ")
MEDIATION_COLUMNS = ("案件编号", "调解组织", "受理日期", "纠纷类型", "纠纷简要情况", "纠纷发生地", "行政区划代码", "当事人类型",
                     "当事人姓名", "当事人身份证号", "当事人电话", "当事人住址", "调解员", "调解结果", "协议金额", "履行情况",
                     "司法确认")
ENDPOINTS = {"gb28181": "/gb28181/alarm", "isapi": "/isapi/alert", "grid": "/grid/reports",
             "mediation": "/mediation/cases", "door": "/door/events"}
# a tiny JPEG-shaped stub (SOI, APP0 JFIF, EOI) standing in for snapshots
JPEG_STUB = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")


def _x(tag: str, value: Any) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


def gb28181_xml(p: dict[str, Any], form: str) -> bytes:
    """A MANSCDP `<Notify>` alarm; GB2312 (falling back to GBK, then UTF-8) or UTF-8, prolog matching."""
    info = _x("AlarmType", p["AlarmType"])
    if p.get("EventType") is not None:
        info += f"<AlarmTypeParam>{_x('EventType', p['EventType'])}</AlarmTypeParam>"
    fields = {"CmdType": "Alarm", **p}
    body = ("<Notify>\r\n" + "".join(f"{_x(k, fields[k])}\r\n" for k in (
        "CmdType", "SN", "DeviceID", "AlarmPriority", "AlarmMethod", "AlarmTime", "AlarmDescription",
        "Longitude", "Latitude")) + f"<Info>{info}</Info>\r\n</Notify>\r\n")
    encodings = ("GB2312", "GBK", "UTF-8") if form == "gb2312" else ("UTF-8",)
    for enc in encodings:
        text = f'<?xml version="1.0" encoding="{enc}"?>\r\n{body}'
        try:
            return text.encode(enc.lower())
        except UnicodeEncodeError:
            continue
    raise AssertionError("unreachable: UTF-8 encodes everything")


def isapi_xml(p: dict[str, Any]) -> bytes:
    """EventNotificationAlert XML (namespace as the device firmware writes it)."""
    ns = f' xmlns="{p["ns"]}"' if p.get("ns") else ""
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<EventNotificationAlert version="2.0"{ns}>']
    for k in ("ipAddress", "portNo", "protocol", "macAddress", "channelID", "dateTime", "activePostCount",
              "eventType", "eventState", "eventDescription"):
        parts.append(_x(k, p[k]))
    if "ANPR" in p:
        parts.append("<ANPR>" + "".join(_x(k, v) for k, v in p["ANPR"].items()) + "</ANPR>")
    parts.append("</EventNotificationAlert>\n")
    return "\n".join(parts).encode("utf-8")


def isapi_json(p: dict[str, Any]) -> bytes:
    """EventNotificationAlert JSON (same field names at top level)."""
    d: dict[str, Any] = {k: p[k] for k in ("ipAddress", "portNo", "protocol", "macAddress")}
    d["channelID"] = int(p["channelID"])
    d.update({k: p[k] for k in ("dateTime", "activePostCount", "eventType", "eventState", "eventDescription")})
    if "ANPR" in p:
        d["ANPR"] = dict(p["ANPR"], confidenceLevel=int(p["ANPR"]["confidenceLevel"]))
    return json.dumps(d, ensure_ascii=False).encode("utf-8")


_PART_NAMES = {"ANPR": "anpr.xml", "VMD": "MoveDetection.xml", "faceCapture": "faceCapture.xml",
               "linedetection": "linedetection", "fielddetection": "fielddetection"}


def isapi_multipart(p: dict[str, Any]) -> tuple[str, bytes]:
    """multipart/form-data with the XML part and (for ANPR/face) one JPEG part; boundary in the header."""
    boundary = "MIME_boundary_" + hashlib.sha1(f"{p['macAddress']}|{p['dateTime']}|{p['eventType']}"
                                               .encode()).hexdigest()[:16]
    name = _PART_NAMES.get(p["eventType"], f"{p['eventType']}.xml")
    chunks = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n"
              f"Content-Type: application/xml; charset=\"UTF-8\"\r\nContent-Length: ".encode()]
    xml = isapi_xml(p)
    chunks[0] += f"{len(xml)}\r\n\r\n".encode() + xml + b"\r\n"
    if p["eventType"] in ("ANPR", "faceCapture"):
        pic = "licensePlatePicture.jpg" if p["eventType"] == "ANPR" else "faceImage.jpg"
        chunks.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{pic}\"; filename=\"{pic}\"\r\n"
                      f"Content-Type: image/jpeg\r\nContent-Length: {len(JPEG_STUB)}\r\n\r\n".encode()
                      + JPEG_STUB + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)


def isapi_request(p: dict[str, Any], form: str) -> tuple[str, bytes]:
    """(Content-Type, body) of one ISAPI push."""
    if form == "json":
        return "application/json", isapi_json(p)
    if form == "multipart":
        return isapi_multipart(p)
    return "application/xml", isapi_xml(p)


def json_body(p: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (Chinese kept as is)."""
    return json.dumps(p, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def alarm110_row(p: dict[str, Any]) -> list[str]:
    """A JJD row in column order."""
    return [p[c] for c in ALARM110_COLUMNS]


def mediation_rows(case: dict[str, Any]) -> list[list[str]]:
    """One export row per party, case columns repeated."""
    rows = []
    for party in case["parties"]:
        per = {"当事人类型": party["role"], "当事人姓名": party["name"], "当事人身份证号": party["idCard"],
               "当事人电话": party["phone"], "当事人住址": party.get("address", "")}
        rows.append([per[c] if c in per else str(case[c]) for c in MEDIATION_COLUMNS])
    return rows


def mediation_rest(case: dict[str, Any]) -> dict[str, Any]:
    """The REST form of a case (`POST /mediation/cases`)."""
    result = {"调解成功": "agreement", "调解不成功": "failed", "调解中": "in_progress"}[case["调解结果"]]
    return {"caseNo": case["案件编号"], "workstation": case["调解组织"], "acceptedDate": case["受理日期"],
            "disputeType": case["纠纷类型"], "summary": case["纠纷简要情况"], "address": case["纠纷发生地"],
            "adminCode": case["行政区划代码"],
            "parties": [{"role": p["role"], "name": p["name"], "idCard": p["idCard"], "phone": p["phone"],
                         "address": p.get("address", "")} for p in case["parties"]],
            "mediator": case["调解员"], "result": result,
            "compensation": float(case["协议金额"]) if case["协议金额"] else None,
            "performance": case["履行情况"], "judicialConfirmation": case["司法确认"] == "是"}


def http_request(ev: SimEvent) -> tuple[str, str, bytes]:
    """(path, Content-Type, body) to POST an event to its receiver (not for alarm110, a DB feed)."""
    if ev.feed == "gb28181":
        return ENDPOINTS["gb28181"], "Application/MANSCDP+xml", gb28181_xml(ev.payload, ev.form)
    if ev.feed == "isapi":
        ct, body = isapi_request(ev.payload, ev.form)
        return ENDPOINTS["isapi"], ct, body
    if ev.feed == "mediation":
        return ENDPOINTS["mediation"], "application/json", json_body(mediation_rest(ev.payload))
    if ev.feed in ("grid", "door"):
        return ENDPOINTS[ev.feed], "application/json", json_body(ev.payload)
    raise ValueError(f"no HTTP endpoint for feed {ev.feed}")
