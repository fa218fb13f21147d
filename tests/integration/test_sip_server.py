"""GB/T 28181 SIP listener over real UDP/TCP sockets, publishing to the real Kafka."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from tests.harness.kafka import (
    consume,
    count_records,
    create_topics,
    delete_topics,
    gb28181_body,
    registry,
    require_kafka,
    tmp_settings,
    unique_prefix,
)
from connectors.sources.gb28181.sip import digest_response, parse_digest_params, parse_sip
from connectors.ingest.sip_server import SipConfig, SipServer
from connectors.ingest.receiver import IngestGateway, ReceiverConfig
from schemas.serde import default_store

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

DEVICE = "51322110001320000123"
CFG = SipConfig(host="127.0.0.1", port=0, realm="5132210000", password="s3cret", expires_max=3600)


def request(method: str, call_id: str, cseq: int, *, body: bytes = b"", ctype: str | None = None,
            extra: str = "") -> bytes:
    head = (
        f"{method} sip:51322100002000000001@5132210000 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.51.32.17:5060;rport;branch=z9hG4bK{call_id}{cseq}\r\n"
        f"From: <sip:{DEVICE}@5132210000>;tag=abc{call_id}\r\n"
        f"To: <sip:{DEVICE if method == 'REGISTER' else '51322100002000000001'}@5132210000>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        + (f"Content-Type: {ctype}\r\n" if ctype else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def register(server: SipServer, call_id: str = "regtcp") -> None:
    """REGISTER the test camera through the digest challenge (MESSAGEs need a registration)."""
    first = parse_sip(await server.handle(request("REGISTER", call_id, 1)) or b"")
    params = parse_digest_params(first.headers.get("WWW-Authenticate") or "")
    uri = "sip:51322100002000000001@5132210000"
    resp = digest_response(DEVICE, params["realm"], "s3cret", "REGISTER", uri, params["nonce"])
    auth = (f'Authorization: Digest username="{DEVICE}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm=MD5\r\n')
    ok = parse_sip(await server.handle(request("REGISTER", call_id, 2, extra=auth)) or b"")
    assert ok.status == 200 and server.is_registered(DEVICE)


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.inbox.put_nowait(data)


@pytest.fixture
async def sip(tmp_path: Path) -> AsyncIterator[tuple[SipServer, IngestGateway, str]]:
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix, ["raw.camera.v1", "deadletters.v1"])
    gateway = IngestGateway.from_settings(tmp_settings(tmp_path, prefix), ReceiverConfig(kafka_timeout_s=10), registry=registry())
    await gateway.setup()
    server = SipServer(gateway, CFG)
    await server.setup()
    try:
        yield server, gateway, prefix
    finally:
        await server.stop()
        await gateway.close()
        delete_topics(topics)


async def test_udp_register_keepalive_alarm_and_retransmission(sip: tuple[SipServer, IngestGateway, str]) -> None:
    server, gateway, prefix = sip
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, remote_addr=("127.0.0.1", server.udp_port))
    try:
        async def exchange(data: bytes) -> bytes:
            transport.sendto(data)
            return await asyncio.wait_for(peer.inbox.get(), 10)

        # REGISTER → 401 challenge → REGISTER with digest → 200 + Expires + Date
        first = parse_sip(await exchange(request("REGISTER", "reg1", 1, extra="Expires: 7200\r\n")))
        assert first.status == 401
        params = parse_digest_params(first.headers.get("WWW-Authenticate") or "")
        assert params["realm"] == "5132210000"
        uri = "sip:51322100002000000001@5132210000"
        resp = digest_response(DEVICE, params["realm"], "s3cret", "REGISTER", uri, params["nonce"])
        auth = (f'Authorization: Digest username="{DEVICE}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
                f'uri="{uri}", response="{resp}", algorithm=MD5\r\n')
        ok = parse_sip(await exchange(request("REGISTER", "reg1", 2, extra=f"Expires: 7200\r\n{auth}")))
        assert ok.status == 200
        assert ok.headers.get("Expires") == "3600"  # capped
        assert ok.headers.get("Date") and "T" in ok.headers.get("Date", "")
        assert server.is_registered(DEVICE)

        # wrong password → 403
        again = parse_sip(await exchange(request("REGISTER", "reg2", 1)))
        p2 = parse_digest_params(again.headers.get("WWW-Authenticate") or "")
        bad = digest_response(DEVICE, p2["realm"], "wrong", "REGISTER", uri, p2["nonce"])
        auth_bad = (f'Authorization: Digest username="{DEVICE}", realm="{p2["realm"]}", nonce="{p2["nonce"]}", '
                    f'uri="{uri}", response="{bad}", algorithm=MD5\r\n')
        assert parse_sip(await exchange(request("REGISTER", "reg2", 2, extra=auth_bad))).status == 403

        keepalive = (f'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify><CmdType>Keepalive</CmdType><SN>1</SN>'
                     f"<DeviceID>{DEVICE}</DeviceID><Status>OK</Status></Notify>").encode()
        ka = parse_sip(await exchange(request("MESSAGE", "ka1", 20, body=keepalive, ctype="Application/MANSCDP+xml")))
        assert ka.status == 200

        alarm = request("MESSAGE", "al1", 21, body=gb28181_body(4242), ctype="Application/MANSCDP+xml")
        raw1 = await exchange(alarm)
        raw2 = await exchange(alarm)  # retransmission
        assert parse_sip(raw1).status == 200
        assert raw1 == raw2
        assert server.counters["retransmissions"] == 1

        garbage = parse_sip(await exchange(request("MESSAGE", "bad1", 1, body=b"<Notify><CmdType>Alarm",
                                                   ctype="Application/MANSCDP+xml")))
        assert garbage.status == 400
    finally:
        transport.close()

    (msg,) = await consume(prefix + "raw.camera.v1", 1)
    name, rec = default_store().decode(msg.value)
    assert rec["native_id"].startswith(f"{DEVICE}:4242:")
    assert await count_records(prefix + "raw.camera.v1") == 1  # the retransmission was not published
    (letter,) = await consume(prefix + "deadletters.v1", 1)
    assert letter.key == b"gb28181"
    assert gateway.metrics.value("dropped", "gb28181") == 1  # the keepalive


async def test_tcp_alarm_and_options(sip: tuple[SipServer, IngestGateway, str]) -> None:
    server, gateway, prefix = sip
    await register(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    try:
        async def exchange(data: bytes) -> bytes:
            writer.write(data)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(parse_sip(head).headers.get("Content-Length") or 0)
            return head + (await reader.readexactly(length) if length else b"")

        assert parse_sip(await exchange(request("OPTIONS", "o1", 1))).status == 200
        # two messages in one write: framing by Content-Length
        writer.write(request("MESSAGE", "t1", 1, body=gb28181_body(7001), ctype="Application/MANSCDP+xml")
                     + request("MESSAGE", "t2", 1, body=gb28181_body(7002), ctype="Application/MANSCDP+xml"))
        await writer.drain()
        for _ in range(2):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert parse_sip(head).status == 200
        unsupported = parse_sip(await exchange(request("MESSAGE", "t3", 1, body=b"{}", ctype="application/json")))
        assert unsupported.status == 415
    finally:
        writer.close()
    msgs = await consume(prefix + "raw.camera.v1", 2)
    sns = sorted(int(default_store().decode(m.value)[1]["native_id"].split(":")[1]) for m in msgs)
    assert sns == [7001, 7002]


async def test_require_registration(tmp_path: Path) -> None:
    """No Kafka needed: an unregistered device's MESSAGE is refused before anything is published."""
    from tests.harness.kafka import CLOSED_BOOTSTRAP

    gateway = IngestGateway.from_settings(tmp_settings(tmp_path, unique_prefix(), bootstrap=CLOSED_BOOTSTRAP),
                                          registry=registry())
    await gateway.setup()
    server = SipServer(gateway, SipConfig(port=0))  # registration is required by default
    assert server.config.require_registration and server.config.password is None  # no default password
    out = await server.handle(request("MESSAGE", "u1", 1, body=gb28181_body(1), ctype="Application/MANSCDP+xml"))
    assert out is not None and parse_sip(out).status == 403
    assert "not registered" in parse_sip(out).headers.get("Warning", "")
    assert server.counters["unregistered"] == 1 and server.counters["messages"] == 0
    assert gateway.spool.is_empty
    await gateway.close()
