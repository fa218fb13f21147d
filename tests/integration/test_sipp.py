"""A real SIP peer — ``sipp`` from Debian's sip-tester — as the GB/T 28181 lower-level platform
against our SIP listener (connectors/ingest/sip_server.py) over UDP, publishing to the real Kafka.

Scenarios live in tests/fixtures/sipp/. sipp computes the digest itself from the listener's 401
challenge (``[authentication]`` with ``-au``/``-ap``), so this checks our challenge/verification
against an independent implementation, not against our own `digest_response`.
"""
from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness.kafka import (
    consume,
    count_records,
    create_topics,
    delete_topics,
    registry,
    require_kafka,
    tmp_settings,
    unique_prefix,
)
from connectors.ingest.sip_server import SipConfig, SipServer
from connectors.ingest.receiver import IngestGateway, ReceiverConfig
from schemas.serde import default_store
from tests.harness.peers import free_port, sipp_missing

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SCENARIOS = Path(__file__).resolve().parents[1] / "fixtures" / "sipp"
DEVICE = "51322110001320000123"  # the camera in tests.harness.kafka.registry()
PLATFORM = "51322100002000000001"
REALM = "5132210000"
PASSWORD = "s3cret-28181"


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[tuple[SipServer, IngestGateway, str]]:
    reason = sipp_missing()
    if reason:
        pytest.skip(reason)
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix, ["raw.camera.v1", "deadletters.v1"])
    gateway = IngestGateway.from_settings(tmp_settings(tmp_path, prefix), ReceiverConfig(kafka_timeout_s=10),
                                          registry=registry())
    await gateway.setup()
    server = SipServer(gateway, SipConfig(host="127.0.0.1", port=0, platform_id=PLATFORM, realm=REALM,
                                          password=PASSWORD, require_registration=True))
    await server.setup()
    try:
        yield server, gateway, prefix
    finally:
        await server.stop()
        await gateway.close()
        delete_topics(topics)


async def run_sipp(scenario: str, port: int, workdir: Path, *, password: str = PASSWORD, sn: int = 4242,
                   local_port: int | None = None, call_id: str | None = None, tag: str = "gb4242") -> tuple[int, str]:
    """Run one sipp call of `scenario` against 127.0.0.1:`port` (UDP); returns (exit code, log)."""
    run = workdir / f"sipp-{scenario.removesuffix('.xml')}-{len(list(workdir.glob('sipp-*')))}"
    run.mkdir()
    messages, errors = run / "messages.log", run / "errors.log"
    cmd = ["sipp", f"127.0.0.1:{port}", "-sf", str(SCENARIOS / scenario), "-t", "u1",
           "-i", "127.0.0.1", "-p", str(local_port or free_port(socket.SOCK_DGRAM)),
           "-mp", str(free_port(socket.SOCK_DGRAM)), "-m", "1", "-l", "1", "-au", DEVICE, "-ap", password,
           "-key", "device", DEVICE, "-key", "platform", PLATFORM, "-key", "realm", REALM,
           "-key", "sn", str(sn), "-key", "tag", tag,
           "-recv_timeout", "10000", "-timeout", "30s", "-timeout_error", "-nostdin",
           "-trace_msg", "-message_file", str(messages), "-trace_err", "-error_file", str(errors)]
    if call_id:
        cmd += ["-cid_str", call_id]
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=run, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    log = "\n".join(p.read_text(errors="replace") for p in (messages, errors) if p.exists())
    return proc.returncode or 0, log + "\n" + out.decode(errors="replace")[-3000:]


def sent_requests(log: str, method: str) -> list[str]:
    """The `method` requests sipp logged as sent (its -message_file: a dashed timestamp line, then
    "UDP message sent (N bytes):", a blank line and the message)."""
    out = []
    for chunk in re.split(r"^-{20,} .*$", log, flags=re.MULTILINE)[1:]:
        lines = chunk.strip("\r\n").split("\n", 1)
        if len(lines) == 2 and "message sent" in lines[0] and lines[1].lstrip().startswith(method + " "):
            out.append(lines[1].strip())
    return out


async def test_sipp_registers_and_alarm_is_published_once(listener: tuple[SipServer, IngestGateway, str],
                                                          tmp_path: Path) -> None:
    server, gateway, prefix = listener
    code, log = await run_sipp("gb28181_register.xml", server.udp_port, tmp_path)
    assert code == 0, f"sipp REGISTER scenario failed (exit {code}):\n{log}"
    # what sipp saw: a digest challenge, then 200 with the granted Expires and a GB-style Date
    assert 'WWW-Authenticate: Digest realm="5132210000"' in log
    assert "Authorization: Digest" in log and f'username="{DEVICE}"' in log
    assert "Expires: 3600" in log and "Date: 20" in log
    assert server.is_registered(DEVICE)
    assert server.counters["registered"] == 1 and server.counters["auth_failed"] == 0

    # the alarm, then the same datagram again (same port, Call-ID, branch, tag, CSeq: a retransmission)
    local = free_port(socket.SOCK_DGRAM)
    cid = f"gb-alarm-4242@{uuid.uuid4().hex[:8]}"
    first_code, first = await run_sipp("gb28181_alarm.xml", server.udp_port, tmp_path, local_port=local, call_id=cid)
    assert first_code == 0, f"sipp alarm scenario failed (exit {first_code}):\n{first}"
    again_code, again = await run_sipp("gb28181_alarm.xml", server.udp_port, tmp_path, local_port=local, call_id=cid)
    assert again_code == 0, f"sipp retransmission failed (exit {again_code}):\n{again}"
    sent_first, sent_again = sent_requests(first, "MESSAGE"), sent_requests(again, "MESSAGE")
    assert len(sent_first) == len(sent_again) == 1 and sent_first == sent_again  # byte-identical requests
    assert f"Call-ID: {cid}" in sent_first[0] and "Content-Type: Application/MANSCDP+xml" in sent_first[0]
    assert server.counters["messages"] == 1  # the retransmission never reached the gateway …
    assert server.counters["retransmissions"] == 1  # … it was answered from the transaction cache

    (msg,) = await consume(prefix + "raw.camera.v1", 1)
    name, rec = default_store().decode(msg.value)
    assert rec["native_id"].startswith(f"{DEVICE}:4242:")
    assert "岷江河堤区域入侵" in str(rec)  # UTF-8 body decoded as declared
    assert await count_records(prefix + "raw.camera.v1", wait=1.5) == 1  # published exactly once
    assert await count_records(prefix + "deadletters.v1", wait=0.3) == 0


async def test_sipp_wrong_password_is_refused(listener: tuple[SipServer, IngestGateway, str],
                                              tmp_path: Path) -> None:
    server, gateway, prefix = listener
    code, log = await run_sipp("gb28181_wrong_password.xml", server.udp_port, tmp_path, password="not-the-password")
    assert code == 0, f"sipp scenario failed (exit {code}):\n{log}"
    assert not server.is_registered(DEVICE)
    assert server.counters["auth_failed"] == 1 and server.counters["messages"] == 0
    assert await count_records(prefix + "raw.camera.v1", wait=1.0) == 0
