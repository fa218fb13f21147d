"""HTTP receiver for every push source, and the ingest path it shares with the SIP server.

Contract
--------
``IngestGateway.ingest(source, body, content_type=..., peer_ip=...)`` is the one path from a
native payload to Kafka:

1. senders that retry (``grid``, ``mediation``) get 429 + Retry-After while the spool is at or
   above its high-water mark; cameras (``gb28181``, ``isapi``, ``door``) never get 429;
2. pure translate → records (+ rejections, + dropped heartbeats); records are Avro-encoded and
   keyed per the catalogue; each rejected payload becomes one dead letter (``source`` = the
   receiver source name, ``stage`` = "translate", ``raw`` = the body as received);
3. delivery: straight to Kafka (await acks within ``kafka_timeout_s``) while the spool is empty;
   if Kafka is unreachable/slow, or the spool is not empty (to keep order), the records go to the
   durable spool (fsync) instead; a background drainer (``IngestGateway.run``) sends the spool to
   Kafka in order when it recovers;
4. answers: 202 when every record is in Kafka or the spool; 400 ``{"error","reason"}`` when nothing
   could be translated (its dead letter is delivered or spooled); 200 ``{"dropped": n}`` for
   heartbeats; 503 + Retry-After when the spool is full (counted as refused); 413 when the body is
   larger than ``max_body_bytes`` (aiohttp ``client_max_size``; nothing is kept, the sender keeps it);
5. size: every encoded record is checked against the broker's real limit of its topic
   (``connectors.ingest.limits``, discovered at start-up and re-asked until known) before anything
   is answered. A payload whose records do not fit is answered 413 ``RecordTooLarge`` and becomes a
   dead letter (stage "receive"); a record that fits is never refused for its size, so one oversize
   alarm cannot fail or poison the records after it. Dead letters too large for Kafka keep the head of
   ``raw`` plus the whole body's size and sha256, and the whole body is kept in the spool's blob store
   (``<spool>/blobs/<sha256>.bin``, ``connectors.ingest.blobs``) named in the dead letter's reason;
   ``dead_letters_lost`` counts only dead letters neither Kafka nor the spool kept (``bodies_lost``:
   truncated dead letters whose whole body the blob store could not take);
6. a record Kafka still refuses for good on the direct path becomes a dead letter and is not counted
   as accepted (the answer says ``rejected``; 413 when nothing else was accepted); records failed only
   by the producer's state are re-sent after a producer reset, else spooled (``RecordProducer``).

Authentication (``IngestGateway.authenticator``, from the ingest credentials file of the settings;
see `connectors.sources.auth` and README "Ingest credentials"): every POST is verified before it is
translated — HMAC-signed, token, or HTTP Digest/Basic (ISAPI cameras) per the feed's credentials;
a failure is answered 401 ``{"error": "Unauthorized", "code", "reason"}`` (with a Digest challenge
on digest routes), counted in ``pingan_receiver_auth_failed_total{source,code}`` and never reaches
Kafka. Without credentials the receiver only starts in dev mode (``PINGAN_DEV_MODE``), open.

``create_app(gateway)`` mounts: POST /gb28181/alarm, /isapi/alert, /grid/reports,
/mediation/cases, /door/events; GET /metrics (prometheus text, per-app registry), GET /healthz.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connectors.ingest.base import Source
from connectors.ingest.blobs import BlobStore
from connectors.ingest.producer import DeliveryError, Item, RecordProducer, encode_key, is_retriable
from connectors.ingest.spool import Spool, SpoolRecord
from connectors.sources import registry as source_registry
from connectors.sources.auth import Authenticator, Verdict, load_credentials
from connectors.sources.common import Rejected, TranslateResult
from connectors.sources.devices import DeviceRegistry
from connectors.sources.spec import Payload, SourceSpec
from schemas.deadletter import make_dead_letter
from streams.settings import MissingSecrets

if TYPE_CHECKING:  # pragma: no cover
    from streams.settings import Settings

log = logging.getLogger(__name__)

#: feed name -> URL path of its POST endpoint (from the source registry).
ROUTES: Mapping[str, str] = MappingProxyType({s.feed: s.route for s in source_registry.pushed() if s.route})
#: senders that honour 429/Retry-After and re-send (from the source registry).
RETRYING_SOURCES: frozenset[str] = frozenset(s.feed for s in source_registry.SOURCES if s.sender_retries)

Translator = Callable[[Payload], TranslateResult]


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """Receiver knobs (the CLI builds it from options; nothing reads the environment here)."""

    host: str = "127.0.0.1"
    port: int | None = None  # None: settings.receiver_port
    max_body_bytes: int = 8 * 1024 * 1024
    kafka_timeout_s: float = 2.0
    drain_timeout_s: float = 15.0
    drain_batch: int = 500
    drain_backoff_max_s: float = 30.0
    spool_max_bytes: int = 512 * 1024 * 1024
    spool_segment_bytes: int = 16 * 1024 * 1024
    spool_high_water: float = 0.5
    retry_after_s: int = 5
    retrying_sources: frozenset[str] = RETRYING_SOURCES
    isapi_check_peer: bool = False  # True: ISAPI/door devices must post from their registered IP
    spool_name: str = "receiver"
    blob_max_bytes: int = 1024 * 1024 * 1024  # whole bodies of truncated dead letters (<spool>/blobs)
    limits_retry_s: float = 30.0  # re-ask Kafka's size limits this often until they are known
    limits_refresh_s: float = 300.0  # and this often once known (also right after Kafka refused a size)


# --------------------------------------------------------------------------- translators
def default_translators(devices: DeviceRegistry | None, *, check_peer: bool = False,
                        profile_dir: Path | None = None) -> dict[str, Translator]:
    """The translate function of every pushed feed of the source registry, bound to the device
    registry and the deployment's profiles; without `check_peer` the sender's IP is not matched
    against registered devices."""
    ctx = source_registry.context(devices, profile_dir)

    def bind(spec: SourceSpec) -> Translator:
        def translate(p: Payload) -> TranslateResult:
            return spec.translate(p if check_peer else replace(p, peer_ip=None), ctx)
        return translate

    return {spec.feed: bind(spec) for spec in source_registry.pushed()}


# --------------------------------------------------------------------------- metrics
MAX_FIELD_LABELS = 500        # distinct (source, field) label pairs per metric family
MAX_FIELD_LABEL_CHARS = 64
OTHER_FIELD_LABEL = "_other"


class ReceiverMetrics:
    """Per-instance counters (own CollectorRegistry, never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.accepted = Counter("pingan_receiver_accepted", "records acknowledged (in Kafka or spool)", ["source"], registry=r)
        self.delivered = Counter("pingan_receiver_delivered", "records confirmed by Kafka on the direct path", ["source"], registry=r)
        self.spooled = Counter("pingan_receiver_spooled", "records written to the local spool", ["source"], registry=r)
        self.refused = Counter("pingan_receiver_refused", "payloads refused with 503 (spool full)", ["source"], registry=r)
        self.throttled = Counter("pingan_receiver_throttled", "payloads answered 429 (spool above high water)", ["source"], registry=r)
        self.dead_lettered = Counter("pingan_receiver_dead_lettered", "dead letters written (Kafka or spool)", ["source"], registry=r)
        self.dead_letters_lost = Counter("pingan_receiver_dead_letters_lost", "dead letters that could not be stored", ["source"], registry=r)
        self.rejected = Counter("pingan_receiver_rejected", "inputs answered 4xx", ["source"], registry=r)
        self.too_large = Counter("pingan_receiver_too_large", "payloads answered 413 (body or record over a limit)",
                                 ["source"], registry=r)
        self.bodies_kept = Counter("pingan_receiver_bodies_kept",
                                   "whole bodies of truncated dead letters kept in the spool's blob store",
                                   ["source"], registry=r)
        self.bodies_lost = Counter("pingan_receiver_bodies_lost",
                                   "truncated dead letters whose whole body could not be kept", ["source"], registry=r)
        self.dropped = Counter("pingan_receiver_dropped", "heartbeats/keepalives dropped", ["source"], registry=r)
        self.drained = Counter("pingan_receiver_drained", "spooled records confirmed by Kafka", registry=r)
        self.drain_failures = Counter("pingan_receiver_drain_failures", "drain attempts that failed", registry=r)
        self.spool_pending = Gauge("pingan_receiver_spool_pending_records", "records waiting in the spool", registry=r)
        self.spool_bytes = Gauge("pingan_receiver_spool_pending_bytes", "bytes waiting in the spool", registry=r)
        self.unmapped_fields = Counter("pingan_receiver_unmapped_fields",
                                       "records with a native field no mapping reads, per source and field",
                                       ["source", "field"], registry=r)
        self.auth_failed = Counter("pingan_receiver_auth_failed", "pushes answered 401 (authentication failed), "
                                   "per source and reason code", ["source", "code"], registry=r)
        self.quality_flags = Counter("pingan_receiver_quality_flags",
                                     "optional fields kept with a problem (quality flags of records translated)",
                                     ["source", "field"], registry=r)
        self._field_labels: set[tuple[str, str]] = set()

    def _field(self, source: str, name: object) -> str:
        """A field label, bounded: a sender cannot grow the registry without limit with made-up names."""
        label = str(name)[:MAX_FIELD_LABEL_CHARS]
        if (source, label) not in self._field_labels:
            if len(self._field_labels) >= MAX_FIELD_LABELS:
                return OTHER_FIELD_LABEL
            self._field_labels.add((source, label))
        return label

    def observe_translation(self, source: str, result: TranslateResult) -> None:
        """Count what one translation left unmapped and flagged (never silent: see docs/onboarding.md)."""
        for name, count in result.unmapped.items():
            if count:
                self.unmapped_fields.labels(source=source, field=self._field(source, name)).inc(count)
        for record in result.records:
            for flag in record.get("quality") or ():
                if isinstance(flag, Mapping):
                    self.quality_flags.labels(source=source, field=self._field(source, flag.get("field"))).inc()

    def value(self, name: str, source: str | None = None, field: str | None = None) -> float:
        """Current value of a counter/gauge sample (0 when never incremented)."""
        labels = {"source": source} if source is not None else {}
        if field is not None:
            labels["field"] = field
        for sample_name in (f"pingan_receiver_{name}_total", f"pingan_receiver_{name}"):
            v = self.registry.get_sample_value(sample_name, labels)
            if v is not None:
                return v
        return 0.0

    def exposition(self) -> bytes:
        """Prometheus text format of this registry."""
        return generate_latest(self.registry)


# --------------------------------------------------------------------------- outcome
@dataclass(slots=True)
class IngestOutcome:
    """What happened to one payload; ``status`` is the HTTP status to answer."""

    status: int
    accepted: int = 0
    spooled: bool = False
    dropped: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    error: str | None = None
    reason: str | None = None
    retry_after_s: int | None = None

    def body(self) -> dict[str, Any]:
        """JSON body of the answer."""
        if self.error is not None:
            out: dict[str, Any] = {"error": self.error, "reason": self.reason}
        else:
            out = {"accepted": self.accepted, "spooled": self.spooled, "dropped": self.dropped}
        if self.rejected:
            out["rejected"] = [{"error": r.error_type, "reason": r.reason} for r in self.rejected]
        return out


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Placement:
    """Where ``_deliver`` put a list of items: ``where`` is 'kafka' (all confirmed), 'spool' (some or
    all durably spooled) or 'refused' (the spool was full: what was not in Kafka is not kept);
    ``refused`` are the indices of items Kafka refused for good (replaced by dead letters);
    ``lost`` counts dead letters (of those refusals) nothing kept."""

    where: str
    refused: dict[int, BaseException] = field(default_factory=dict)
    lost: int = 0


def _reason_of(rejected: Sequence[Rejected]) -> tuple[str, str]:
    types = sorted({r.error_type for r in rejected})
    return (types[0] if len(types) == 1 else "+".join(types)), "; ".join(r.reason for r in rejected)


# --------------------------------------------------------------------------- gateway
class IngestGateway(Source):
    """Translate → Kafka-or-spool for all push sources; ``run()`` is the spool drainer."""

    name = "ingest-gateway"

    def __init__(
        self,
        settings: "Settings",
        *,
        producer: RecordProducer,
        spool: Spool,
        translators: Mapping[str, Translator],
        config: ReceiverConfig | None = None,
        clock: Callable[[], int] = _now_ms,
        authenticator: Authenticator | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.producer = producer
        self.spool = spool
        self.translators = dict(translators)
        self.config = config or ReceiverConfig()
        self.blobs = BlobStore(Path(spool.directory) / "blobs", max_bytes=self.config.blob_max_bytes)
        self._limits_tried_at: float | None = None
        self.metrics = ReceiverMetrics()
        self.clock = clock
        self.authenticator = authenticator  # None: pushes are not authenticated (dev mode, tests)
        self._wake: asyncio.Event | None = None
        self._set_up = False
        self.kafka_ok: bool | None = None  # last known Kafka state (None: not tried yet)

    @classmethod
    def from_settings(
        cls,
        settings: "Settings",
        config: ReceiverConfig | None = None,
        *,
        registry: "DeviceRegistry | None" = None,
        producer: RecordProducer | None = None,
        translators: Mapping[str, Translator] | None = None,
    ) -> "IngestGateway":
        """Gateway with the settings' Kafka, a spool under ``run_dir/spool/<spool_name>``, default translators
        and the authenticator of the settings' ingest credentials (`authenticator_from_settings`)."""
        cfg = config or ReceiverConfig()
        authenticator = authenticator_from_settings(settings)
        spool = Spool.for_receiver(
            settings, cfg.spool_name, max_bytes=cfg.spool_max_bytes,
            segment_bytes=cfg.spool_segment_bytes, high_water=cfg.spool_high_water,
        )
        return cls(
            settings,
            producer=producer or RecordProducer.from_settings(settings),
            spool=spool,
            translators=translators if translators is not None else default_translators(
                registry, check_peer=cfg.isapi_check_peer, profile_dir=settings.profile_dir),
            config=cfg,
            authenticator=authenticator,
        )

    def authenticate(self, source: str, request: web.Request, body: bytes) -> Verdict | None:
        """The verdict on one push (None: no authenticator, dev mode); failures are counted."""
        if self.authenticator is None:
            return None
        verdict = self.authenticator.verify(source, request.method, request.path_qs, request.headers, body)
        if not verdict.ok:
            self.metrics.auth_failed.labels(source=source, code=verdict.reason).inc()
            log.info("push to %s from %s refused: %s (%s)", source, request.remote, verdict.reason, verdict.detail)
        return verdict

    # ------------------------------------------------------------------ lifecycle
    async def setup(self) -> None:
        """Open (recover) the spool; Kafka is connected lazily."""
        if self._set_up:
            return
        await asyncio.to_thread(self.spool.open)
        self._wake = asyncio.Event()
        self._set_up = True
        await self.refresh_limits()
        self._update_gauges()
        if not self.spool.is_empty:
            log.info("spool %s holds %d record(s) from a previous run", self.spool.directory, self.spool.pending_count)
            self._wake.set()

    async def run(self) -> None:
        """Drain the spool to Kafka whenever it is non-empty, with capped exponential backoff."""
        assert self._wake is not None, "setup() first"
        backoff = 0.5
        while not self.stopping:
            every = self.config.limits_refresh_s if self.producer.limits.discovered else self.config.limits_retry_s
            if self._limits_tried_at is None or time.monotonic() - self._limits_tried_at >= every:
                await self.refresh_limits()
            if self.spool.is_empty:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(self._stop_event().wait())
                try:
                    await asyncio.wait({waiter, stopper}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    stopper.cancel()
                continue
            try:
                await self.drain_once()
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - classified: retriable → backoff, else crash
                if not is_retriable(exc):
                    raise
                self.metrics.drain_failures.inc()
                self.kafka_ok = False
                log.warning("spool drain failed (%s); retry in %.1fs", exc, backoff)
                if not await self.sleep(backoff):
                    return
                backoff = min(backoff * 2, self.config.drain_backoff_max_s)

    def _topics(self) -> list[str]:
        """Every topic this gateway writes: the raw topics of its feeds and the dead-letter topic."""
        feeds = {s.feed: s for s in source_registry.pushed()}
        return [self.settings.topic(feeds[f].topic) for f in self.translators if f in feeds] + [
            self.producer.deadletter_topic]

    async def refresh_limits(self) -> bool:
        """Ask Kafka for its real size limits (``producer.limits``); False (defaults kept) when it
        cannot be asked now (``run`` asks again every ``limits_retry_s``)."""
        self._limits_tried_at = time.monotonic()
        try:
            limits = await self.producer.discover_limits(self._topics(), timeout=self.config.kafka_timeout_s + 3)
        except DeliveryError as exc:
            log.warning("Kafka's size limits unknown (%s); using Kafka's default of %d bytes until asked again",
                        exc, self.producer.limits.default_bytes)
            return False
        self.producer.limits = limits
        log.info("Kafka size limits: default %d bytes, per topic %s, producer max_request_size %s",
                 limits.default_bytes, dict(limits.per_topic), limits.max_request_size)
        return True

    async def drain_once(self) -> int:
        """Send everything spooled to Kafka in order; returns the number of records confirmed."""
        n = await self.spool.drain(self._send_spooled, batch_size=self.config.drain_batch)
        if n:
            self.kafka_ok = True
            log.info("drained %d spooled record(s) to Kafka", n)
        self._update_gauges()
        return n

    async def flush(self) -> None:
        """Wait for everything handed to the producer."""
        await self.producer.flush()

    async def stop(self) -> None:
        """Ask the drainer to finish (``close()`` releases the producer and the spool)."""
        await super().stop()
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        """Release the producer and spool (after ``run`` returned)."""
        await self.stop()
        try:
            await self.producer.stop()
        finally:
            self.spool.close()
            self._set_up = False

    async def _send_spooled(self, batch: list[SpoolRecord]) -> None:
        """Send one spooled batch; records Kafka refuses for good become dead letters (whole bodies in
        the blob store), refused dead letters are kept there; raises while Kafka is away."""
        items: list[Item] = [(r.topic, r.key, r.value) for r in batch]
        try:
            await self.producer.send_batch(items, timeout=self.config.drain_timeout_s)
        except DeliveryError as exc:
            if exc.retriable or not exc.failures:
                raise
            dead, lost = await self._poison_to_dead_letters(items, dict(exc.failures), source="receiver")
            if lost:
                self.metrics.dead_letters_lost.labels(source="receiver").inc(lost)
            if dead:
                await self.producer.send_batch(dead, timeout=self.config.drain_timeout_s)  # raises: batch re-drained
                self.metrics.dead_lettered.labels(source="receiver").inc(len(dead))
        self.metrics.drained.inc(len(batch))
        self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.spool_pending.set(self.spool.pending_count)
        self.metrics.spool_bytes.set(self.spool.pending_bytes)

    async def _keep_refused_dead_letter(self, item: Item, err: BaseException) -> bool:
        """A dead letter Kafka refused for good: its encoded record goes to the blob store. False when
        the store cannot take it either (lost: the caller counts it in ``dead_letters_lost``)."""
        source = (item[1] or b"").decode("utf-8", "replace") or "receiver"
        ref = await self.blobs.put_async(item[2])
        if ref is None:
            log.error("dead letter for %r refused by Kafka (%s) and the blob store is full: lost", source, err)
            return False
        log.error("dead letter for %r refused by Kafka (%s); kept as %s", source, err, ref)
        return True

    # ------------------------------------------------------------------ ingest
    async def _dead_letter_item(self, *, source: str, stage: str, raw: bytes, error: BaseException | str,
                                error_type: str | None = None, topic: str | None = None,
                                content_type: str | None = None) -> Item:
        """A dead letter that fits the dead-letter topic: too large, its raw is truncated and the whole
        body kept in the blob store (``bodies_lost`` when the store is full)."""
        record = make_dead_letter(source=source, stage=stage, raw=raw, error=error, error_type=error_type,
                                  topic=topic, content_type=content_type, at_ms=self.clock())
        if self.producer.dead_letter_fits(record):
            return self.producer.dead_letter_item(record)
        ref = await self.blobs.put_async(bytes(raw))
        (self.metrics.bodies_lost if ref is None else self.metrics.bodies_kept).labels(source=source).inc()
        if ref is None:
            log.error("blob store full: the whole %d-byte body of a %s dead letter is not kept", len(raw), source)
        return self.producer.dead_letter_item(record, ref=None if ref is None else f"spool:{self.config.spool_name}/{ref}")

    async def ingest(self, source: str, body: bytes, *, content_type: str | None = None,
                     peer_ip: str | None = None) -> IngestOutcome:
        """Translate one payload and make its records safe (see module contract)."""
        cfg = self.config
        m = self.metrics
        translator = self.translators.get(source)
        if translator is None:
            m.rejected.labels(source=source).inc()
            return IngestOutcome(404, error="UnknownSource", reason=f"no translator for source {source!r}")
        if source in cfg.retrying_sources and self.spool.above_high_water:
            m.throttled.labels(source=source).inc()
            return IngestOutcome(429, error="Backpressure", reason="spool above high-water mark; retry later",
                                 retry_after_s=cfg.retry_after_s)
        payload = Payload(body, content_type, self.clock(), peer_ip)
        try:
            result = translator(payload)
        except Exception as exc:  # noqa: BLE001 - translate must not raise; keep the payload as a dead letter
            log.exception("translate for %s raised", source)
            item = await self._dead_letter_item(source=source, stage="translate", raw=body, error=exc,
                                                content_type=content_type)
            placed = await self._deliver([item], source=source)
            (m.dead_letters_lost if placed.lost else m.dead_lettered).labels(source=source).inc()
            return IngestOutcome(500, error="InternalError", reason=f"{type(exc).__name__}: {exc}")

        m.observe_translation(source, result)
        items: list[Item] = []
        rejected = list(result.rejected)
        too_large: list[Rejected] = []
        for record in result.records:
            try:
                key = result.key_of(record)
                value = self.producer.encode(result.schema, record)
            except Exception as exc:  # noqa: BLE001 - a record the schema refuses is bad input, dead-lettered
                rejected.append(Rejected(f"record does not fit {result.schema}: {exc}", type(exc).__name__))
                continue
            item = (self.settings.topic(result.topic), encode_key(key), value)
            size_error = self.producer.limits.check(*item)
            if size_error is not None:  # answered 413 + dead letter, never 202 and gone
                too_large.append(Rejected(size_error, "RecordTooLarge"))
                continue
            items.append(item)
        dl_items: list[Item] = []
        if rejected:
            etype, reason = _reason_of(rejected)
            dl_items.append(await self._dead_letter_item(source=source, stage="translate", raw=body, error=reason,
                                                         error_type=etype, content_type=content_type))
        if too_large:
            dl_items.append(await self._dead_letter_item(
                source=source, stage="receive", raw=body, error=_reason_of(too_large)[1], error_type="RecordTooLarge",
                topic=self.settings.topic(result.topic), content_type=content_type))
            rejected += too_large

        if not items and not dl_items:
            m.dropped.labels(source=source).inc(result.dropped)
            return IngestOutcome(200, dropped=result.dropped)

        placed = await self._deliver(items + dl_items, source=source)
        # records Kafka refused for good on the way: dead letters now, not acknowledged
        for idx, err in sorted(placed.refused.items()):
            if idx < len(items):
                bad = Rejected(f"Kafka refused the record for {items[idx][0]}: {type(err).__name__}: {err}",
                               type(err).__name__)
                rejected.append(bad)
                if "TooLarge" in bad.error_type:
                    too_large.append(bad)
        n_refused = sum(1 for idx in placed.refused if idx < len(items))
        n_dl, kept_items = len(dl_items) + n_refused, len(items) - n_refused
        if placed.lost:
            m.dead_letters_lost.labels(source=source).inc(placed.lost)
        if n_dl - placed.lost:
            m.dead_lettered.labels(source=source).inc(n_dl - placed.lost)
        if placed.where == "refused" and kept_items:
            m.refused.labels(source=source).inc()
            return IngestOutcome(503, error="SpoolFull", reason="Kafka unavailable and local spool full",
                                 retry_after_s=cfg.retry_after_s, rejected=rejected)
        m.dropped.labels(source=source).inc(result.dropped)
        if not kept_items:
            m.rejected.labels(source=source).inc()
            if too_large:
                m.too_large.labels(source=source).inc()
                return IngestOutcome(413, error="RecordTooLarge", reason=_reason_of(too_large)[1],
                                     dropped=result.dropped)
            etype, reason = _reason_of(rejected)
            return IngestOutcome(400, error=etype, reason=reason, dropped=result.dropped)
        m.accepted.labels(source=source).inc(kept_items)
        spooled = placed.where == "spool"
        (m.spooled if spooled else m.delivered).labels(source=source).inc(kept_items)
        return IngestOutcome(202, accepted=kept_items, spooled=spooled, dropped=result.dropped, rejected=rejected)

    async def _deliver(self, items: list[Item], *, source: str) -> Placement:
        """Kafka (awaiting acks) while the spool is empty, else the spool (see :class:`Placement`).

        Items Kafka confirmed stay confirmed; items it refused for good become dead letters (sent
        the same way); items that failed retriably (outage, producer state after resets) are spooled."""
        to_spool = items
        refused: dict[int, BaseException] = {}
        lost = 0
        if self.spool.is_empty:
            try:
                await self.producer.send_batch(items, timeout=self.config.kafka_timeout_s)
                self.kafka_ok = True
                return Placement("kafka")
            except DeliveryError as exc:
                failed = dict(exc.failures)
                refused = {i: e for i, e in failed.items() if not is_retriable(e)}
                dead, lost = await self._poison_to_dead_letters(items, refused, source=source)
                # per-item failures known: spool the retriable ones; none known (timeout, no
                # connection): nothing may be taken as delivered, spool everything
                retry = [items[i] for i, e in sorted(failed.items()) if is_retriable(e)] if failed else list(items)
                if not retry:
                    self.kafka_ok = True
                    if not dead:
                        return Placement("kafka", refused, lost)
                    inner = await self._deliver(dead, source=source)
                    return Placement(inner.where, refused, lost + inner.lost)
                self.kafka_ok = False
                log.warning("Kafka unavailable (%s); spooling %d record(s)", exc, len(retry) + len(dead))
                to_spool = retry + dead
        ok = await self.spool.append([SpoolRecord(t, k, v) for t, k, v in to_spool])
        self._update_gauges()
        if not ok:
            lost += sum(1 for t, _, _ in to_spool if t == self.producer.deadletter_topic)
            return Placement("refused", refused, lost)
        assert self._wake is not None
        self._wake.set()
        return Placement("spool", refused, lost)

    async def _poison_to_dead_letters(self, items: list[Item], refused: Mapping[int, BaseException], *,
                                      source: str) -> tuple[list[Item], int]:
        """Dead letters (stage "receive", raw = the encoded record) for the items Kafka refused for
        good, and how many refused dead letters nothing kept (each is tried in the blob store)."""
        out: list[Item] = []
        lost = 0
        for idx in sorted(refused):
            topic, _, value = items[idx]
            if topic == self.producer.deadletter_topic:
                lost += not await self._keep_refused_dead_letter(items[idx], refused[idx])
                continue
            if "TooLarge" in type(refused[idx]).__name__:  # our limits are stale: ask Kafka again soon
                self._limits_tried_at = None
            log.error("Kafka refused a record for %s (%s); dead-lettering it", topic, refused[idx])
            out.append(await self._dead_letter_item(source=source, stage="receive", raw=value, error=refused[idx],
                                                    topic=topic, content_type="avro/binary"))
        return out, lost


# --------------------------------------------------------------------------- HTTP app
GATEWAY_KEY: web.AppKey[IngestGateway] = web.AppKey("gateway", IngestGateway)


def _json_response(outcome: IngestOutcome) -> web.Response:
    headers = {"Retry-After": str(outcome.retry_after_s)} if outcome.retry_after_s is not None else None
    return web.json_response(outcome.body(), status=outcome.status, headers=headers,
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _handler(gateway: IngestGateway, source: str) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            gateway.metrics.rejected.labels(source=source).inc()
            gateway.metrics.too_large.labels(source=source).inc()
            return web.json_response(
                {"error": "TooLarge", "reason": f"body larger than {gateway.config.max_body_bytes} bytes"}, status=413)
        verdict = gateway.authenticate(source, request, body)
        if verdict is not None and not verdict.ok:
            return web.json_response({"error": "Unauthorized", "code": verdict.reason, "reason": verdict.detail},
                                     status=401, headers={"WWW-Authenticate": verdict.challenge}
                                     if verdict.challenge else None)
        outcome = await gateway.ingest(source, body, content_type=request.headers.get("Content-Type"),
                                       peer_ip=request.remote)
        if verdict is not None and gateway.authenticator is not None:
            gateway.authenticator.settle(verdict, kept=outcome.status < 500 and outcome.status != 429)
        return _json_response(outcome)

    return handle


def create_app(gateway: IngestGateway, *, manage_gateway: bool = True) -> web.Application:
    """aiohttp app over ``gateway``; with ``manage_gateway`` the app sets up, runs and closes it."""
    app = web.Application(client_max_size=gateway.config.max_body_bytes)
    app[GATEWAY_KEY] = gateway
    for source, path in ROUTES.items():
        if source in gateway.translators:
            app.router.add_post(path, _handler(gateway, source))

    async def metrics(_: web.Request) -> web.Response:
        gateway._update_gauges()
        return web.Response(body=gateway.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        spool = gateway.spool
        full = spool.fill_ratio >= 1.0
        return web.json_response({
            "status": "degraded" if full else "ok",
            "kafka": {None: "unknown", True: "ok", False: "unreachable"}[gateway.kafka_ok],
            "spool": {"pending_records": spool.pending_count, "pending_bytes": spool.pending_bytes,
                      "fill_ratio": round(spool.fill_ratio, 4), "above_high_water": spool.above_high_water},
            "routes": sorted(ROUTES[s] for s in gateway.translators if s in ROUTES),
        }, status=503 if full else 200)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)

    if manage_gateway:
        async def lifecycle(app: web.Application) -> Any:
            await gateway.setup()
            task = asyncio.create_task(gateway.run(), name="spool-drainer")
            yield
            await gateway.stop()
            try:
                await asyncio.wait_for(task, timeout=10)
            except asyncio.TimeoutError:
                task.cancel()
            await gateway.close()

        app.cleanup_ctx.append(lifecycle)
    return app


class HttpReceiver(Source):
    """Serves :func:`create_app` on ``config.host:port`` until stopped (the gateway runs separately)."""

    name = "http-receiver"

    def __init__(self, gateway: IngestGateway, *, host: str | None = None, port: int | None = None) -> None:
        super().__init__()
        self.gateway = gateway
        self.host = host or gateway.config.host
        self.port = port if port is not None else (gateway.config.port or gateway.settings.receiver_port)
        self._runner: web.AppRunner | None = None

    async def setup(self) -> None:
        """Bind the listening socket."""
        self._runner = web.AppRunner(create_app(self.gateway, manage_gateway=False), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("HTTP receiver listening on %s:%d", self.host, self.port)

    async def run(self) -> None:
        """Serve until stopped."""
        await self._stop_event().wait()

    async def stop(self) -> None:
        """Stop accepting and close the listener."""
        await super().stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def authenticator_from_settings(settings: "Settings") -> Authenticator | None:
    """The authenticator of ``settings.ingest_credentials``; None (open, with a warning) in dev mode
    without a file; `MissingSecrets` outside dev mode without one, `CredentialsError` for a bad file."""
    if settings.ingest_credentials is not None:
        return Authenticator(load_credentials(settings.ingest_credentials, known_feeds=ROUTES))
    if not settings.dev_mode:
        raise MissingSecrets("refusing to start the receivers without PINGAN_INGEST_CREDENTIALS "
                             "(set it, or PINGAN_DEV_MODE=1 for development only)")
    log.warning("PINGAN_DEV_MODE without PINGAN_INGEST_CREDENTIALS: the receivers accept unauthenticated pushes")
    return None


def registry_from_path(path: Path | None) -> DeviceRegistry | None:
    """Device registry CSV, or None."""
    return None if path is None else DeviceRegistry.from_csv(path)
