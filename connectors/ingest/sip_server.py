"""GB/T 28181 upper-level platform SIP listener (UDP and TCP) feeding the shared ingest path.

Contract
--------
* ``SipServer(gateway, config)`` listens on ``config.host:config.port`` over UDP and TCP;
  ``SipConfig.from_settings(settings, **overrides)`` takes the port, password and timezone from the
  `Settings` (``PINGAN_SIP_PORT``, ``PINGAN_SIP_PASSWORD``, ``PINGAN_TIMEZONE``). There is no
  default password: without one (``password`` None) every REGISTER is refused (403).
* REGISTER: without credentials → 401 with a fresh digest challenge (MD5, realm = ``config.realm``);
  with a valid digest over a nonce this server issued (and not expired) → 200 with ``Expires``
  (the requested value capped at ``expires_max``; 0 unregisters) and a GB-style ``Date``
  (local time ``YYYY-MM-DDTHH:MM:SS.mmm``); wrong credentials → 403; expired nonce → 401 stale.
* MESSAGE with an ``Application/MANSCDP+xml`` body goes through ``IngestGateway.ingest("gb28181", …)``
  — the same path as ``POST /gb28181/alarm``: Keepalive → 200 (dropped), Alarm Notify → 200 once
  Kafka or the spool holds it; bad body → 400 (dead-lettered); spool full → 503 + Retry-After.
  A MESSAGE from a device without an unexpired registration gets 403 (``require_registration``,
  on by default; off only for a trusted gateway in front of the listener), counted as ``unregistered``.
* Retransmissions (same Call-ID + CSeq + method) get the byte-identical cached response and are not
  published again (bounded LRU of ``transaction_cache`` entries); a retransmission that arrives
  while the original is still being processed is ignored (the sender retransmits again).
* OPTIONS → 200; ACK → nothing; other methods → 501. Unparseable datagrams are dropped and counted.
"""
from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Callable
from zoneinfo import ZoneInfo

from connectors.ingest.base import Source
from connectors.sources.gb28181.sip import (
    MAX_MESSAGE_BYTES,
    SipMessage,
    SipParseError,
    build_response,
    make_challenge,
    parse_digest_params,
    parse_sip,
    verify_digest,
)
from streams.settings import DEFAULT_TIMEZONE, Settings

if TYPE_CHECKING:  # pragma: no cover
    from connectors.ingest.receiver import IngestGateway

log = logging.getLogger(__name__)

MANSCDP = "application/manscdp+xml"
_USER = re.compile(r"sip:([^@;>\s]+)@", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class SipConfig:
    """Listener and authentication settings of the platform."""

    host: str = "127.0.0.1"
    port: int = Settings.model_fields["sip_port"].default
    platform_id: str = "51322100002000000001"
    realm: str = "5132210000"
    password: str | None = field(default=None, repr=False)
    expires_max: int = 3600
    nonce_ttl_s: float = 300.0
    max_nonces: int = 10_000
    transaction_cache: int = 4096
    require_registration: bool = True
    timezone: str = DEFAULT_TIMEZONE
    retry_after_s: int = 5
    tcp_idle_timeout_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "SipConfig":
        """Port, password and timezone from `settings`; overrides (e.g. CLI options) that are not None win."""
        values: dict[str, Any] = {"port": settings.sip_port, "password": settings.sip_password,
                                  "timezone": settings.timezone}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class _Registration:
    expires_at: float
    contact: str | None


def _user_of(header: str | None) -> str | None:
    match = _USER.search(header or "")
    return match.group(1) if match else None


class SipServer(Source):
    """UDP+TCP SIP listener of the upper-level platform (see module contract)."""

    name = "gb28181-sip"

    def __init__(
        self,
        gateway: "IngestGateway",
        config: SipConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        nonce_factory: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        super().__init__()
        self.gateway = gateway
        self.config = config or SipConfig()
        self.clock = clock
        self.nonce_factory = nonce_factory
        self._tz = ZoneInfo(self.config.timezone)
        self._nonces: OrderedDict[str, float] = OrderedDict()  # nonce -> expiry (epoch s)
        self._transactions: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()
        self._in_flight: set[tuple[str, int, str]] = set()
        self.registrations: dict[str, _Registration] = {}
        self.counters: dict[str, int] = {"unparseable": 0, "retransmissions": 0, "registered": 0,
                                         "auth_failed": 0, "messages": 0, "unregistered": 0}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle
    async def setup(self) -> None:
        """Bind the UDP and TCP sockets (port 0: the OS picks; see ``udp_port``/``tcp_port``)."""
        loop = asyncio.get_running_loop()
        server = self

        class _Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
                server._spawn(server._udp_datagram(data, addr))

        self._udp, _ = await loop.create_datagram_endpoint(_Udp, local_addr=(self.config.host, self.config.port))
        self._tcp = await asyncio.start_server(self._tcp_client, self.config.host,
                                               self.config.port if self.config.port else 0,
                                               limit=MAX_MESSAGE_BYTES)
        log.info("SIP listening on %s udp:%d tcp:%d", self.config.host, self.udp_port, self.tcp_port)

    @property
    def udp_port(self) -> int:
        """Bound UDP port."""
        assert self._udp is not None
        return int(self._udp.get_extra_info("sockname")[1])

    @property
    def tcp_port(self) -> int:
        """Bound TCP port."""
        assert self._tcp is not None
        return int(self._tcp.sockets[0].getsockname()[1])

    async def run(self) -> None:
        """Serve until stopped."""
        await self._stop_event().wait()

    async def stop(self) -> None:
        """Close both listeners and wait for in-flight handlers."""
        await super().stop()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: "asyncio.Task[None]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("SIP handler failed", exc_info=task.exception())

    # ------------------------------------------------------------------ transports
    async def _udp_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        response = await self.handle(data)
        if response is not None and self._udp is not None:
            self._udp.sendto(response, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self.stopping:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.config.tcp_idle_timeout_s)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    self.counters["unparseable"] += 1
                    return
                if not head.strip():
                    continue  # CRLF keep-alive pings
                match = _CONTENT_LENGTH.search(head)
                length = int(match.group(1)) if match else 0
                if length > MAX_MESSAGE_BYTES:
                    self.counters["unparseable"] += 1
                    return
                try:
                    body = await reader.readexactly(length) if length else b""
                except asyncio.IncompleteReadError:
                    return
                response = await self.handle(head + body)
                if response is not None:
                    writer.write(response)
                    await writer.drain()
        finally:
            writer.close()

    # ------------------------------------------------------------------ core
    async def handle(self, data: bytes) -> bytes | None:
        """Answer one SIP message (None: no answer). Transport-independent."""
        try:
            msg = parse_sip(data)
        except SipParseError as exc:
            self.counters["unparseable"] += 1
            log.debug("unparseable SIP message: %s", exc)
            return None
        if not msg.is_request or msg.method == "ACK":
            return None
        cseq = msg.cseq
        call_id = msg.call_id
        if cseq is None or not call_id:
            self.counters["unparseable"] += 1
            return None
        key = (call_id, cseq[0], cseq[1])
        cached = self._transactions.get(key)
        if cached is not None:
            self._transactions.move_to_end(key)
            self.counters["retransmissions"] += 1
            return cached or None
        if key in self._in_flight:
            self.counters["retransmissions"] += 1
            return None
        self._in_flight.add(key)
        try:
            response = await self._dispatch(msg)
        finally:
            self._in_flight.discard(key)
        self._transactions[key] = response
        while len(self._transactions) > self.config.transaction_cache:
            self._transactions.popitem(last=False)
        return response or None

    async def _dispatch(self, msg: SipMessage) -> bytes:
        try:
            if msg.method == "REGISTER":
                return self._register(msg)
            if msg.method == "MESSAGE":
                return await self._message(msg)
            if msg.method == "OPTIONS":
                return build_response(msg, 200, "OK", {"Allow": "REGISTER, MESSAGE, OPTIONS, ACK"})
            return build_response(msg, 501, "Not Implemented")
        except ValueError as exc:  # build_response refuses a request lacking mandatory headers
            log.info("cannot answer SIP %s: %s", msg.method, exc)
            self.counters["unparseable"] += 1
            return b""

    def _gb_date(self) -> str:
        now = datetime.fromtimestamp(self.clock(), self._tz)
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}"

    def _issue_nonce(self) -> str:
        nonce = self.nonce_factory()
        now = self.clock()
        self._nonces[nonce] = now + self.config.nonce_ttl_s
        while len(self._nonces) > self.config.max_nonces:
            self._nonces.popitem(last=False)
        return nonce

    def _challenge(self, msg: SipMessage, *, stale: bool = False) -> bytes:
        challenge = make_challenge(self.config.realm, self._issue_nonce(), stale=stale)
        return build_response(msg, 401, "Unauthorized", {"WWW-Authenticate": challenge})

    def _register(self, msg: SipMessage) -> bytes:
        auth = msg.headers.get("Authorization")
        if not auth:
            return self._challenge(msg)
        params = parse_digest_params(auth)
        nonce = params.get("nonce")
        expiry = self._nonces.get(nonce) if nonce else None
        if expiry is None or expiry < self.clock():
            return self._challenge(msg, stale=expiry is not None)
        if self.config.password is None or not verify_digest(auth, "REGISTER", self.config.password,
                                                             self.config.realm, nonce=nonce):
            self.counters["auth_failed"] += 1
            return build_response(msg, 403, "Forbidden")
        self._nonces.pop(nonce, None)  # one use per nonce
        device_id = _user_of(msg.headers.get("From")) or params.get("username", "")
        requested = msg.headers.get("Expires")
        expires = int(requested) if requested and requested.isdigit() else self.config.expires_max
        expires = min(expires, self.config.expires_max)
        if expires == 0:
            self.registrations.pop(device_id, None)
        else:
            self.registrations[device_id] = _Registration(self.clock() + expires, msg.headers.get("Contact"))
            self.counters["registered"] += 1
        return build_response(msg, 200, "OK", {"Expires": str(expires), "Date": self._gb_date()})

    def is_registered(self, device_id: str | None) -> bool:
        """True while ``device_id`` holds an unexpired registration."""
        reg = self.registrations.get(device_id or "")
        return reg is not None and reg.expires_at > self.clock()

    async def _message(self, msg: SipMessage) -> bytes:
        ctype = (msg.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != MANSCDP:
            return build_response(msg, 415, "Unsupported Media Type", {"Accept": "Application/MANSCDP+xml"})
        device_id = _user_of(msg.headers.get("From"))
        if self.config.require_registration and not self.is_registered(device_id):
            self.counters["unregistered"] += 1
            log.info("SIP MESSAGE from unregistered device %r refused", device_id)
            return build_response(msg, 403, "Forbidden", {"Warning": '399 pingan "device not registered"'})
        self.counters["messages"] += 1
        outcome = await self.gateway.ingest("gb28181", msg.body, content_type=msg.headers.get("Content-Type"))
        if outcome.status in (200, 202):
            return build_response(msg, 200, "OK")
        if outcome.status in (429, 503):
            return build_response(msg, 503, "Service Unavailable",
                                  {"Retry-After": str(outcome.retry_after_s or self.config.retry_after_s)})
        if outcome.status == 400:
            return build_response(msg, 400, "Bad Request", {"Warning": f'399 pingan "{_warning(outcome.reason)}"'})
        return build_response(msg, 500, "Server Internal Error")


def _warning(reason: str | None) -> str:
    """Reason text safe inside a quoted SIP Warning header."""
    return re.sub(r'[\r\n"\\]', " ", reason or "")[:200]
